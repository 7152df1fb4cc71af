"""Real DICOM files no one here wrote (pydicom's bundled test files, the pydicom-data package's
enhanced MR): each becomes a mask or a clear row, never a traceback.

Only files available offline are used (``get_testdata_file(..., download=False)``): the files
inside the pydicom wheel and the ``pydicom-data`` package (``emri_small*``, ``MR2_*``, the
Siemens MR with overlays); a file that is not installed is skipped, named.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from untrained import write_untrained_checkpoint

from mri_seg.config import load_config
from mri_seg.inference.folder import run_folder
from mri_seg.inference.plan import plan_folder
from mri_seg.io import dicom
from mri_seg.io.options import ReadOptions
from mri_seg.io.scan import ScanError

pydicom_data = pytest.importorskip("pydicom.data")

MR_SMALL_LOSSLESS = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_jp2klossless.dcm",
                     "MR_small_implicit.dcm", "MR_small_expb.dcm", "MR_small_padded.dcm",
                     "MR_small_jpeg_ls_lossless.dcm"]  # fmt: skip
ENHANCED = ["emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm",
            "emri_small_jpeg_ls_lossless.dcm"]  # fmt: skip
OTHER_MR = ["MR-SIEMENS-DICOM-WithOverlays.dcm"]
MR2 = ["MR2_J2KI.dcm", "MR2_J2KR.dcm", "MR2_UNCI.dcm", "MR2_UNCR.dcm"]  # one 1024 x 1024 slice: read, not segmented


def bundled(name: str) -> Path:
    path = pydicom_data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed offline (pip install pydicom-data)")
    return Path(path)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from mri_seg.inference.predictor import Predictor

    ckpt = write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return Predictor.from_checkpoints([ckpt], device="cpu")


def infer_one(predictor, inp: Path, out: Path, *overrides: str) -> list[dict]:
    cfg = load_config(overrides=list(overrides)).infer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_folder(predictor, plan_folder(inp, out), cfg, progress=False)


@pytest.mark.parametrize("name", MR_SMALL_LOSSLESS + ["MR_truncated.dcm"] + ENHANCED + OTHER_MR)
def test_each_file_is_a_mask_or_a_clear_row(tmp_path, predictor, name):
    src = bundled(name)
    (tmp_path / "in").mkdir()
    shutil.copy(src, tmp_path / "in" / "IM0001")  # no extension: found by its preamble
    rows = infer_one(predictor, tmp_path / "in", tmp_path / "out", "infer.dicom.series_rules=['flair: lesion']")
    (row,) = rows
    assert row["format"] == "dicom" and str(row["path"]).startswith("study-")
    if name.startswith("MR-SIEMENS"):  # named FLAIR by the rule above: segmented
        assert row["status"] == "ok", row["message"]
        assert (tmp_path / "out" / f"{row['path']}_seg.dcm").is_file()
        assert (tmp_path / "out" / f"{row['path']}_mask.nii.gz").is_file()
    elif name.startswith("emri_small"):  # no per-frame functional groups: no frame positions
        assert row["status"] == "error"
        assert "without per-frame functional groups: its frames have no positions" in row["warnings"]
        assert "no FLAIR series among 1 series (none usable)" in row["message"]
    else:  # MR_small: a T2 (TR 4000, TE 240) without series description: no FLAIR
        assert row["status"] == "error" and "no FLAIR series among 1 series (series 1: no rule matched)" in row["message"]


def test_mr_small_lossless_variants_decode_to_the_same_volume(tmp_path):
    volumes = {}
    for name in MR_SMALL_LOSSLESS:
        (series,) = dicom.study_series([bundled(name)], name, ReadOptions().dicom)
        assert series.usable, series.problem
        volumes[name] = dicom.load_volume(series)
    reference = volumes["MR_small.dcm"]
    assert reference.shape == (64, 64, 1)
    for name, vol in volumes.items():
        assert np.array_equal(vol, reference), name


def test_mr2_jpeg2000_reversible_equals_uncompressed():
    volumes = {}
    for name in MR2:
        (series,) = dicom.study_series([bundled(name)], name, ReadOptions().dicom)
        assert series.usable, series.problem
        volumes[name] = dicom.load_volume(series)
        assert volumes[name].shape == (1024, 1024, 1)
    assert np.array_equal(volumes["MR2_J2KR.dcm"], volumes["MR2_UNCR.dcm"])


def test_truncated_pixel_data_is_one_line(tmp_path):
    (series,) = dicom.study_series([bundled("MR_truncated.dcm")], "x", ReadOptions().dicom)
    with pytest.raises(ScanError, match=r"^series 1: pixel data cannot be decoded"):
        dicom.load_volume(series)


def test_dicomdir_tree_localizers_and_other_modalities(tmp_path, predictor):
    tree = bundled("DICOMDIR").parent
    shutil.copytree(tree, tmp_path / "in")
    rows = infer_one(predictor, tmp_path / "in", tmp_path / "out")
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == 7 and {r["status"] for r in rows} == {"error"}  # CR, CT, localizers, angio projections
    text = " ".join(f"{r['message']} {r['warnings']}" for r in rows)
    assert "modality CT, not MR" in text and "modality CR, not MR" in text
    assert "series 2 'T/S/C RF FAST PILOT': skipped: a localizer" in text  # the 3-plane localizer
    assert "series 700 'ANGIO Projected from C': refused: mixed orientations within the series" in text
    assert all(p.startswith("study-") for p in by_path)
    assert not any("Traceback" in r["message"] for r in rows)
