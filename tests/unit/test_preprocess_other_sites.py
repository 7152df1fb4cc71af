"""Scans stored unlike the training data (issue 19): a constant non-zero background and thin slices.

The contract: a scan that differs from a training-like one only by how it is stored gives the
model the same input (``infer.background``, ``infer.context_mm``).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from untrained import tiny_config

from mri_seg.config import InferConfig, load_config
from mri_seg.inference.predictor import Predictor
from mri_seg.io.nifti import read_nifti
from mri_seg.io.options import ReadOptions
from mri_seg.models import build_model
from mri_seg.preprocess import border_background, context_indices, context_step, normalise_image, volume_stats


def _head_volume(depth: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    """``D x H x W x 3`` uint8: a noisy disc ("head") on an exact-0 background, as the Kaggle slices."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
    vol = rng.integers(20, 250, (depth, size, size, 3)).astype(np.uint8)
    vol[:, ~head] = 0
    return vol


def _zscored_with_constant_background(vol: np.ndarray) -> np.ndarray:
    """What a BraTS-like pipeline stores: each sequence z-scored over the head, the background its minimum."""
    head = vol.max(axis=-1) > 0
    out = np.zeros(vol.shape, np.float32)
    for c in range(vol.shape[-1]):
        values = vol[..., c][head].astype(np.float32)
        out[..., c] = (vol[..., c] - values.mean()) / values.std()
    out[~head] = out[head].min() - 0.5
    return out


def _predictor(normalisation: str, k: int = 0, **infer) -> Predictor:
    infer = {"background": "border", "context_mm": 3.0, **infer}  # the levers on (both default off)
    cfg = tiny_config()
    cfg.data.normalisation = normalisation
    cfg.data.context_slices = k
    cfg.model.in_channels = 3 * (2 * k + 1)
    torch.manual_seed(0)
    return Predictor(build_model(cfg.model).eval(), cfg, InferConfig(**infer), normalisation, device="cpu")


# ----------------------------------------------------------------------------- background


def test_border_background_finds_a_constant_frame_and_keeps_zero_otherwise():
    vol = _zscored_with_constant_background(_head_volume())
    bg = border_background(vol, share=0.9)
    np.testing.assert_allclose(bg, vol[0, 0, 0], rtol=0)  # each channel's constant
    assert np.all(bg < 0)
    noisy = _head_volume()
    noisy[:, 0, :, 1] = np.arange(noisy.shape[2])  # one channel's frame varies: not a constant background
    assert border_background(noisy, share=0.9).tolist() == [0.0, 0.0, 0.0]
    shifted = _head_volume().astype(np.int16) + 100  # every voxel + 100: the frame is 100
    assert border_background(shifted, share=0.9).tolist() == [100.0, 100.0, 100.0]
    half = np.zeros((1, 10, 10, 1), np.float32)
    half[0, :5] = 7.0  # 7 on part of the frame only: below the share
    assert border_background(half, share=0.9).tolist() == [0.0]


@pytest.mark.parametrize("normalisation", ["zscore_volume", "zscore_nonzero"])
def test_zscored_scan_with_constant_background_gives_the_model_the_same_input(normalisation):
    """Without border detection the constant background is read as head and the input differs."""
    vol = _head_volume()
    stored = _zscored_with_constant_background(vol)
    predictor = _predictor(normalisation)
    reference = predictor.prepare_inputs(vol, range(len(vol)))
    np.testing.assert_allclose(predictor.prepare_inputs(stored, range(len(vol))), reference, atol=1e-4)
    single = predictor.predict_proba(stored[2])  # an image alone: its own frame
    np.testing.assert_allclose(single, predictor.predict_proba(vol[2]), atol=1e-4)
    assumes_zero = _predictor(normalisation, background="zero").prepare_inputs(stored, range(len(vol)))
    assert np.abs(assumes_zero - reference).max() > 0.5


def test_training_like_scans_are_unchanged_by_border_detection():
    vol = _head_volume()
    border = _predictor("zscore_volume").prepare_inputs(vol, range(len(vol)))
    zero = _predictor("zscore_volume", background="zero").prepare_inputs(vol, range(len(vol)))
    np.testing.assert_array_equal(border, zero)


def test_normalisation_with_a_background_value_matches_zero_background():
    vol = _head_volume()[0]
    shifted = vol.astype(np.float32) + 37.5
    shifted[vol.max(axis=-1) == 0] = 37.5
    bg = np.full(3, 37.5)
    np.testing.assert_allclose(normalise_image(shifted, background=bg), normalise_image(vol), atol=1e-5)
    np.testing.assert_allclose(volume_stats([shifted], bg)[1], volume_stats([vol])[1], rtol=1e-9)
    with pytest.raises(ValueError, match="one background value per channel"):
        normalise_image(shifted, background=np.zeros(2))


def test_background_keys_are_checked():
    with pytest.raises(ValueError, match="infer.background"):
        load_config(None, ["infer.background=noise"])
    with pytest.raises(ValueError, match="infer.background_share"):
        load_config(None, ["infer.background_share=0.3"])


# ----------------------------------------------------------------------------- context by distance


def test_context_step_follows_the_slice_spacing():
    assert context_step(None, 3.0) == 1  # spacing unknown: adjacent slices
    assert context_step(3.0, 3.0) == 1
    assert context_step(5.0, 3.0) == 1  # thicker than training: still the adjacent slices
    assert context_step(1.0, 3.0) == 3
    assert context_step(1.5, 3.0) == 2
    assert context_step(1.0, 0.0) == 1  # infer.context_mm 0: always adjacent
    assert context_indices(10, 5, 1, step=3) == [2, 5, 8]
    assert context_indices(10, 1, 2, step=2) == [0, 0, 1, 3, 5]  # ends replicated
    with pytest.raises(ValueError, match="infer.context_mm"):
        context_step(1.0, -1.0)


def test_thin_slices_get_the_neighbours_a_thick_scan_has():
    """A 3 mm volume and the same volume with every slice repeated 3 times (1 mm apart): slice
    3i+1 of the thin one gets exactly the input of slice i of the thick one."""
    thick = _head_volume(depth=5)
    thin = np.repeat(thick, 3, axis=0)
    predictor = _predictor("zscore_volume", k=1)
    expected = predictor.prepare_inputs(thick, [1, 2, 3], slice_spacing_mm=3.0)
    got = predictor.prepare_inputs(thin, [4, 7, 10], slice_spacing_mm=1.0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    adjacent = predictor.prepare_inputs(thin, [4, 7, 10])  # spacing not given: adjacent slices
    assert np.abs(adjacent - expected).max() > 0.5
    assert InferConfig().context_mm == 0.0 and InferConfig().background == "zero"  # both levers are opt-in
    off = _predictor("zscore_volume", k=1, context_mm=0.0).prepare_inputs(thin, [4, 7, 10], slice_spacing_mm=1.0)
    np.testing.assert_array_equal(off, adjacent)
    probs = predictor.predict_volume(thin, slice_spacing_mm=1.0)  # whole volume, chunked: same step
    np.testing.assert_allclose(probs[[4, 7, 10]], predictor.predict_volume(thick, slice_spacing_mm=3.0)[[1, 2, 3]],
                               atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("axcodes,zooms,expected", [
    (("R", "A", "S"), (0.9, 0.8, 1.0), 1.0),
    (("L", "P", "S"), (0.9, 0.8, 4.0), 4.0),
    (("S", "R", "A"), (2.5, 0.9, 0.8), 2.5),  # axial slices along the stored first axis
])  # fmt: skip
def test_nifti_slice_spacing_is_the_zoom_along_the_slice_axis(tmp_path, axcodes, zooms, expected):
    from mri_seg.io.orientation import axcodes_affine

    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 7, 8), np.float32), axcodes_affine(axcodes, zooms)), str(path))
    scan = read_nifti(path, ReadOptions.from_config(InferConfig()))
    assert scan.slice_spacing_mm == pytest.approx(expected)
