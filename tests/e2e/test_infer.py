"""The infer stage end to end: every input kind, outputs in the input's geometry, predictions.csv,
errors that do not stop the batch, re-runs, and the rules that keep inputs untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import InferConfig
from mri_seg.inference.predictor import Predictor
from mri_seg.io.orientation import STACKED_SLICES_AXCODES, axcodes_affine
from mri_seg.metrics import dice_score
from mri_seg.pipelines._cli import StageError, run_main
from mri_seg.pipelines.infer import main
from mri_seg.postprocess import postprocess
from mri_seg.training.checkpoint import file_sha256

PATIENT = "TCGA_AB_1234_20000101"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _affine() -> np.ndarray:
    t = np.deg2rad(-15)
    a = np.eye(4)
    a[:3, :3] = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]]) @ np.diag([0.9, 1.1, 3.0])
    a[:3, 3] = [10.0, -20.0, 5.5]
    return a


def _blob(h: int, w: int, c: int, seed: int) -> np.ndarray:
    """A bright disc on a textured head-like background (so normalisation has work to do)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 80, (h, w, c)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (min(h, w) // 6) ** 2] = 220
    return img


def make_inputs(root: Path, corrupt: bool = True) -> Path:
    """One of each input kind under ``root`` (small, except the 1000x700 slice)."""
    patient = root / "patients" / PATIENT
    patient.mkdir(parents=True)
    for i in (1, 2, 10):
        cv2.imwrite(str(patient / f"{PATIENT}_{i}.tif"), _blob(64, 64, 3, i))
        mask = np.zeros((64, 64), np.uint8)
        mask[20:40, 10:30] = 255 if i != 1 else 0
        cv2.imwrite(str(patient / f"{PATIENT}_{i}_mask.tif"), mask)
    (root / "png").mkdir()
    cv2.imwrite(str(root / "png" / "gray.png"), _blob(300, 257, 1, 4)[:, :, 0])
    cv2.imwrite(str(root / "png" / "gray_mask.png"), (_blob(300, 257, 1, 4)[:, :, 0] > 200).astype(np.uint8) * 255)
    cv2.imwrite(str(root / "png" / "big.png"), _blob(1000, 700, 3, 5))
    cv2.imwrite(str(root / "x.tif"), _blob(50, 60, 3, 6))
    cv2.imwrite(str(root / "photo.jpg"), _blob(40, 48, 3, 7))
    (root / "vol").mkdir()
    brain = nib.Nifti1Image(_blob(20, 17, 6, 8).astype(np.float32) * 3.5, _affine())
    brain.header.set_xyzt_units("mm")
    nib.save(brain, str(root / "vol" / "brain.nii.gz"))
    nib.save(nib.Nifti1Image(_blob(16, 16, 12, 9).reshape(16, 16, 4, 3), np.eye(4)), str(root / "vol" / "seq.nii"))
    (root / "notes.txt").write_text("not a scan\n")
    if corrupt:
        (root / "bad").mkdir()
        (root / "bad" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        tifffile.imwrite(root / "bad" / "two_channels.tif", np.zeros((8, 8, 2), np.uint8),
                         photometric="minisblack", planarconfig="contig")
    return root


def tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", tiny_config(scale=0.5))


def _run(ckpt: Path, inp: Path, out: Path, *extra: str) -> int:
    return main(["--checkpoint", str(ckpt), "--input", str(inp), "--output", str(out), "--device", "cpu",
                 "--no-progress", *extra])


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).set_index("path")


# ----------------------------------------------------------------------------- end to end


def test_every_input_kind_end_to_end(tmp_path, ckpt, capsys):
    inp, out = make_inputs(tmp_path / "in"), tmp_path / "out"
    before = tree_hash(inp)
    assert _run(ckpt, inp, out, "--threshold", "0.5") == 1  # the corrupt files fail, the rest go on
    assert tree_hash(inp) == before  # inputs untouched

    raw = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(raw.columns) == ["path", "format", "shape", "tumour_pixels", "tumour_volume_mm3",
                                 "slices_with_tumour", "seconds", "status", "message", "warnings", "sequences",
                                 "uncertainty", "review_flag", "checkpoints", "checkpoint_sha256",
                                 "settings_hash", "input_stamp", "series", "series_reason"]
    assert set(raw["checkpoint_sha256"]) == {hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    assert list(raw["path"]) == sorted(raw["path"])
    assert set(raw["checkpoints"]) == {str(ckpt)} and set(raw["checkpoint_sha256"]) == {file_sha256(ckpt)}
    t = raw.set_index("path")
    assert set(t.index) == {f"patients/{PATIENT}", "png/gray.png", "png/big.png", "x.tif", "photo.jpg",
                            "vol/brain.nii.gz", "vol/seq.nii", "bad/corrupt.png", "bad/two_channels.tif"}
    assert t.loc["bad/corrupt.png", "status"] == "error" and "not a readable image" in t.loc["bad/corrupt.png", "message"]
    assert t.loc["bad/two_channels.tif", "status"] == "error" and "2 channels" in t.loc["bad/two_channels.tif", "message"]
    ok = t[t.status == "ok"]
    assert len(ok) == 7
    assert dict(ok["format"]) == {f"patients/{PATIENT}": "kaggle", "png/gray.png": "png", "png/big.png": "png",
                                  "x.tif": "tiff", "photo.jpg": "jpeg", "vol/brain.nii.gz": "nifti",
                                  "vol/seq.nii": "nifti"}
    assert t.loc[f"patients/{PATIENT}", "shape"] == "3x64x64x3"
    # reoriented from the affine (axis codes RAS) to axial slices S x P x L, 1 sequence
    assert t.loc["vol/brain.nii.gz", "shape"] == "6x17x20x1"
    assert t.loc[f"patients/{PATIENT}", "sequences"] == "post=blue; flair=green; pre=red"
    assert t.loc["vol/seq.nii", "sequences"] == "post=volume[..., 0]; flair=volume[..., 1]; pre=volume[..., 2]"
    assert t.loc["png/gray.png", "sequences"] == ("post=flair (missing: substituted); flair=gray; "
                                                  "pre=flair (missing: substituted)")
    assert "1 channel replicated" in t.loc["png/gray.png", "warnings"]  # warnings have their own column
    assert t.loc["png/gray.png", "message"] == ""
    err = capsys.readouterr().err
    assert "corrupt.png" in err and "1 channel replicated" in err

    # masks: same format, size and geometry as the inputs
    big = cv2.imread(str(out / "png" / "big_mask.png"), cv2.IMREAD_UNCHANGED)
    assert big.shape == (1000, 700) and set(np.unique(big)) <= {0, 255}
    assert cv2.imread(str(out / "png" / "gray_mask.png"), cv2.IMREAD_UNCHANGED).shape == (300, 257)
    assert cv2.imread(str(out / "x_mask.tif"), cv2.IMREAD_UNCHANGED).shape == (50, 60)
    assert cv2.imread(str(out / "photo_mask.png"), cv2.IMREAD_UNCHANGED).shape == (40, 48)
    for i in (1, 2, 10):
        assert cv2.imread(str(out / "patients" / PATIENT / f"{PATIENT}_{i}_mask.tif"), cv2.IMREAD_UNCHANGED).shape == (64, 64)
    brain_in, brain_out = nib.load(str(inp / "vol" / "brain.nii.gz")), nib.load(str(out / "vol" / "brain_mask.nii.gz"))
    assert brain_out.shape == brain_in.shape and brain_out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(brain_out.affine, brain_in.affine)
    seq_out = nib.load(str(out / "vol" / "seq_mask.nii"))
    assert seq_out.shape == (16, 16, 4)

    # overlays for every ok scan (volumes: one montage)
    for overlay in ["png/big_overlay.png", "png/gray_overlay.png", "x_overlay.png", "photo_overlay.png",
                    "vol/brain_overlay.png", "vol/seq_overlay.png", f"patients/{PATIENT}/{PATIENT}_overlay.png"]:
        picture = cv2.imread(str(out / overlay))
        assert picture is not None and picture.ndim == 3, overlay

    # table values agree with the files
    brain_mask = np.asarray(brain_out.dataobj) > 0
    assert int(t.loc["vol/brain.nii.gz", "tumour_pixels"]) == int(brain_mask.sum())
    assert float(t.loc["vol/brain.nii.gz", "tumour_volume_mm3"]) == pytest.approx(brain_mask.sum() * 0.9 * 1.1 * 3.0, rel=1e-4)
    assert int(t.loc["vol/brain.nii.gz", "slices_with_tumour"]) == int(brain_mask.any(axis=(0, 1)).sum())
    assert t.loc["png/big.png", "tumour_volume_mm3"] == ""
    assert int(t.loc["png/big.png", "tumour_pixels"]) == int((big > 0).sum())

    # the written mask is the predictor's probability map, post-processed
    predictor = Predictor.from_checkpoint(ckpt, device="cpu", infer_cfg=InferConfig())
    expected = postprocess(predictor.predict_proba(cv2.imread(str(inp / "x.tif"), cv2.IMREAD_UNCHANGED)), 0.5, 0)
    assert np.array_equal(cv2.imread(str(out / "x_mask.tif"), cv2.IMREAD_UNCHANGED) > 0, expected)

    resolved = yaml.safe_load((out / "config_infer.yaml").read_text())
    assert resolved["data"]["scale"] == 0.5 and resolved["infer"]["postprocess"]["threshold"] == 0.5
    assert not list(out.glob(".predictions.part-*"))

    # review flag columns, and the report: a row per scan, error messages, links to existing pages
    assert ok["uncertainty"].astype(float).between(0, 1).all()
    assert set(ok["review_flag"]) <= {"True", "False"} and set(t[t.status == "error"]["uncertainty"]) == {""}
    check_inference_report(out, t)
    assert "report " + str(out / "report.html") in err


def check_inference_report(out: Path, table: pd.DataFrame) -> None:
    """report.html has one row per scan, error rows show their message, every link and picture exists."""
    from html.parser import HTMLParser

    class Refs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.refs, self.rows, self.viewer = [], 0, False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            self.refs += [a[k] for k in ("href", "src") if k in a]
            self.rows += tag == "tr"
            self.viewer |= a.get("id") == "viewer"

    index = Refs()
    text = (out / "report.html").read_text()
    index.feed(text)
    assert index.rows == len(table) + 1  # + header
    for path, row in table.iterrows():
        assert path in text
        if row["status"] == "error":
            assert row["message"].split(";")[0] in text.replace("&#x27;", "'")
    pages = sorted({r for r in index.refs if r.endswith(".html")})
    assert len(pages) == (table["status"] == "ok").sum()
    for ref in index.refs:
        assert (out / ref).is_file(), ref
    for ref in pages:
        page = Refs()
        page.feed((out / ref).read_text())
        assert page.viewer
        assert all(((out / ref).parent / r).is_file() for r in page.refs), ref


def test_rerun_skips_finished_scans_and_overwrite_recomputes(tmp_path, ckpt):
    inp, out = make_inputs(tmp_path / "in", corrupt=False), tmp_path / "out"
    assert _run(ckpt, inp, out) == 0
    first = _table(out)
    masks = sorted(out.rglob("*_mask.*"))
    inodes = {p: p.stat().st_ino for p in masks}

    assert _run(ckpt, inp, out) == 0  # nothing to do: previous rows kept, files untouched
    pd.testing.assert_frame_equal(_table(out), first)
    assert {p: p.stat().st_ino for p in masks} == inodes

    (out / "x_overlay.png").unlink()  # an unfinished scan is redone, only that one
    assert _run(ckpt, inp, out) == 0
    changed = {p for p in masks if p.stat().st_ino != inodes[p]}
    assert changed == {out / "x_mask.tif"}
    assert (out / "x_overlay.png").is_file()

    inodes = {p: p.stat().st_ino for p in masks}
    (out / "predictions.csv").unlink()  # outputs exist but no row says what made them: recomputed
    assert _run(ckpt, inp, out) == 0
    assert set(_table(out)["status"]) == {"ok"}
    assert all(p.stat().st_ino != inodes[p] for p in masks)

    inodes = {p: p.stat().st_ino for p in masks}
    assert _run(ckpt, inp, out, "--overwrite") == 0
    assert set(_table(out)["status"]) == {"ok"}
    assert all(p.stat().st_ino != inodes[p] for p in masks)


def _inodes(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_ino for p in sorted(out.rglob("*_mask.*"))}


def test_rerun_recomputes_when_checkpoint_settings_or_input_change(tmp_path, ckpt, capsys):
    inp, out = make_inputs(tmp_path / "in", corrupt=False), tmp_path / "out"
    assert _run(ckpt, inp, out) == 0
    first = _table(out)
    assert first["settings_hash"].nunique() == 1 and first["input_stamp"].nunique() == len(first)
    assert _run(ckpt, inp, out, "--tile-batch", "3") == 0  # batching never changes a mask: all kept
    assert "7 ok (7 unchanged since the last run, kept)" in capsys.readouterr().err
    pd.testing.assert_frame_equal(_table(out), first)

    # a mask-shaping setting changed: every scan recomputed, the new settings recorded
    before = _inodes(out)
    assert _run(ckpt, inp, out, "--threshold", "0.4") == 0
    assert "7 ok (0 unchanged" in capsys.readouterr().err
    second = _table(out)
    assert all(ino != before[p] for p, ino in _inodes(out).items())
    assert second["settings_hash"].nunique() == 1 and set(second["settings_hash"]) != set(first["settings_hash"])

    # another checkpoint (the retrained model): recomputed, and the table names its sha256
    retrained = write_untrained_checkpoint(tmp_path / "retrained.pt", tiny_config(scale=0.5), seed=1)
    before = _inodes(out)
    assert _run(retrained, inp, out, "--threshold", "0.4") == 0
    third = _table(out)
    assert set(third["checkpoint_sha256"]) == {hashlib.sha256(retrained.read_bytes()).hexdigest()}
    assert all(ino != before[p] for p, ino in _inodes(out).items())

    # one input edited (new modification time): only that scan is recomputed
    before = _inodes(out)
    stat = (inp / "x.tif").stat()
    os.utime(inp / "x.tif", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _run(retrained, inp, out, "--threshold", "0.4") == 0
    changed = {p for p, ino in _inodes(out).items() if ino != before[p]}
    assert changed == {out / "x_mask.tif"}
    assert _table(out).loc["x.tif", "input_stamp"] != third.loc["x.tif", "input_stamp"]


def test_with_truth_adds_dice_and_probabilities_are_saved(tmp_path, ckpt):
    inp, out = make_inputs(tmp_path / "in", corrupt=False), tmp_path / "out"
    assert _run(ckpt, inp, out, "--with-truth", "--save-probabilities", "--min-component", "5") == 0
    t = _table(out)
    assert "dice" in t.columns
    pred = np.stack([cv2.imread(str(out / "patients" / PATIENT / f"{PATIENT}_{i}_mask.tif"), 0) > 0 for i in (1, 2, 10)])
    truth = np.stack([cv2.imread(str(inp / "patients" / PATIENT / f"{PATIENT}_{i}_mask.tif"), 0) > 0 for i in (1, 2, 10)])
    assert float(t.loc[f"patients/{PATIENT}", "dice"]) == pytest.approx(dice_score(pred, truth), abs=1e-6)
    gray_pred = cv2.imread(str(out / "png" / "gray_mask.png"), 0) > 0
    gray_truth = cv2.imread(str(inp / "png" / "gray_mask.png"), 0) > 0
    assert float(t.loc["png/gray.png", "dice"]) == pytest.approx(dice_score(gray_pred, gray_truth), abs=1e-6)
    assert t.loc["x.tif", "dice"] == "" and "no reference mask" in t.loc["x.tif", "message"]
    assert "png/gray_mask.png" not in t.index  # reference masks are not scans
    prob = cv2.imread(str(out / "png" / "big_prob.png"), cv2.IMREAD_UNCHANGED)
    assert prob.dtype == np.uint16 and prob.shape == (1000, 700)
    assert cv2.imread(str(out / "photo_prob.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert (out / "patients" / PATIENT / f"{PATIENT}_10_prob.tif").is_file()
    brain_prob = nib.load(str(out / "vol" / "brain_prob.nii.gz"))
    assert brain_prob.get_data_dtype() == np.float32 and brain_prob.shape == (20, 17, 6)
    assert 0.0 <= brain_prob.get_fdata().min() and brain_prob.get_fdata().max() <= 1.0


# ----------------------------------------------------------------------------- inputs are never written


def test_output_equal_to_input_is_refused(tmp_path, ckpt):
    inp = make_inputs(tmp_path / "in", corrupt=False)
    before = tree_hash(inp)
    with pytest.raises(StageError, match="is the input folder"):
        _run(ckpt, inp, inp)
    assert tree_hash(inp) == before


def test_output_that_would_overwrite_an_input_file_is_refused(tmp_path, ckpt):
    # input = a Kaggle patient folder inside OUT: its masks would land on the reference masks
    root = make_inputs(tmp_path / "data", corrupt=False)
    before = tree_hash(root)
    with pytest.raises(StageError, match="would overwrite the input file"):
        _run(ckpt, root / "patients" / PATIENT, root / "patients")
    assert tree_hash(root) == before


def test_output_inside_input_is_allowed_and_never_read_as_input(tmp_path, ckpt):
    inp = make_inputs(tmp_path / "in", corrupt=False)
    before = tree_hash(inp)
    out = inp / "predictions"
    assert _run(ckpt, inp, out) == 0
    assert _run(ckpt, inp, out) == 0
    assert len(_table(out)) == 7  # the second run did not pick up the first run's PNG masks/overlays
    after = {k: v for k, v in tree_hash(inp).items() if not k.startswith("predictions")}
    assert after == before


def test_single_file_input(tmp_path, ckpt):
    inp = make_inputs(tmp_path / "in", corrupt=False)
    assert _run(ckpt, inp / "vol" / "brain.nii.gz", tmp_path / "out", "--set", "infer.nifti_axis=0") == 0
    t = _table(tmp_path / "out")
    assert list(t.index) == ["brain.nii.gz"] and t.loc["brain.nii.gz", "shape"] == "20x17x6x1"
    assert nib.load(str(tmp_path / "out" / "brain_mask.nii.gz")).shape == (20, 17, 6)


def test_bad_checkpoint_and_empty_input_exit_2(tmp_path, ckpt, capsys):
    make_inputs(tmp_path / "in", corrupt=False)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    (tmp_path / "empty").mkdir()
    for argv, text in [
        (["--checkpoint", str(tmp_path / "junk.pt"), "--input", str(tmp_path / "in")], "cannot use checkpoint"),
        (["--checkpoint", str(ckpt), "--input", str(tmp_path / "empty")], "no scans found"),
        (["--checkpoint", str(ckpt), "--input", str(tmp_path / "nope")], "input not found"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_main(main, [*argv, "--output", str(tmp_path / "o"), "--no-progress"])
        assert exit_info.value.code == 2
        assert text in capsys.readouterr().err


def test_command_line_exit_code_and_error_line(tmp_path, ckpt):
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "ok.png"), _blob(32, 40, 3, 1))
    (inp / "broken.tif").write_bytes(b"II*\x00 broken")
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "mri_seg.pipelines.infer", "--checkpoint", str(ckpt), "--input", str(inp),
         "--output", str(tmp_path / "out"), "--device", "cpu", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.tif" in errors[0]
    assert "1 ok (0 unchanged since the last run, kept), 1 failed" in proc.stderr
    assert _table(tmp_path / "out").loc["ok.png", "status"] == "ok"


def test_single_file_input_never_overwrites_its_neighbours(tmp_path, ckpt):
    root = make_inputs(tmp_path / "data", corrupt=False)
    before = tree_hash(root)
    one_slice = root / "patients" / PATIENT / f"{PATIENT}_2.tif"
    with pytest.raises(StageError, match="would overwrite the input file"):
        _run(ckpt, one_slice, root / "patients")  # its mask would land on the reference mask
    assert tree_hash(root) == before
    assert _run(ckpt, root / "png" / "gray.png", tmp_path / "out", "--with-truth") == 0
    assert _table(tmp_path / "out").loc["gray.png", "dice"] != ""  # the neighbouring gray_mask.png


# ----------------------------------------------------------------------------- overlays


def test_overlay_draws_the_contour_and_montage_picks_tumour_slices():
    from mri_seg.io.overlay import CONTOUR_BGR, make_overlay, montage_indices

    mask = np.zeros((12, 40, 40), bool)
    for k, area in {2: 4, 5: 30, 9: 12}.items():
        mask[k, 10 : 10 + area // 2, 10:12] = True
    assert montage_indices(mask, 2) == [5, 9]  # most tumour, shown in slice order
    assert montage_indices(mask) == [2, 5, 9]  # only slices with tumour
    assert montage_indices(np.zeros((12, 4, 4), bool), 4) == [0, 4, 7, 11]  # none: evenly spaced

    image = np.zeros((1, 300, 200, 3), np.uint8)
    image[0, :, :, 1] = 120
    single = np.zeros((1, 300, 200), bool)
    single[0, 100:150, 50:90] = True
    picture = make_overlay(image, single)
    red = np.all(picture == CONTOUR_BGR, axis=2)
    assert picture.shape == (300, 200, 3) and red.any()
    assert red[100, 50:90].any() and not red[0:90].any()  # on the mask's edge, nowhere far from it

    big = make_overlay(np.zeros((1, 3000, 1500, 3), np.uint8), np.zeros((1, 3000, 1500), bool))
    assert max(big.shape[:2]) == 1024  # overlays are for looking at; the mask keeps full size
    montage = make_overlay(np.zeros((12, 40, 40, 1), np.uint8), mask)
    assert montage.shape == (40, 3 * 40, 3)


def test_nifti_stacked_from_kaggle_slices_segments_like_the_slices(tmp_path, ckpt):
    inp = make_inputs(tmp_path / "in", corrupt=False)
    slices = [cv2.imread(str(inp / "patients" / PATIENT / f"{PATIENT}_{i}.tif"), cv2.IMREAD_UNCHANGED) for i in (1, 2, 10)]
    affine = axcodes_affine(STACKED_SLICES_AXCODES, (0.5, 0.5, 2.0))  # the slices' own orientation
    nib.save(nib.Nifti1Image(np.stack(slices, axis=2), affine), str(inp / "stacked.nii.gz"))
    assert _run(ckpt, inp, tmp_path / "out") == 0
    from_tiffs = np.stack(
        [cv2.imread(str(tmp_path / "out" / "patients" / PATIENT / f"{PATIENT}_{i}_mask.tif"), 0) > 0 for i in (1, 2, 10)],
        axis=2,
    )
    from_nifti = np.asarray(nib.load(str(tmp_path / "out" / "stacked_mask.nii.gz")).dataobj) > 0
    assert from_tiffs.any() and np.array_equal(from_nifti, from_tiffs)
    t = _table(tmp_path / "out")
    assert float(t.loc["stacked.nii.gz", "tumour_volume_mm3"]) == pytest.approx(from_nifti.sum() * 0.5, rel=1e-6)


def test_the_checkpoints_recipe_sets_the_post_processing_unless_the_user_does(tmp_path):
    """``infer --checkpoint RUN/checkpoints`` segments as the recipe's cv measured (largest component,
    flip TTA, ...): the infer section comes from the checkpoint, then --config / --set / flags."""
    cfg = tiny_config(scale=0.5)
    cfg.infer.postprocess.largest_only = True
    cfg.infer.postprocess.tta_flip = True
    cfg.infer.postprocess.threshold = 0.45
    recipe_ckpt = write_untrained_checkpoint(tmp_path / "recipe.pt", cfg)
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(3)
    volume = rng.integers(1, 255, (24, 24, 5, 3)).astype(np.uint8)
    nib.save(nib.Nifti1Image(volume, _affine()), str(inp / "vol.nii.gz"))

    assert _run(recipe_ckpt, inp, tmp_path / "out") == 0
    pp = yaml.safe_load((tmp_path / "out" / "config_infer.yaml").read_text())["infer"]["postprocess"]
    assert pp["largest_only"] is True and pp["tta_flip"] is True and pp["threshold"] == 0.45
    plain_ckpt = write_untrained_checkpoint(tmp_path / "plain.pt", tiny_config(scale=0.5))  # same weights, defaults
    assert _run(plain_ckpt, inp, tmp_path / "plain") == 0
    assert _run(plain_ckpt, inp, tmp_path / "flags", "--tta", "--threshold", "0.45",
                "--set", "infer.postprocess.largest_only=true") == 0  # fmt: skip
    written = {name: np.asarray(nib.load(str(tmp_path / name / "vol_mask.nii.gz")).dataobj)
               for name in ("out", "plain", "flags")}  # fmt: skip
    np.testing.assert_array_equal(written["out"], written["flags"])  # the recipe's TTA, threshold, largest component
    assert not np.array_equal(written["out"], written["plain"])

    assert _run(recipe_ckpt, inp, tmp_path / "user", "--no-tta", "--threshold", "0.6",
                "--set", "infer.postprocess.largest_only=false") == 0  # fmt: skip
    pp = yaml.safe_load((tmp_path / "user" / "config_infer.yaml").read_text())["infer"]["postprocess"]
    assert pp["largest_only"] is False and pp["tta_flip"] is False and pp["threshold"] == 0.6
