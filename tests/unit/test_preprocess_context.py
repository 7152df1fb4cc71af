"""2.5D input (data.context_slices): one stack_context for training, validation, evaluation and inference."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pandas as pd
import pytest
import torch
from untrained import tiny_config

from mri_seg.config import AugmentConfig, InferConfig, load_config
from mri_seg.data.augment import ReplaceWithFlair, _geometric, _intensity
from mri_seg.data.dataset import build_dataset
from mri_seg.inference.predictor import Predictor
from mri_seg.io.images import read_slice
from mri_seg.models import build_model
from mri_seg.preprocess import (
    Head,
    channels_per_slice,
    check_input_channels,
    context_indices,
    normalise_image,
    resize_pair,
    stack_context,
    volume_stats,
)


def _volume(depth: int = 4, size: int = 6, channels: int = 3) -> np.ndarray:
    """Slice d, channel c holds the value 10*d + c everywhere: blocks are easy to read back."""
    vol = np.zeros((depth, size, size, channels), np.uint8)
    for d in range(depth):
        for c in range(channels):
            vol[d, :, :, c] = 10 * d + c
    return vol


def test_context_indices_replicate_the_end_slices():
    assert context_indices(5, 0, 2) == [0, 0, 0, 1, 2]
    assert context_indices(5, 4, 2) == [2, 3, 4, 4, 4]
    assert context_indices(5, 2, 1) == [1, 2, 3]
    assert context_indices(1, 0, 2) == [0] * 5
    assert context_indices(5, 3, 0) == [3]
    with pytest.raises(IndexError):
        context_indices(5, 5, 1)


def test_stack_context_blocks_are_neighbours_in_slice_order():
    vol = _volume()
    out = stack_context(vol, 1)
    assert out.shape == (4, 6, 6, 9) and out.dtype == np.uint8
    assert out[1, 0, 0].tolist() == [0, 1, 2, 10, 11, 12, 20, 21, 22]  # slices 0, 1, 2
    assert out[0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 10, 11, 12]  # first: slice 0 replicated
    assert out[3, 0, 0].tolist() == [20, 21, 22, 30, 31, 32, 30, 31, 32]  # last: slice 3 replicated
    np.testing.assert_array_equal(stack_context(vol, 0), vol)
    np.testing.assert_array_equal(stack_context(list(vol), 1, [3, 0]), out[[3, 0]])  # a list of slices works too
    single = stack_context(vol[:1], 2)
    assert single.shape == (1, 6, 6, 15) and single[0, 0, 0].tolist() == [0, 1, 2] * 5  # 2D image: itself


def test_channel_count_rules_say_what_to_set():
    assert channels_per_slice(9, 1) == 3 and channels_per_slice(3, 0) == 3 and channels_per_slice(15, 2) == 3
    with pytest.raises(ValueError, match="model.in_channels=8 is not a multiple of 2 . data.context_slices . 1 = 3"):
        channels_per_slice(8, 1)
    with pytest.raises(ValueError, match="set model.in_channels=9"):
        check_input_channels(3, 1, 3, "the training slices")
    check_input_channels(9, 1, 3, "the training slices")


# ----------------------------------------------------------------------------- augmentation of a stack


def test_every_transform_moves_the_stacked_slices_together():
    """Each stacked slice is transformed exactly as a 3-channel image with the same seed
    (noise is drawn per channel by design, as for the sequences of one slice)."""
    base = np.random.default_rng(0).integers(1, 255, (32, 32, 3), dtype=np.uint8)
    stacked = np.concatenate([base] * 5, axis=2)
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 8:22] = 1
    cfg = AugmentConfig()
    skip = (A.GaussNoise, ReplaceWithFlair)
    transforms = [t for t in _geometric(cfg) + _intensity(cfg, 3) if not isinstance(t, skip)]
    assert {type(t).__name__ for t in transforms} == {
        "HorizontalFlip", "Affine", "ElasticTransform", "RandomBrightnessContrast", "RandomGamma"}  # fmt: skip
    for t in transforms:
        t.p = 1.0
        out = A.Compose([t], seed=3, strict=True)(image=stacked, mask=mask)
        ref = A.Compose([t], seed=3, strict=True)(image=base, mask=mask)
        assert not np.array_equal(ref["image"], base), type(t).__name__  # the transform did something
        for g in range(5):
            np.testing.assert_array_equal(out["image"][..., 3 * g : 3 * g + 3], ref["image"], err_msg=type(t).__name__)
        np.testing.assert_array_equal(out["mask"], ref["mask"])


def test_missing_sequence_simulation_acts_per_stacked_slice():
    vol = _volume(depth=3)
    stacked = stack_context(vol, 1)[1]  # slices 0, 1, 2: channel value 10*d + c
    seen = set()
    for seed in range(30):
        t = ReplaceWithFlair(channels_per_slice=3, p=1.0)
        out = A.Compose([t], seed=seed, strict=True)(image=stacked)["image"]
        values = out[0, 0].reshape(3, 3)  # slice x sequence
        for d in range(3):
            assert values[d, 1] == 10 * d + 1  # FLAIR of that slice kept
            replaced = tuple(c for c in (0, 2) if values[d, c] == 10 * d + 1)
            assert all(values[d, c] == 10 * d + c for c in (0, 2) if c not in replaced)
            if d == 0:
                first = replaced
            assert replaced == first  # the same sequences are missing in every slice of the stack
        seen.add(first)
    assert seen == {(0,), (2,), (0, 2)}


# ----------------------------------------------------------------------------- training == inference


def _patient_volume(frame: pd.DataFrame) -> np.ndarray:
    rows = frame.sort_values("slice_index")
    return np.stack([read_slice(p) for p in rows["image_path"]])


@pytest.mark.parametrize(
    "k, normalisation",
    [(1, "zscore_nonzero"), (2, "zscore_nonzero"), (0, "zscore_volume"), (1, "zscore_volume"), (1, "zscore_head")],
)
def test_dataset_item_equals_predictor_input_at_first_middle_and_last_slice(synthetic_run, k, normalisation):
    cfg = load_config(None, [f"data.context_slices={k}", f"model.in_channels={3 * (2 * k + 1)}", "data.scale=0.5",
                             f"data.normalisation={normalisation}", "model.channels=[4,8,16]", "model.strides=[2,2]"])
    ds = build_dataset(synthetic_run, "val", cfg, train=False)
    predictor = Predictor(build_model(cfg.model), cfg, InferConfig(), normalisation=normalisation, device="cpu")
    pid = ds.patient_ids[0]
    rows = [i for i, p in enumerate(ds.patient_ids) if p == pid]
    volume = _patient_volume(ds.frame.iloc[rows])
    depth = len(rows)
    assert depth >= 2 * k + 2
    resized = [resize_pair(s, np.zeros(s.shape[:2], np.uint8), 0.5)[0] for s in volume]
    head = Head.of_volume(resized, 3) if normalisation == "zscore_head" else None
    stats = volume_stats(resized, head=head) if normalisation in ("zscore_volume", "zscore_head") else None
    for pos in (0, 1, depth // 2, depth - 2, depth - 1):
        item = ds[rows[pos]]["image"].numpy()
        assert item.shape == (3 * (2 * k + 1), 64, 64)
        np.testing.assert_allclose(predictor.prepare_inputs(volume, [pos])[0], item, atol=1e-6)
        # and both are the normalised, resized neighbours, end slices replicated
        blocks = [normalise_image(resized[j], normalisation, stats, head=head) for j in context_indices(depth, pos, k)]
        np.testing.assert_allclose(item, np.concatenate(blocks, axis=2).transpose(2, 0, 1), atol=1e-6)
    first = ds[rows[0]]["image"].numpy()
    np.testing.assert_array_equal(first[:3], first[3 * k : 3 * k + 3])  # block before the first slice = itself


def test_dataset_checks_channels_and_augments_stacks(synthetic_run):
    cfg = load_config(None, ["data.context_slices=1", "model.in_channels=9", "data.scale=0.5",
                             "augment.missing_sequence_p=1.0"])  # fmt: skip
    ds = build_dataset(synthetic_run, "train", cfg, train=True)
    assert ds.augment.intensity.transforms[0].channels_per_slice == 3
    ds.set_seed(0)
    item = ds[3]
    assert item["image"].shape == (9, 64, 64) and item["mask"].shape == (1, 64, 64)
    bad = load_config(None, ["data.context_slices=1", "model.in_channels=8"])
    with pytest.raises(ValueError, match="model.in_channels=8 is not a multiple"):
        build_dataset(synthetic_run, "train", bad, train=True)


# ----------------------------------------------------------------------------- predictor on volumes


def _predictor_25d(k: int = 1, **infer) -> Predictor:
    cfg = tiny_config()
    cfg.data.context_slices = k
    cfg.model.in_channels = 3 * (2 * k + 1)
    torch.manual_seed(0)
    return Predictor(build_model(cfg.model).eval(), cfg, InferConfig(**infer), device="cpu")


def test_predict_volume_uses_neighbours_and_chunking_does_not_change_it():
    rng = np.random.default_rng(1)
    volume = rng.integers(1, 255, (7, 24, 20, 3), dtype=np.uint8)
    whole = _predictor_25d(tile_batch=64).predict_volume(volume)
    chunked = _predictor_25d(tile_batch=2).predict_volume(volume)  # 2 slices per forward pass
    assert whole.shape == (7, 24, 20) and whole.dtype == np.float32
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    predictor = _predictor_25d()
    np.testing.assert_allclose(predictor.predict_volume(volume[:2])[0], whole[0], atol=1e-6)  # needs slices 0, 1
    np.testing.assert_allclose(predictor.predict_volume(volume[2:5])[1], whole[3], atol=1e-6)  # needs 2, 3, 4
    alone = predictor.predict_proba(volume[3])  # a 2D image: its own neighbours
    np.testing.assert_allclose(alone, predictor.predict_volume(volume[3:4])[0], atol=1e-6)
    assert not np.allclose(alone, whole[3], atol=1e-4)  # neighbours do change the prediction


def test_single_sequence_input_is_replicated_per_slice_before_stacking():
    predictor = _predictor_25d()
    gray = np.random.default_rng(2).integers(1, 255, (3, 16, 16, 1), dtype=np.uint8)
    with pytest.warns(UserWarning, match="1 channel replicated to 3"):
        prob = predictor.predict_volume(gray)
    np.testing.assert_allclose(prob, predictor.predict_volume(np.repeat(gray, 3, axis=-1)), atol=1e-6)
