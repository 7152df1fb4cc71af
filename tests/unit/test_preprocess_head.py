"""data.normalisation: zscore_head, a z-score over a head mask derived from FLAIR, so that
the noise around the head, a skull strip or a constant non-zero background (other sites'
storage conventions) do not change the statistics."""

from __future__ import annotations

import numpy as np
import pytest
from untrained import tiny_config

from mri_seg.config import InferConfig
from mri_seg.inference.predictor import Predictor
from mri_seg.models import build_model
from mri_seg.preprocess import Head, head_mask, normalise_image, robust_threshold, volume_stats

SIZE = 64
YY, XX = np.mgrid[:SIZE, :SIZE]
R = np.hypot(YY - 32, XX - 32)
HEAD = R < 28


def _slice(index: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 3-sequence slice: noise (0-8) around a head of scalp, dark skull, brain with dark
    CSF and a bright lesion; a 2-pixel noise speck of 60 outside the head."""
    image = rng.integers(0, 9, (SIZE, SIZE, 3)).astype(np.uint8)
    image[HEAD] = 200
    image[R < 25] = 20  # skull: dark, a ring inside the head
    image[R < 22] = (90 + 5 * index, 110 + 5 * index, 70)  # brain, per sequence
    image[R < 4] = 12  # CSF: darker than the threshold, inside the head
    image[(np.abs(YY - 40) < 4) & (np.abs(XX - 30) < 5)] = (150, 220, 160)  # lesion
    image[2, 2:4] = 60  # speck
    return image


def _volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([_slice(i, rng) for i in range(4)])


def test_robust_threshold_follows_a_linear_rescaling_and_ignores_outliers():
    values = np.random.default_rng(1).normal(100, 30, 10_000)
    t = robust_threshold(values)
    p2, p98 = np.percentile(values, [2, 98])
    assert t == pytest.approx(p2 + 0.1 * (p98 - p2))
    assert robust_threshold(3.5 * values - 40) == pytest.approx(3.5 * t - 40)
    values[:5] = 1e6  # a few hot pixels
    assert robust_threshold(values) == pytest.approx(t, rel=0.02)
    assert robust_threshold(np.array([np.nan])) == 0.0


def test_head_mask_is_the_whole_head_without_the_noise_around_it():
    volume = _volume()
    head = Head.of_volume(volume, 3)
    assert 8 < head.threshold < 60  # above the noise, below the tissue
    mask = head_mask(volume[0][..., 1], head.threshold)
    np.testing.assert_array_equal(mask, HEAD)  # skull ring and CSF filled in, speck and noise left out
    fg = head.foreground(np.concatenate([volume[0], volume[1]], axis=2))  # a 2.5D stack: per slice, all sequences
    assert fg.shape == (SIZE, SIZE, 6) and all((fg[..., c] == HEAD).all() for c in range(6))
    assert not head_mask(np.zeros((8, 8)), 0.0).any()
    with pytest.raises(ValueError, match="5 channels are not whole slices of 3 sequences"):
        head.foreground(np.zeros((8, 8, 5)))


def _export(volume: np.ndarray) -> np.ndarray:
    """The volume as another pipeline stores it: each sequence z-scored over the head (float),
    the background a constant (-2.5), the noise gone."""
    out = np.empty(volume.shape, np.float32)
    for c in range(3):
        inside = volume[..., c][:, HEAD].astype(np.float64)
        z = (volume[..., c].astype(np.float32) - inside.mean()) / inside.std()
        out[..., c] = np.where(HEAD, z, -2.5)
    return out


def test_zscore_head_gives_a_rescaled_export_with_a_constant_background_the_input_of_the_original():
    volume, export = _volume(), _export(_volume())
    for method, same in (("zscore_head", True), ("zscore_volume", False)):
        inputs = []
        for vol in (volume, export):
            head = Head.of_volume(vol, 3) if method == "zscore_head" else None
            stats = volume_stats(vol, head=head)
            inputs.append(np.stack([normalise_image(s, method, stats, head=head) for s in vol]))
        if same:
            np.testing.assert_allclose(inputs[1], inputs[0], atol=1e-4)
            assert (inputs[0][:, ~HEAD] == 0).all()  # outside the head: 0, noise and all
            inside = inputs[0][:, HEAD]
            assert inside.mean(axis=(0, 1)) == pytest.approx([0, 0, 0], abs=1e-5)  # z-scored over the head
        else:  # so the test above could fail: the non-zero convention sees the noise in one, -2.5 in the other
            assert np.abs(inputs[1] - inputs[0]).max() > 1.0


def test_predictor_with_zscore_head_gives_both_storages_the_same_input():
    cfg = tiny_config()
    cfg.data.normalisation = "zscore_head"
    predictor = Predictor(build_model(cfg.model), cfg, InferConfig(), normalisation="zscore_head", device="cpu")
    volume, export = _volume(), _export(_volume())
    np.testing.assert_allclose(
        predictor.prepare_inputs(export, [0, 3]), predictor.prepare_inputs(volume, [0, 3]), atol=1e-4
    )
    alone = predictor._prepare(volume[1])  # a 2D image: its own head threshold and statistics
    head = Head.of_volume([volume[1]], 3)
    expected = normalise_image(volume[1], "zscore_head", volume_stats([volume[1]], head=head), head=head)
    np.testing.assert_allclose(alone, expected.transpose(2, 0, 1), atol=1e-6)


def test_zscore_head_is_computed_per_stacked_slice_without_touching_its_input():
    """A 2.5D stack: each slice's channels are z-scored and zeroed outside that slice's own head
    (the same float32 operations as ``(x - mean) / std`` inside, exactly 0 outside); a float32
    input is left as it was (the normalisation works on its own copy)."""
    volume = _volume()
    head = Head.of_volume(list(volume), 3)
    stack = np.concatenate([volume[0], volume[1], volume[2]], axis=2).astype(np.float32)
    stack[:, :, 3:6] = np.roll(stack[:, :, 3:6], 5, axis=1)  # the middle slice's head elsewhere
    before = stack.copy()
    stats = np.tile(volume_stats(list(volume), head=head), (1, 3))
    out = normalise_image(stack, "zscore_head", stats, head=head)
    np.testing.assert_array_equal(stack, before)
    masks = head.masks(stack)
    assert not np.array_equal(masks[:, :, 0], masks[:, :, 1])
    means, stds = stats[0].astype(np.float32), np.maximum(stats[1], 1e-6).astype(np.float32)
    for c in range(9):
        inside = masks[:, :, c // 3]
        np.testing.assert_array_equal(out[:, :, c][inside], ((stack[:, :, c] - means[c]) / stds[c])[inside])
        assert np.all(out[:, :, c][~inside] == 0)
    assert not np.any((out == 0) & np.signbit(out))  # outside is +0.0, never -0.0
    first = normalise_image(stack.astype(np.uint8), "zscore_head", stats, head=head, channels_first=True)
    assert first.shape == (9, SIZE, SIZE) and first.flags.c_contiguous
    np.testing.assert_array_equal(first, out.transpose(2, 0, 1))


def test_channels_first_is_the_transpose_for_every_normalisation():
    volume = _volume()
    image, stats = volume[1], volume_stats(list(volume))
    for method in ("zscore_nonzero", "zscore_volume"):
        hwc = normalise_image(image, method, stats)
        chw = normalise_image(image, method, stats, channels_first=True)
        assert chw.flags.c_contiguous
        np.testing.assert_array_equal(chw, hwc.transpose(2, 0, 1))


def test_zscore_head_needs_the_head():
    with pytest.raises(ValueError, match=r"'zscore_head' needs the volume's head"):
        normalise_image(_volume()[0], "zscore_head", np.ones((2, 3)))


def test_training_moves_each_slices_head_mask_with_the_augmentation(synthetic_run):
    """The dataset derives each slice's head mask once (as inference derives it from the scan) and
    the augmentation moves it with the image: a flipped training item is the flipped inference input."""
    from mri_seg.config import load_config
    from mri_seg.data.dataset import build_dataset
    from mri_seg.io.images import read_slice

    keys = ["data.normalisation=zscore_head", "data.context_slices=1", "model.in_channels=9", "data.scale=0.5",
            "augment.hflip_p=1.0", "augment.affine.p=0", "augment.elastic.p=0", "augment.missing_sequence_p=0",
            "augment.intensity.p=0", "augment.intensity.noise_p=0", "model.channels=[4,8,16]", "model.strides=[2,2]"]
    cfg = load_config(None, keys)
    ds = build_dataset(synthetic_run, "train", cfg, train=True)
    predictor = Predictor(build_model(cfg.model), cfg, InferConfig(), normalisation="zscore_head", device="cpu")
    pid = ds.patient_ids[0]
    rows = [i for i, p in enumerate(ds.patient_ids) if p == pid]
    volume = np.stack([read_slice(p) for p in ds.frame.iloc[rows]["image_path"]])
    for pos in (0, len(rows) // 2):
        masks = ds.head_masks(rows[pos])
        assert masks.shape == (64, 64, 3) and 0 < masks.mean() < 1  # a head, not the whole slice
        assert not np.array_equal(masks, masks[:, ::-1])  # and not symmetric: a flip shows
        item = ds[rows[pos]]["image"].numpy()
        np.testing.assert_allclose(item, predictor.prepare_inputs(volume, [pos])[0][:, :, ::-1], atol=1e-5)
        assert np.array_equal(ds.augment.head, masks[:, ::-1])
