"""Predicting patients for evaluation (no model): batching, predictor adapters, FLAIR-only input, run-directory cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mri_seg.data.manifest import manifest_for_split
from mri_seg.evaluation.prediction import (
    as_prob_fn,
    as_volume_fn,
    attach_clinical,
    iter_run_cases,
    model_input,
    predict_volume,
)
from mri_seg.io.sequences import FLAIR_CHANNEL


def test_predict_volume_batches_and_prob_fn_adapter():
    calls = []

    def fn(images):
        calls.append(len(images))
        return [np.full(img.shape[:2], 0.25, np.float32) for img in images]

    class FakePredictor:
        def predict_proba_batch(self, images):
            return fn(images)

    images = [np.zeros((8, 8, 3), np.uint8)] * 5
    vol = predict_volume(as_prob_fn(FakePredictor()), images, batch_size=2)
    assert vol.shape == (5, 8, 8) and calls == [2, 2, 1]
    assert np.allclose(vol, 0.25)
    with pytest.raises(TypeError):
        as_prob_fn(42)


def test_volume_fn_of_a_slice_function_is_one_pass():
    volume = np.zeros((3, 6, 5, 3), np.uint8)
    prob, passes = as_volume_fn(lambda images: [np.full((6, 5), 0.7, np.float32) for _ in images], 2)(volume)
    assert prob.shape == (3, 6, 5) and passes.shape == (1, 3, 6, 5)
    np.testing.assert_array_equal(passes[0], prob)


def test_model_input_flair_only_copies_flair_into_every_channel():
    image = np.stack([np.full((4, 4), v, np.uint8) for v in (10, 20, 30)], axis=-1)
    assert model_input(image, "all") is image
    flair = model_input(image, "flair_only")
    assert flair.shape == image.shape
    assert all((flair[..., c] == image[..., FLAIR_CHANNEL]).all() for c in range(3))
    gray = np.zeros((4, 4), np.uint8)
    assert model_input(gray, "flair_only") is gray  # a single-channel slice is its own FLAIR
    with pytest.raises(ValueError, match="eval.input_sequences"):
        model_input(image, "t1_only")


def test_run_cases_in_patient_and_slice_order_with_flair(synthetic_run):
    manifest = manifest_for_split(synthetic_run, "test")
    seen_volumes = []

    def volume_fn(volume):
        seen_volumes.append(volume.shape)
        prob = np.full(volume.shape[:3], 0.2, np.float32)
        return prob, prob[None]

    cases = list(iter_run_cases(synthetic_run, "test", volume_fn, progress=False))
    assert [c.patient_id for c in cases] == sorted(manifest["patient_id"].unique())
    for case, shape in zip(cases, seen_volumes):
        rows = manifest[manifest["patient_id"] == case.patient_id]
        assert case.slice_indices == sorted(rows["slice_index"])
        assert case.prob.shape == case.truth.shape == case.flair.shape == shape[:3]
        assert case.truth.dtype == bool and case.passes.shape == (1, *shape[:3])
    with pytest.raises(ValueError, match="unknown split"):
        list(iter_run_cases(synthetic_run, "nope", volume_fn, progress=False))


def test_attach_clinical_joins_on_the_key_the_table_has(tmp_path):
    patients = pd.DataFrame({"patient_id": ["P1", "P2"], "case_id": ["C1", "C2"], "dice": [0.9, 0.5]})
    assert attach_clinical(patients, tmp_path) is patients  # no patients.csv: unchanged
    pd.DataFrame({"Patient": ["C2", "C1"], "age": [40, 50], "dice": [0.0, 0.0]}).to_csv(
        tmp_path / "patients.csv", index=False
    )
    joined = attach_clinical(patients, tmp_path)
    assert list(joined.columns) == ["patient_id", "case_id", "dice", "age"]  # metrics first, own dice kept
    assert list(joined["age"]) == [50, 40]


def test_run_cases_with_the_flair_view_predict_flair_in_every_channel(synthetic_run):
    seen = []

    def volume_fn(volume):
        seen.append(volume)
        prob = (volume[..., 0] / 255.0).astype(np.float32)  # channel 0: pre/post-contrast, or FLAIR in the view
        return prob, prob[None]

    cases = list(iter_run_cases(synthetic_run, "test", volume_fn, progress=False, flair_view=True))
    assert len(seen) == 2 * len(cases)  # each patient twice: as read, then FLAIR in every channel
    for case, (as_read, view_input) in zip(cases, zip(seen[::2], seen[1::2])):
        assert (view_input == as_read[..., FLAIR_CHANNEL : FLAIR_CHANNEL + 1]).all()
        np.testing.assert_allclose(case.view_prob, as_read[..., FLAIR_CHANNEL] / 255.0, rtol=1e-6)
        assert not np.allclose(case.view_prob, case.prob)  # the synthetic channels differ
    seen.clear()
    flair_only = list(iter_run_cases(synthetic_run, "test", volume_fn, False, "flair_only", flair_view=True))
    assert len(seen) == len(flair_only) and all(c.view_prob is None for c in flair_only)  # its own view
    seen.clear()
    assert all(c.view_prob is None for c in iter_run_cases(synthetic_run, "test", volume_fn, progress=False))
    assert len(seen) == len(cases)  # off: one prediction per patient
