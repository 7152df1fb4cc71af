"""Done-when of issue 20: a mixed folder of DICOM studies in, a DICOM SEG, a NIfTI mask and report
rows per study out; masks equal to the NIfTI masks of the same voxels; no identifying string
outside the SEG (files, names, table, report, stdout, stderr)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_helpers import Study, write_series
from pydicom.uid import JPEG2000Lossless
from untrained import write_untrained_checkpoint

from mri_seg.io.dicom import study_name
from mri_seg.io.orientation import axcodes_affine
from mri_seg.pipelines.infer import main as infer

REPO = Path(__file__).resolve().parents[2]
SHAPE = (40, 36, 5)  # >= 32 pixels a side: JPEG 2000 encodes 6 resolution levels


def volume(seed: int, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.integers(1, 900, SHAPE).astype(np.float32) * slope + intercept
    vol[:, :4] = 0.0
    return vol


def identity(tag: str) -> Study:
    return Study(patient_name=f"Quixotic^Zebediah{tag}", patient_id=f"PID-8812-Q{tag}", birth_date=f"1933051{tag}",
                 accession=f"ACC-77-QZ{tag}", study_id=f"SID-QZ-{tag}", institution=f"Zebediah Memorial {tag}",
                 physician=f"Doctor^Xerxes{tag}")  # fmt: skip


def make_inputs(root: Path) -> tuple[dict[str, Study], list[str]]:
    """Three studies (one without FLAIR), localizers, a CT series, one JPEG 2000 series; and the NIfTI twins."""
    dcm, nii = root / "dicom", root / "nifti"
    nii.mkdir(parents=True)
    axial = axcodes_affine(("R", "A", "S"), (0.9, 0.9, 3.0), (10.0, -20.0, 5.0))
    oblique = np.eye(4)
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    oblique[1:3, 1:3] = [[c, -s], [s, c]]
    oblique = oblique @ axcodes_affine(("L", "P", "S"), (1.0, 1.0, 4.0), (30.0, 10.0, -5.0))
    studies = {"a": identity("1"), "b": identity("2"), "c": identity("3")}
    uids: list[str] = []
    a, b = studies["a"], studies["b"]
    seqs_a = {"flair": volume(1, 2.0, -10.0), "t1": volume(2), "t1ce": volume(3)}
    uids += _uids(write_series(dcm / "export1" / "x1", seqs_a["flair"], axial, a, 4, "AX T2 FLAIR", slope=2.0,
                               intercept=-10.0, seed=1))  # fmt: skip
    uids += _uids(write_series(dcm / "export1" / "x1", seqs_a["t1"], axial, a, 2, "AX T1 SE", seed=2))
    uids += _uids(write_series(dcm / "export1" / "x2", seqs_a["t1ce"], axial, a, 7, "AX T1 +C", seed=3))
    loc = write_series(dcm / "export1" / "x3", volume(4)[:, :, :1], axial, a, 1, "Localizer", seed=4)
    uids += _uids(loc)
    seqs_b = {"flair": volume(5), "t1ce": volume(6)}
    uids += _uids(write_series(dcm / "export2", seqs_b["flair"], oblique, b, 3, "t2_tirm_tra_dark-fluid", seed=5))
    uids += _uids(write_series(dcm / "export2", seqs_b["t1ce"], oblique, b, 9, "T1 post gado", seed=6,
                               transfer_syntax=JPEG2000Lossless))  # fmt: skip
    uids += _uids(write_series(dcm / "export2", volume(7), oblique, b, 11, "CT head", modality="CT", seed=7))
    uids += _uids(write_series(dcm / "export3", volume(8), axial, studies["c"], 2, "AX T1", seed=8))
    for case, seqs, affine in (("a", seqs_a, axial), ("b", seqs_b, oblique)):
        for seq, data in seqs.items():
            nib.save(nib.Nifti1Image(data, affine), str(nii / f"case{case}_{seq}.nii.gz"))
    return studies, uids


def _uids(paths: list[Path]) -> list[str]:
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return [ds.SeriesInstanceUID, *(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths)]


def _content(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def canonical(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def test_mixed_dicom_folder_end_to_end_private_and_equal_to_nifti(tmp_path, ckpt):
    studies, uids = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run([sys.executable, "-m", "mri_seg.pipelines.infer", "--checkpoint", str(ckpt), "--input",
                           str(tmp_path / "in" / "dicom"), "--output", str(out), "--device", "cpu", "--threshold", "0.5",
                           "--save-probabilities"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # study c has no FLAIR: one error row, the rest ok
    assert "Traceback" not in proc.stderr
    table = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).set_index("path")
    name = {k: study_name(s.study_uid) for k, s in studies.items()}
    assert set(table.index) == set(name.values())
    a, b, c = (table.loc[name[k]] for k in "abc")
    assert a["status"] == "ok" and b["status"] == "ok" and c["status"] == "error"
    assert "no FLAIR series among 1 series (series 2 'AX T1': SeriesDescription 'AX T1' matches the pre rule)" in c["message"]
    assert a["series"] == "flair=series 4 'AX T2 FLAIR'; pre=series 2 'AX T1 SE'; post=series 7 'AX T1 +C'"
    assert "series 1 'Localizer': skipped: a localizer" in a["message"]
    assert b["series"] == "flair=series 3 't2_tirm_tra_dark-fluid'; post=series 9 'T1 post gado'"
    assert "series 11 'CT head': refused: modality CT, not MR" in b["warnings"]
    assert "no pre-contrast input; FLAIR used in its place" in b["warnings"]

    # the same voxels as a BraTS case of NIfTI files: the same mask, exactly
    assert infer(["--checkpoint", str(ckpt), "--input", str(tmp_path / "in" / "nifti"), "--output",
                  str(tmp_path / "out_nifti"), "--device", "cpu", "--threshold", "0.5", "--no-progress"]) == 0  # fmt: skip
    for key in "ab":
        got = canonical(out / f"{name[key]}_mask.nii.gz")
        want = canonical(tmp_path / "out_nifti" / f"case{key}_mask.nii.gz")
        assert 0 < want.sum() < want.size and np.array_equal(got, want), key
        seg = hd.seg.segread(str(out / f"{name[key]}_seg.dcm"))
        assert seg.NumberOfFrames == SHAPE[2]  # one frame per FLAIR slice, empty ones kept
        assert int(np.count_nonzero(seg.pixel_array)) == int(got.sum())
        assert str(seg.PatientName) == str(studies[key].patient_name)  # the SEG copies the patient module
        prob = nib.load(str(out / f"{name[key]}_prob.nii.gz"))
        assert prob.shape == SHAPE and np.allclose(prob.affine, nib.load(str(out / f"{name[key]}_mask.nii.gz")).affine)

    # privacy: no identifying string anywhere but the SEG
    secrets = [s for study in studies.values() for s in study.identifying()] + uids
    streams = proc.stdout + proc.stderr
    for secret in secrets:
        assert secret not in streams
    for path in out.rglob("*"):
        for secret in secrets:
            assert secret not in str(path.relative_to(out)), path
        if path.is_file() and not path.name.endswith("_seg.dcm"):
            content = _content(path)
            for secret in secrets:
                assert secret.encode() not in content, (path, secret)
    assert (out / "report.html").is_file() and name["a"] in (out / "report.html").read_text()
