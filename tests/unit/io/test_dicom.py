"""DICOM studies: series by geometry in any orientation, series rules, refusals, and the SEG read back."""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_helpers import Study, write_series
from untrained import write_untrained_checkpoint

from mri_seg.io import dicom
from mri_seg.io.dicom import DicomNote, DicomWarning, study_name
from mri_seg.io.options import ReadOptions
from mri_seg.io.orientation import axcodes_affine
from mri_seg.io.registry import discover, read_source
from mri_seg.io.scan import ScanError
from mri_seg.pipelines.infer import main as infer


def rotation(ax: float, az: float) -> np.ndarray:
    a, b = np.radians(ax), np.radians(az)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = rz @ rx
    return out


ZOOMS = (0.9, 1.1, 3.0)
ORIENTATIONS = {
    "axial": axcodes_affine(("R", "A", "S"), ZOOMS, (10.0, -20.0, 5.0)),
    "sagittal": axcodes_affine(("P", "I", "L"), ZOOMS, (-30.0, 40.0, 60.0)),
    "coronal": axcodes_affine(("L", "I", "A"), ZOOMS, (30.0, -10.0, 50.0)),
    "oblique": rotation(20.0, 10.0) @ axcodes_affine(("R", "A", "S"), ZOOMS, (5.0, 5.0, -5.0)),
}


def volume(seed: int, shape=(26, 22, 6), slope: float = 2.0, intercept: float = -10.0) -> np.ndarray:
    """Real values ``slope * integer + intercept`` with a zero background (as a skull-stripped MR)."""
    rng = np.random.default_rng(seed)
    vol = rng.integers(1, 400, shape).astype(np.float32) * slope + intercept
    vol[:3] = 0.0
    return vol


def canonical(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def run(ckpt: Path, inp: Path, out: Path, *extra: str) -> pd.DataFrame:
    infer(["--checkpoint", str(ckpt), "--input", str(inp), "--output", str(out), "--device", "cpu", "--no-progress",
           "--threshold", "0.5", *extra])  # fmt: skip
    return pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).set_index("path")


# ----------------------------------------------------------------------------- the same voxels as NIfTI


def test_every_orientation_gives_exactly_the_nifti_mask_and_the_seg_reads_back(tmp_path, ckpt):
    dcm, nii = tmp_path / "dicom", tmp_path / "nifti"
    nii.mkdir()
    names = {}
    for i, (kind, affine) in enumerate({**ORIENTATIONS, "enhanced": ORIENTATIONS["oblique"]}.items()):
        vol = volume(i)
        study = Study()
        write_series(dcm / f"d{i}", vol, affine, study, 3, "AX T2 FLAIR", slope=2.0, intercept=-10.0, seed=i,
                     enhanced=kind == "enhanced")  # fmt: skip
        nib.save(nib.Nifti1Image(vol, affine), str(nii / f"{kind}.nii.gz"))
        names[kind] = study_name(study.study_uid)
    dt, nt = run(ckpt, dcm, tmp_path / "out_d"), run(ckpt, nii, tmp_path / "out_n")
    assert set(dt["status"]) == {"ok"} and set(nt["status"]) == {"ok"}
    for kind, name in names.items():
        got = canonical(tmp_path / "out_d" / f"{name}_mask.nii.gz")
        want = canonical(tmp_path / "out_n" / f"{kind}_mask.nii.gz")
        assert got.shape == want.shape and 0 < want.sum() < want.size
        assert np.array_equal(got, want), kind  # equal, not approximately equal
        assert dt.loc[name, "tumour_pixels"] == nt.loc[f"{kind}.nii.gz", "tumour_pixels"]
        assert dt.loc[name, "series"] == "flair=series 3 'AX T2 FLAIR'"
        _seg_equals_nifti(tmp_path / "out_d" / f"{name}_seg.dcm", tmp_path / "out_d" / f"{name}_mask.nii.gz",
                          sorted((dcm / f"d{list(names).index(kind)}").iterdir()))  # fmt: skip


def _seg_equals_nifti(seg_path: Path, mask_path: Path, sources: list[Path]) -> None:
    """Each source frame's SEG frame is the NIfTI mask's plane at that frame's position."""
    seg = hd.seg.segread(str(seg_path))
    assert seg.SegmentSequence[0].SegmentLabel == "Tumor"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    image = nib.load(str(mask_path))
    mask = np.asanyarray(image.dataobj)
    inverse = np.linalg.inv(image.affine)
    planes = []
    for src in sources:
        ds = pydicom.dcmread(str(src))
        if "PerFrameFunctionalGroupsSequence" in ds:
            positions = [g.PlanePositionSequence[0].ImagePositionPatient for g in ds.PerFrameFunctionalGroupsSequence]
            frames = seg.get_pixels_by_source_frame(ds.SOPInstanceUID, list(range(1, len(positions) + 1)),
                                                    segment_numbers=[1])[..., 0]  # fmt: skip
        else:
            positions = [ds.ImagePositionPatient]
            frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[1])[..., 0]
        for pos, frame in zip(positions, frames):
            ras = np.array([-float(pos[0]), -float(pos[1]), float(pos[2]), 1.0])
            k = int(round((inverse @ ras)[2]))
            assert np.array_equal(frame.astype(bool), mask[:, :, k].T.astype(bool))
            planes.append(k)
    assert sorted(planes) == list(range(mask.shape[2]))  # every plane, once (empty frames kept)


# ----------------------------------------------------------------------------- reading and refusals


def read(inp: Path, **dicom_settings) -> tuple[object, list[warnings.WarningMessage]]:
    (source,) = [s for s in discover(inp).sources if s.format == "dicom"]
    options = ReadOptions()
    if dicom_settings:
        options = ReadOptions(dicom=dicom.DicomSettings(**{**vars(options.dicom), **dicom_settings}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = read_source(source, options)
    return scan, caught


def test_discovery_by_preamble_not_extension(tmp_path):
    study = Study()
    paths = write_series(tmp_path / "s", volume(0), ORIENTATIONS["axial"], study, 1, "FLAIR")
    paths[0].rename(paths[0].with_name("looks_like.txt"))
    (tmp_path / "s" / "notes.bin").write_bytes(b"x" * 200)
    found = discover(tmp_path)
    (source,) = found.sources
    assert source.format == "dicom" and str(source.rel) == study_name(study.study_uid) and len(source.members) == 6
    assert tmp_path / "s" / "notes.bin" in found.skipped


def test_slices_sorted_by_position_not_instance_number_or_name(tmp_path):
    vol = volume(1)
    write_series(tmp_path / "s", vol, ORIENTATIONS["axial"], Study(), 1, "FLAIR", slope=2.0, intercept=-10.0, seed=5)
    scan, _ = read(tmp_path)
    assert scan.array.dtype == np.float32
    # axial RAS stored: the training layout is slices inferior->superior, rows A->P, columns R->L
    want = np.flip(np.flip(vol.transpose(2, 1, 0), axis=1), axis=2)
    assert np.array_equal(scan.array[..., 0], want)


def test_unscaled_16_bit_keeps_its_dtype(tmp_path):
    vol = np.random.default_rng(0).integers(0, 1000, (20, 18, 4)).astype(np.uint16)
    write_series(tmp_path / "s", vol, ORIENTATIONS["axial"], Study(), 1, "FLAIR")
    scan, _ = read(tmp_path)
    assert scan.array.dtype == np.uint16


def test_three_series_chosen_by_rules_with_reasons(tmp_path):
    study, aff = Study(), ORIENTATIONS["axial"]
    write_series(tmp_path / "a", volume(1), aff, study, 2, "AX T1 PRE")
    write_series(tmp_path / "b", volume(2), aff, study, 4, "unnamed", extra={"InversionTime": 2500})
    write_series(tmp_path / "c", volume(3), aff, study, 6, "AX T1 +C")
    write_series(tmp_path / "d", volume(4), aff, study, 8, "T2 TSE")
    scan, caught = read(tmp_path)
    assert scan.channels == ("flair", "pre", "post")
    assert scan.geometry["columns"]["series"] == "flair=series 4 'unnamed'; pre=series 2 'AX T1 PRE'; post=series 6 'AX T1 +C'"
    reason = scan.geometry["columns"]["series_reason"]
    assert "flair: InversionTime 2500 ms >= 1500 ms" in reason and "post: SeriesDescription 'AX T1 +C'" in reason
    assert not [w for w in caught if issubclass(w.category, DicomWarning)]


def test_two_flair_candidates_tie_break_and_warning(tmp_path):
    study, aff = Study(), ORIENTATIONS["axial"]
    write_series(tmp_path / "a", volume(1), aff, study, 2, "FLAIR")
    write_series(tmp_path / "b", volume(2, shape=(26, 22, 8)), aff, study, 3, "FLAIR repeat")
    scan, caught = read(tmp_path)
    assert scan.geometry["columns"]["series"] == "flair=series 3 'FLAIR repeat'"
    assert any("2 candidate series for flair" in str(w.message) for w in caught)
    scan, _ = read(tmp_path, tie_break="latest_series")
    assert scan.geometry["columns"]["series"] == "flair=series 3 'FLAIR repeat'"


def test_no_flair_is_an_error_naming_the_series(tmp_path):
    write_series(tmp_path / "a", volume(1), ORIENTATIONS["axial"], Study(), 2, "AX T1")
    with pytest.raises(ScanError, match=r"no FLAIR series among 1 series \(series 2 'AX T1': SeriesDescription"):
        read(tmp_path)


def test_other_grid_is_not_used_and_flair_substitutes(tmp_path):
    study = Study()
    write_series(tmp_path / "a", volume(1), ORIENTATIONS["axial"], study, 2, "FLAIR")
    write_series(tmp_path / "b", volume(2), ORIENTATIONS["sagittal"], study, 3, "T1 post contrast")
    scan, caught = read(tmp_path)
    assert scan.channels == ("flair",)
    assert any("another voxel grid" in str(w.message) for w in caught)


def test_localizer_skipped_mixed_orientation_refused_non_mr_refused(tmp_path):
    study, aff = Study(), ORIENTATIONS["axial"]
    write_series(tmp_path / "f", volume(1), aff, study, 5, "FLAIR")
    one_series(
        write_series(tmp_path / "l", volume(2, shape=(26, 22, 1)), ORIENTATIONS["sagittal"], study, 1, "3-plane loc")
        + write_series(tmp_path / "l", volume(2, shape=(26, 22, 1)), aff, study, 1, "3-plane loc", seed=3)
    )
    one_series(
        write_series(tmp_path / "m", volume(3, shape=(26, 22, 1)), aff, study, 7, "DWI")
        + write_series(tmp_path / "m2", volume(3, shape=(26, 22, 1)), ORIENTATIONS["coronal"], study, 7, "DWI")
    )
    write_series(tmp_path / "c", volume(4), aff, study, 9, "CT head", modality="CT")
    scan, caught = read(tmp_path)
    notes = [str(w.message) for w in caught if issubclass(w.category, DicomNote)]
    refusals = [str(w.message) for w in caught if issubclass(w.category, DicomWarning)]
    assert notes == ["series 1 '3-plane loc': skipped: a localizer"]
    assert "series 7 'DWI': refused: mixed orientations within the series (2 orientations in 2 frames)" in refusals
    assert "series 9 'CT head': refused: modality CT, not MR" in refusals
    assert scan.channels == ("flair",)


def one_series(paths: list[Path]) -> None:
    """Give every file the first one's SeriesInstanceUID."""
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    for p in paths[1:]:
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = uid
        ds.save_as(p)


def test_uneven_gap_is_a_warning_with_the_gap(tmp_path):
    paths = write_series(tmp_path / "s", volume(1), ORIENTATIONS["axial"], Study(), 1, "FLAIR")
    for p in paths:  # drop the slice at z = 5 + 2 * 3 mm: a missing slice
        if abs(float(pydicom.dcmread(p).ImagePositionPatient[2]) - 11.0) < 1e-3:
            p.unlink()
    scan, caught = read(tmp_path)
    gap = [str(w.message) for w in caught if "uneven slice gaps" in str(w.message)]
    assert len(gap) == 1 and "6 mm between slices 1 and 2 (median 3 mm" in gap[0]
    assert scan.array.shape[0] == 5


def test_missing_decoder_names_the_extra(tmp_path, monkeypatch):
    from pydicom.uid import RLELossless

    study = Study()
    write_series(tmp_path / "s", volume(1).clip(0), ORIENTATIONS["axial"], study, 1, "FLAIR", slope=1.0,
                 intercept=0.0, stored_dtype=np.uint16, transfer_syntax=RLELossless)  # fmt: skip

    class Missing:
        is_available = False

    import pydicom.pixels

    real = pydicom.pixels.get_decoder
    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Missing() if uid == RLELossless else real(uid))
    with pytest.raises(ScanError, match="no FLAIR series") as err:
        read(tmp_path)
    assert "FLAIR" in str(err.value)
    _, caught = _read_caught(tmp_path)
    assert any("needs a decoder that is not installed (pip install 'mri_seg[dicom-codecs]')" in m for m in caught)


def _read_caught(inp: Path) -> tuple[None, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ScanError):
            read_source([s for s in discover(inp).sources][0], ReadOptions())
    return None, [str(w.message) for w in caught]


def test_dicomdir_is_skipped(tmp_path):
    from pydicom.data import get_testdata_file

    src = Path(get_testdata_file("DICOMDIR", download=False))
    (tmp_path / "DICOMDIR").write_bytes(src.read_bytes())
    found = discover(tmp_path)
    assert found.sources == [] and found.skipped == [tmp_path / "DICOMDIR"]


@pytest.mark.parametrize("rules, why", [
    ("['flair x']", "has no ':' between the sequence and the expression"),
    ("['flair: (']", "missing ), unterminated subpattern"),
    ("['bogus: x']", "unknown sequence name 'bogus'"),
])  # fmt: skip
def test_bad_series_rules_are_refused_with_one_line(rules, why):
    from mri_seg.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="config key 'infer.dicom.series_rules'") as err:
        load_config(overrides=[f"infer.dicom.series_rules={rules}"])
    assert why in str(err.value) and "\n" not in str(err.value)
