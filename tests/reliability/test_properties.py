"""Property-based tests (Hypothesis): any scan file through the readers and the Predictor.

Contract, whatever the shape, dtype (uint8/16, int16, float32/64, big-endian), channel
count, NaN/inf sprinkle or NIfTI orientation: either a mask of the input's spatial shape
with values {0, 1} (and finite probabilities in [0, 1]), or a ``ScanError`` with a one-line
message; never another exception, never NaN.

Run time is bounded by a registered profile with a fixed example count, derandomised so
CI is deterministic: ``ci`` (default) or ``thorough`` for a longer local search:
``MRI_SEG_HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import InferConfig
from mri_seg.inference.predictor import Predictor
from mri_seg.io.registry import discover, read_source
from mri_seg.io.scan import ScanError, replace_nonfinite, to_model_channels
from mri_seg.postprocess import postprocess

_COMMON = dict(deadline=None, derandomize=True, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
settings.register_profile("ci", max_examples=30, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)
PROFILE = settings.get_profile(os.environ.get("MRI_SEG_HYPOTHESIS_PROFILE", "ci"))

_PREDICTORS: dict[tuple[float, bool], Predictor] = {}


def predictor(scale: float, tta: bool) -> Predictor:
    """Tiny untrained models (the contract is about shapes and values, not accuracy), built once."""
    key = (scale, tta)
    if key not in _PREDICTORS:
        with tempfile.TemporaryDirectory() as tmp:
            cfg_model = tiny_config(scale=scale)
            cfg_model.data.image_size = 32  # tiles of 32 (or 16) pixels: small inputs are not padded to 256
            path = write_untrained_checkpoint(Path(tmp) / "m.pt", cfg_model)
            cfg = InferConfig()
            cfg.postprocess.tta_flip = tta
            cfg.tile_batch = 4
            _PREDICTORS[key] = Predictor.from_checkpoint(path, device="cpu", infer_cfg=cfg)
    return _PREDICTORS[key]


# ----------------------------------------------------------------------------- strategies

INT_DTYPES = ["uint8", "uint16", "int16"]
FLOAT_DTYPES = ["float32", "float64"]


@st.composite
def arrays(draw, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Values spanning the dtype (extremes included); floats may carry NaN/+inf/-inf sprinkles."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    native = dtype.newbyteorder("=")
    if native.kind in "ui":
        info = np.iinfo(native)
        lo, hi = draw(st.sampled_from([(info.min, info.max), (0, 0), (0, 1), (max(info.min, -50), 200)]))
        data = rng.integers(lo, hi, size=shape, endpoint=True, dtype=native)
    else:
        scale = draw(st.sampled_from([0.0, 1e-30, 1.0, 400.0, 1e6, 1e20, 1e300 if native.itemsize == 8 else 1e30]))
        data = (rng.standard_normal(shape) * scale).astype(native)
        sprinkle = draw(st.integers(0, 6)) if data.size else 0
        for _ in range(sprinkle):
            data.flat[rng.integers(0, data.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        if draw(st.booleans()) and data.size:
            data[...] = np.nan  # a wholly non-finite scan
    return data.astype(dtype)


@st.composite
def tiff_files(draw, folder: Path) -> Path:
    h, w = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    channels = draw(st.sampled_from([1, 2, 3, 4, 5]))
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES + FLOAT_DTYPES)))
    if draw(st.booleans()):
        dtype = dtype.newbyteorder(">")
    data = draw(arrays((h, w) if channels == 1 else (h, w, channels), dtype))
    path = folder / "scan.tif"
    photometric = "rgb" if channels == 3 and draw(st.booleans()) else "minisblack"
    tifffile.imwrite(path, data, photometric=photometric, planarconfig="contig" if channels > 1 else None,
                     byteorder=">" if dtype.byteorder == ">" else "<")  # fmt: skip
    return path


@st.composite
def png_files(draw, folder: Path) -> Path:
    h, w = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    channels = draw(st.sampled_from([1, 3, 4]))
    dtype = np.dtype(draw(st.sampled_from(["uint8", "uint16"])))
    data = draw(arrays((h, w) if channels == 1 else (h, w, channels), dtype))
    path = folder / "scan.png"
    assert cv2.imwrite(str(path), data)
    return path


def _affine(draw) -> np.ndarray:
    """A random orientation: axes permuted and flipped, anisotropic spacing, an offset."""
    perm = draw(st.permutations([0, 1, 2]))
    signs = [draw(st.sampled_from([-1.0, 1.0])) for _ in range(3)]
    spacing = [draw(st.sampled_from([0.5, 1.0, 3.0])) for _ in range(3)]
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3)[list(perm)] * np.array(signs) * np.array(spacing)
    affine[:3, 3] = [draw(st.integers(-100, 100)) for _ in range(3)]
    return affine


@st.composite
def nifti_files(draw, folder: Path) -> Path:
    shape = tuple(draw(st.integers(1, 24)) for _ in range(3))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES + FLOAT_DTYPES)))
    endian = draw(st.sampled_from(["<", ">"]))
    data = draw(arrays(shape if channels is None else (*shape, channels), dtype))
    header = nib.Nifti1Header(endianness=endian)
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(data, _affine(draw), header)
    if dtype.kind in "ui" and draw(st.booleans()):
        image.header.set_slope_inter(draw(st.sampled_from([0.5, 2.0, -1.0])), draw(st.sampled_from([0.0, 10.0])))
    path = folder / draw(st.sampled_from(["scan.nii", "scan.nii.gz"]))
    nib.save(image, str(path))
    return path


# ----------------------------------------------------------------------------- the contract


def _segment(path: Path, nifti_axis: int, scale: float, tta: bool) -> tuple[np.ndarray, np.ndarray, tuple]:
    """What infer does to one file, minus the writing: discover, read, sanitise, predict, post-process."""
    (source,) = discover(path).sources
    model = predictor(scale, tta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # channel/NaN/page warnings are checked in test_bad_inputs
        scan = read_source(source, nifti_axis)
        slices = replace_nonfinite(scan.slices, path)
        to_model_channels(slices[:1], model.in_channels, path)
        probs = np.stack(list(model.iter_proba(slices)))
    masks = np.stack([postprocess(p, 0.5, 2) for p in probs])
    return masks, probs, slices.shape[:3]


def _check(path: Path, nifti_axis: int = 2, scale: float = 1.0, tta: bool = False) -> np.ndarray | None:
    """The mask when the contract's first branch holds, None for a clear ScanError (anything else fails)."""
    try:
        masks, probs, spatial = _segment(path, nifti_axis, scale, tta)
    except ScanError as exc:
        text = str(exc)
        assert text and "\n" not in text, f"ScanError must be one clear line, got {text!r}"
        return None
    assert masks.shape == spatial and probs.shape == spatial
    assert masks.dtype == bool or set(np.unique(masks)) <= {0, 1}
    assert np.isfinite(probs).all() and probs.min() >= 0.0 and probs.max() <= 1.0
    return masks


@PROFILE
@given(data=st.data(), scale=st.sampled_from([1.0, 0.5]), tta=st.booleans())
def test_any_tiff_gives_a_mask_or_a_scan_error(data, scale, tta):
    with tempfile.TemporaryDirectory() as tmp:
        path = data.draw(tiff_files(Path(tmp)))
        _check(path, scale=scale, tta=tta)


@PROFILE
@given(data=st.data(), scale=st.sampled_from([1.0, 0.5]))
def test_any_png_gives_a_mask_or_a_scan_error(data, scale):
    with tempfile.TemporaryDirectory() as tmp:
        path = data.draw(png_files(Path(tmp)))
        _check(path, scale=scale)


@PROFILE
@given(data=st.data(), axis=st.sampled_from([0, 1, 2]), scale=st.sampled_from([1.0, 0.5]))
def test_any_nifti_gives_a_mask_in_its_voxel_grid_or_a_scan_error(data, axis, scale):
    with tempfile.TemporaryDirectory() as tmp:
        path = data.draw(nifti_files(Path(tmp)))
        masks = _check(path, nifti_axis=axis, scale=scale)
        if masks is not None:
            stored = nib.load(str(path)).shape[:3]
            assert np.moveaxis(masks, 0, axis).shape == stored  # the mask goes back voxel for voxel


@PROFILE
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 64), st.integers(1, 64)),
    channels=st.sampled_from([1, 3]),
    dtype=st.sampled_from(INT_DTYPES + FLOAT_DTYPES + [">u2", ">i2", ">f4", ">f8", "bool", "int32", "int64"]),
    data=st.data(),
)
def test_predictor_on_in_memory_volumes(shape, channels, dtype, data):
    """Predictor alone (the API evaluation and other callers use): never NaN, never a stray exception."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        volume = data.draw(arrays((*shape, channels), np.dtype("uint8"))) > 0
    else:
        volume = data.draw(arrays((*shape, channels), dtype))
    model = predictor(0.5, False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs = np.stack(list(model.iter_proba(volume)))
    except ScanError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert probs.shape == shape and probs.dtype == np.float32
    assert np.isfinite(probs).all() and 0.0 <= probs.min() and probs.max() <= 1.0


def test_profile_is_bounded_and_deterministic():
    assert PROFILE.derandomize is True and PROFILE.max_examples <= 500 and PROFILE.database is None
    if "MRI_SEG_HYPOTHESIS_PROFILE" not in os.environ:
        assert PROFILE.max_examples == 30


@pytest.mark.parametrize("dtype", ["float32", ">f8"])
def test_known_bad_example_all_nan_volume_is_background_not_nan(tmp_path, dtype):
    """A fixed example of the property (so a failure here is readable without Hypothesis)."""
    path = tmp_path / "nan.nii.gz"
    header = nib.Nifti1Header(endianness=">" if dtype.startswith(">") else "<")
    nib.save(nib.Nifti1Image(np.full((9, 7, 3), np.nan, dtype=dtype), np.eye(4), header), str(path))
    masks, probs, spatial = _segment(path, 2, 0.5, False)
    assert spatial == (3, 9, 7) and np.isfinite(probs).all() and masks.shape == spatial
