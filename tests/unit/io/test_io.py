"""Reading scans and writing masks: every file type, geometry kept, channel rules, discovery."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import cv2
import nibabel as nib
import numpy as np
import pytest

from mri_seg.io import images, kaggle, nifti
from mri_seg.io.images import read_slice as read_training_slice
from mri_seg.io.registry import discover, file_type_of, output_paths, read_source, read_truth, write_outputs
from mri_seg.io.scan import ChannelWarning, ScanError, to_model_channels


def _rotation_affine() -> np.ndarray:
    """A non-identity affine: 20 degree rotation, anisotropic voxels, translation."""
    t = np.deg2rad(20)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 3.0])
    affine[:3, 3] = [-90.5, 12.25, 40.0]
    return affine


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None, units: str = "mm") -> Path:
    image = nib.Nifti1Image(data, _rotation_affine() if affine is None else affine)
    image.header.set_xyzt_units(units)
    nib.save(image, str(path))
    return path


# ----------------------------------------------------------------------------- 2D images


@pytest.mark.parametrize("ext,fmt", [(".png", "png"), (".tif", "tiff"), (".tiff", "tiff")])
def test_image_read_matches_cv2_imread_bgr_order(tmp_path, ext, fmt):
    rgb = np.random.default_rng(0).integers(0, 255, (300, 257, 3), dtype=np.uint8)
    path = tmp_path / f"x{ext}"
    cv2.imwrite(str(path), rgb)
    scan = read_source(discover(path).sources[0])
    assert scan.format == fmt and scan.array.shape == (300, 257, 3)
    # same call as mri_seg.io.images.read_slice, so the same channel order as training
    assert np.array_equal(scan.array, cv2.imread(str(path), cv2.IMREAD_UNCHANGED))


def test_grayscale_and_16bit_images_get_a_channel_axis(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((31, 17), 7, np.uint8))
    cv2.imwrite(str(tmp_path / "d.png"), np.full((20, 10), 60000, np.uint16))
    g = images.read_image(tmp_path / "g.png", "png")
    d = images.read_image(tmp_path / "d.png", "png")
    assert g.array.shape == (31, 17, 1)
    assert d.array.dtype == np.uint16 and d.array.max() == 60000


def test_jpeg_read_and_mask_written_as_png(tmp_path):
    cv2.imwrite(str(tmp_path / "j.jpeg"), np.full((40, 50, 3), 100, np.uint8))
    (source,) = discover(tmp_path).sources
    assert source.format == "jpeg"
    paths = output_paths(source, tmp_path / "out")
    assert paths.masks == [tmp_path / "out" / "j_mask.png"]  # JPEG is lossy: masks are PNG
    scan = read_source(source)
    mask = np.zeros((1, 40, 50), bool)
    mask[0, 5:9, 3:30] = True
    write_outputs(source, scan, paths, mask, None)
    back = cv2.imread(str(paths.masks[0]), cv2.IMREAD_UNCHANGED)
    assert back.shape == (40, 50) and back.dtype == np.uint8
    assert set(np.unique(back)) == {0, 255} and np.array_equal(back > 0, mask[0])


@pytest.mark.parametrize("ext", [".tif", ".png"])
def test_mask_and_probability_images_keep_odd_sizes(tmp_path, ext):
    cv2.imwrite(str(tmp_path / f"s{ext}"), np.ones((300, 257, 3), np.uint8))
    (source,) = discover(tmp_path).sources
    scan = read_source(source)
    paths = output_paths(source, tmp_path / "o")
    mask = np.zeros((1, 300, 257), bool)
    mask[0, 100:200, 7:9] = True
    prob = np.linspace(0, 1, 300 * 257, dtype=np.float32).reshape(1, 300, 257)
    write_outputs(source, scan, paths, mask, prob)
    assert paths.masks[0].name == f"s_mask{ext}" and paths.probs[0].name == f"s_prob{ext}"
    m = cv2.imread(str(paths.masks[0]), cv2.IMREAD_UNCHANGED)
    p = cv2.imread(str(paths.probs[0]), cv2.IMREAD_UNCHANGED)
    assert m.shape == (300, 257) and np.array_equal(m == 255, mask[0])
    assert p.dtype == np.uint16 and np.allclose(p / 65535.0, prob[0], atol=1e-4)


def test_corrupt_and_empty_files_raise_scan_error_naming_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    for name in ("bad.png", "empty.tif", "bad.nii.gz"):
        source = next(s for s in discover(tmp_path).sources if s.path.name == name)
        with pytest.raises(ScanError, match=name):
            read_source(source)


# ----------------------------------------------------------------------------- channels


def test_channel_rules():
    three = np.zeros((4, 5, 3), np.uint8)
    assert to_model_channels(three, 3, "x") is three
    with pytest.warns(ChannelWarning, match="1 channel replicated"):
        out = to_model_channels(np.arange(20).reshape(4, 5, 1), 3, "gray.png")
    assert out.shape == (4, 5, 3) and np.array_equal(out[..., 0], out[..., 2])
    with pytest.warns(ChannelWarning, match="alpha"):
        rgba = np.concatenate([three, np.full((4, 5, 1), 255, np.uint8)], axis=2)
        assert to_model_channels(rgba, 3, "x").shape == (4, 5, 3)
    rgba[0, 0, 3] = 0
    with pytest.raises(ScanError, match="non-constant alpha"):
        to_model_channels(rgba, 3, "x")
    with pytest.raises(ScanError, match="two.png: 2 channels"):
        to_model_channels(np.zeros((4, 5, 2)), 3, "two.png")
    with pytest.raises(ScanError, match="5 channels"):
        to_model_channels(np.zeros((2, 4, 5, 5)), 3, "vol")


# ----------------------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_mask_round_trip_keeps_geometry_voxel_for_voxel(tmp_path, axis, suffix):
    rng = np.random.default_rng(axis)
    data = rng.random((13, 11, 7)).astype(np.float32)
    src = _save_nifti(tmp_path / f"vol{suffix}", data)
    scan = nifti.read_nifti(src, axis)
    expected_depth = data.shape[axis]
    assert scan.array.shape[0] == expected_depth and scan.array.shape[-1] == 1
    slice_mask = scan.array[..., 0] > 0.5  # a mask defined in slice space ...
    out = tmp_path / f"vol_mask{suffix}"
    nifti.write_mask_nifti(out, slice_mask, scan)
    back = nib.load(str(out))
    assert back.shape == data.shape
    np.testing.assert_allclose(back.affine, nib.load(str(src)).affine)
    assert back.get_data_dtype() == np.uint8
    assert back.header.get_slope_inter() == (None, None)
    assert int(back.header["sform_code"]) == int(nib.load(str(src)).header["sform_code"])
    assert int(back.header["qform_code"]) == int(nib.load(str(src)).header["qform_code"])
    # ... lands on exactly the voxels it was computed from
    assert np.array_equal(np.asarray(back.dataobj), (data > 0.5).astype(np.uint8))


def test_nifti_4d_three_sequences_gives_3d_mask(tmp_path):
    data = np.random.default_rng(1).random((12, 9, 5, 3)).astype(np.float32)
    src = _save_nifti(tmp_path / "seq.nii.gz", data)
    scan = nifti.read_nifti(src, 2)
    assert scan.array.shape == (5, 12, 9, 3)
    assert np.allclose(scan.array[3, :, :, 1], data[:, :, 3, 1])  # array index space, channel order kept
    nifti.write_mask_nifti(tmp_path / "seq_mask.nii.gz", scan.array[..., 1] > 0.5, scan)
    back = nib.load(str(tmp_path / "seq_mask.nii.gz"))
    assert back.shape == (12, 9, 5)
    np.testing.assert_allclose(back.affine, _rotation_affine())
    assert np.array_equal(np.asarray(back.dataobj) > 0, data[..., 1] > 0.5)


def test_nifti_scaling_applied_and_voxel_size(tmp_path):
    raw = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    image = nib.Nifti1Image(raw, np.diag([0.5, 0.5, 2.0, 1.0]))
    image.header.set_slope_inter(2.0, 5.0)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(tmp_path / "s.nii"))
    scan = nifti.read_nifti(tmp_path / "s.nii", 2)
    assert np.allclose(np.moveaxis(scan.array[..., 0], 0, 2), raw * 2.0 + 5.0)
    assert scan.voxel_mm3 == pytest.approx(0.5)
    image.header.set_xyzt_units("micron")
    nib.save(image, str(tmp_path / "um.nii"))
    assert nifti.read_nifti(tmp_path / "um.nii", 2).voxel_mm3 == pytest.approx(0.5e-9)
    image.header.set_xyzt_units("unknown")  # unknown units, but a spatial transform: mm as ITK/FSL assume
    nib.save(image, str(tmp_path / "u.nii"))
    assert nifti.read_nifti(tmp_path / "u.nii", 2).voxel_mm3 == pytest.approx(0.5)
    bare = nib.Nifti1Image(raw, None)  # no transform, no units: pixdims are placeholders
    nib.save(bare, str(tmp_path / "bare.nii"))
    assert nifti.read_nifti(tmp_path / "bare.nii", 2).voxel_mm3 is None


def test_nifti_bad_shapes_are_errors(tmp_path):
    _save_nifti(tmp_path / "four.nii.gz", np.zeros((4, 4, 4, 4), np.float32))
    with pytest.raises(ScanError, match="four.nii.gz: NIfTI shape"):
        nifti.read_nifti(tmp_path / "four.nii.gz")
    _save_nifti(tmp_path / "flat.nii.gz", np.zeros((4, 4), np.float32))
    with pytest.raises(ScanError, match="flat.nii.gz"):
        nifti.read_nifti(tmp_path / "flat.nii.gz")


def test_nifti_probabilities_float32_same_geometry(tmp_path):
    src = _save_nifti(tmp_path / "p.nii.gz", np.ones((6, 5, 4), np.float32))
    (source,) = discover(tmp_path).sources
    scan = read_source(source, 1)
    paths = output_paths(source, tmp_path / "out")
    prob = np.random.default_rng(0).random(scan.array.shape[:3]).astype(np.float32)
    write_outputs(source, scan, paths, prob > 0.5, prob)
    back = nib.load(str(paths.probs[0]))
    assert paths.probs[0].name == "p_prob.nii.gz" and back.get_data_dtype() == np.float32
    np.testing.assert_allclose(back.affine, nib.load(str(src)).affine)
    np.testing.assert_allclose(np.moveaxis(back.get_fdata(), 1, 0), prob, atol=1e-7)


# ----------------------------------------------------------------------------- Kaggle layout + discovery


def _kaggle_patient(folder: Path, indices: list[int], size: int = 32, masks: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in indices:
        cv2.imwrite(str(folder / f"{folder.name}_{i}.tif"), np.full((size, size, 3), i, np.uint8))
        if masks:
            mask = np.zeros((size, size), np.uint8)
            mask[: i % size, :2] = 255
            cv2.imwrite(str(folder / f"{folder.name}_{i}_mask.tif"), mask)
    return folder


def test_kaggle_name_pattern():
    assert kaggle.parse_kaggle_name("TCGA_CS_4942_19970222_10.tif") == ("TCGA_CS_4942_19970222", 10, False)
    assert kaggle.parse_kaggle_name("TCGA_CS_4942_19970222_10_mask.tif") == ("TCGA_CS_4942_19970222", 10, True)
    assert kaggle.parse_kaggle_name("TCGA_DU_A5TP_19970614_3.tif")[1] == 3
    assert kaggle.parse_kaggle_name("scan_10.tif") is None
    assert kaggle.parse_kaggle_name("TCGA_CS_4942_19970222_10.png") is None


def test_kaggle_folder_is_one_volume_in_numeric_slice_order(tmp_path):
    patient = _kaggle_patient(tmp_path / "data" / "TCGA_AB_1234_20000101", [10, 2, 1])
    (tmp_path / "data" / "data.csv").write_text("Patient\n")
    found = discover(tmp_path / "data")
    (source,) = found.sources
    assert source.format == "kaggle" and source.rel == PurePosixPath("TCGA_AB_1234_20000101")
    assert found.skipped == [tmp_path / "data" / "data.csv"]
    scan = read_source(source)
    assert scan.array.shape == (3, 32, 32, 3)
    assert [int(scan.array[k, 0, 0, 0]) for k in range(3)] == [1, 2, 10]
    truth = read_truth(source, scan)
    assert truth.shape == (3, 32, 32) and int(truth[2].sum()) == 20  # slice 10: 10 rows x 2 columns
    paths = output_paths(source, tmp_path / "out")
    assert [p.name for p in paths.masks] == [f"{patient.name}_{i}_mask.tif" for i in (1, 2, 10)]
    assert paths.overlay == tmp_path / "out" / patient.name / f"{patient.name}_overlay.png"


def test_kaggle_slices_of_different_sizes_are_an_error(tmp_path):
    patient = _kaggle_patient(tmp_path / "TCGA_AB_1234_20000101", [1, 2], masks=False)
    cv2.imwrite(str(patient / f"{patient.name}_3.tif"), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ScanError, match="_3.tif: slice shape"):
        read_source(discover(tmp_path).sources[0])


def test_discovery_is_recursive_sorted_and_skips_masks_hidden_and_excluded(tmp_path):
    for rel in ["b/x.png", "a/deep/y.tif", "a/deep/y_mask.tif", "c.nii.gz", ".hidden.png", "out/old_mask.png",
                "out/z.png", "x.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = discover(tmp_path, exclude=[tmp_path / "out"])
    assert [str(s.rel) for s in found.sources] == ["a/deep/y.tif", "b/x.png", "c.nii.gz", "x.png"]
    y = found.sources[0]
    assert y.truth == tmp_path / "a/deep/y_mask.tif"
    assert (tmp_path / "a/deep/y_mask.tif").resolve() in found.input_files
    assert file_type_of("A.NII.GZ") == "nifti" and file_type_of("b.JPG") == "jpeg" and file_type_of("c.bmp") is None


def test_same_base_name_in_one_folder_gets_distinct_outputs(tmp_path):
    for name in ("x.png", "x.tif", "x.nii.gz", "y.png"):
        (tmp_path / name).write_bytes(b"")
    sources = discover(tmp_path).sources
    masks = [output_paths(s, tmp_path / "o").masks[0].name for s in sources]
    overlays = {output_paths(s, tmp_path / "o").overlay.name for s in sources}
    assert len(set(masks)) == 4 and len(overlays) == 4
    assert "y_mask.png" in masks and "x_png_mask.png" in masks


def test_single_file_input(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((8, 9), np.uint8))
    cv2.imwrite(str(tmp_path / "other.png"), np.zeros((8, 9), np.uint8))
    found = discover(tmp_path / "one.png")
    assert [str(s.rel) for s in found.sources] == ["one.png"]
    with pytest.warns(ChannelWarning, match="one.png: 1 channel replicated to 3"):
        scan = read_source(found.sources[0])  # channels in the model's order: gray is FLAIR, copied to all three
    assert scan.array.shape == (8, 9, 3) and scan.loaded_shape == (8, 9, 1)


def test_kaggle_slices_read_exactly_like_training(tmp_path):
    patient = _kaggle_patient(tmp_path / "TCGA_AB_1234_20000101", [1, 2])
    rgb = np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(patient / f"{patient.name}_2.tif"), rgb)
    scan = read_source(discover(tmp_path).sources[0])
    for k, i in enumerate((1, 2)):
        assert np.array_equal(scan.array[k], read_training_slice(patient / f"{patient.name}_{i}.tif"))
