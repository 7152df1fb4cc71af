"""data.normalisation: zscore_nonzero (per slice) and zscore_volume (per patient volume),
the same in training and inference."""

from __future__ import annotations

import numpy as np
import pytest
from untrained import tiny_config

from mri_seg.config import InferConfig, load_config
from mri_seg.data.dataset import build_dataset
from mri_seg.inference.predictor import Predictor
from mri_seg.io.images import read_slice
from mri_seg.io.sequences import FLAIR_CHANNEL
from mri_seg.models import build_model
from mri_seg.preprocess import normalisation_spec, normalise_image, resize_pair, volume_stats


def _two_slices() -> np.ndarray:
    vol = np.zeros((2, 8, 8, 2), np.float32)
    vol[0, :4, :, 0] = 2.0  # 32 voxels of 2 in slice 0
    vol[1, :4, :, 0] = 4.0  # 32 voxels of 4 in slice 1
    vol[0, :2, :2, 1] = 7.0  # channel 1: only 4 non-zero voxels in the volume (< 16): all 128 voxels used
    return vol


def test_volume_stats_over_non_zero_voxels_of_all_slices():
    stats = volume_stats(_two_slices())
    assert stats.shape == (2, 2)
    assert stats[:, 0] == pytest.approx([3.0, 1.0])  # values 2 and 4, 32 each
    all_values = np.r_[np.full(4, 7.0), np.zeros(124)]
    assert stats[:, 1] == pytest.approx([all_values.mean(), all_values.std()])
    with pytest.raises(ValueError, match="at least one slice"):
        volume_stats([])


def test_zscore_volume_uses_the_volume_statistics_and_keeps_background():
    vol = _two_slices()
    stats = volume_stats(vol)
    out = normalise_image(vol[0], "zscore_volume", stats)
    assert out.dtype == np.float32
    assert np.unique(out[:4, :, 0]).tolist() == [-1.0]  # (2 - 3) / 1: slice 0 is darker than its volume
    assert (out[4:, :, 0] == 0).all()  # background stays 0
    per_slice = normalise_image(vol[0], "zscore_nonzero")
    assert np.unique(per_slice[:4, :, 0]).tolist() == [0.0]  # a per-slice z-score loses that
    with pytest.raises(ValueError, match=r"needs the volume's \(mean, std\) per channel, shape \(2, 2\)"):
        normalise_image(vol[0], "zscore_volume")
    with pytest.raises(ValueError, match="unknown normalisation 'minmax'.*zscore_nonzero, zscore_volume"):
        normalisation_spec("minmax")


def test_one_slice_volume_is_the_per_slice_zscore():
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    np.testing.assert_allclose(
        normalise_image(image, "zscore_volume", volume_stats([image])), normalise_image(image, "zscore_nonzero"),
        atol=1e-5,
    )


def _predictor(normalisation: str) -> Predictor:
    cfg = tiny_config()
    cfg.data.normalisation = normalisation
    return Predictor(build_model(cfg.model), cfg, InferConfig(), normalisation=normalisation, device="cpu")


def test_predictor_normalises_with_the_whole_volume_it_is_given():
    vol = (_two_slices()[..., :1] * 10).repeat(3, axis=-1)
    predictor = _predictor("zscore_volume")
    inputs = predictor.prepare_inputs(vol, [0, 1])
    assert np.unique(inputs[0, :, :4]).tolist() == [-1.0] and np.unique(inputs[1, :, :4]).tolist() == [1.0]
    alone = predictor._prepare(vol[0])  # a 2D image: its own volume
    np.testing.assert_allclose(alone, _predictor("zscore_nonzero")._prepare(vol[0]), atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba_batch([vol[0]])[0], predictor.predict_volume(vol[:1])[0])


def test_missing_sequence_augmentation_normalises_like_a_flair_only_scan(synthetic_run):
    """FLAIR copied over the other sequences in training gets FLAIR's volume statistics, which is
    what inference computes for a scan whose sequences are all FLAIR."""
    cfg = load_config(None, ["data.normalisation=zscore_volume", "data.scale=0.5", "augment.missing_sequence_p=1.0",
                             "augment.hflip_p=0.0", "augment.affine.p=0.0", "augment.elastic.p=0.0",
                             "augment.intensity.p=0.0", "augment.intensity.noise_p=0.0"])  # fmt: skip
    ds = build_dataset(synthetic_run, "train", cfg, train=True)
    pid = ds.patient_ids[0]
    rows = [i for i, p in enumerate(ds.patient_ids) if p == pid]
    volume = np.stack([read_slice(p) for p in ds.frame.iloc[rows]["image_path"]])
    flair_only = np.repeat(volume[..., FLAIR_CHANNEL : FLAIR_CHANNEL + 1], 3, axis=-1)
    predictor = _predictor("zscore_volume")
    predictor.scale = 0.5
    seen = set()
    for seed in range(12):
        ds.set_seed(seed)
        item = ds[rows[2]]["image"].numpy()
        replaced = tuple(ds.augment.replaced_sequences)
        seen.add(replaced)
        for c in range(3):
            if c in replaced:
                np.testing.assert_array_equal(item[c], item[FLAIR_CHANNEL])
        if replaced == (0, 2):
            np.testing.assert_allclose(item, predictor.prepare_inputs(flair_only, [2])[0], atol=1e-6)
    assert (0, 2) in seen and len(seen) >= 2
    stats = volume_stats([resize_pair(s, np.zeros(s.shape[:2], np.uint8), 0.5)[0] for s in volume])
    assert not np.allclose(stats[:, 0], stats[:, FLAIR_CHANNEL])  # so the test above could fail
