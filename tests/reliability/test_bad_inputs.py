"""Issue 11: bad inputs refused up front (paths), isolated (discovery, NaN/inf, CMYK, multi-page TIFF),
and one-line checkpoint errors. Each test names the failure it reproduces."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
from reliability_helpers import read_only_dir
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.pipelines import infer, prepare, split
from mri_seg.pipelines._cli import run_main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", tiny_config(scale=0.5))


def _image(h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 80, (h, w, 3)).astype(np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = 220
    return img


def _exit(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        run_main(main, argv)
    return int(info.value.code), capsys.readouterr().err.strip()


def _infer_argv(ckpt: Path, inp: Path, out: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(ckpt), "--input", str(inp), "--output", str(out), "--device", "cpu",
            "--no-progress", *extra]  # fmt: skip


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).set_index("path")


# ----------------------------------------------------------------------------- paths (items 1, 2, 4)


def test_prepare_run_dir_that_is_a_file_is_one_line_exit_2(synthetic_dir, tmp_path, capsys):
    """Issue 11 item 1: was a FileExistsError traceback, exit 1."""
    run = tmp_path / "run.txt"
    run.write_text("mine\n")
    code, err = _exit(prepare.main, ["--data-dir", str(synthetic_dir), "--run-dir", str(run)], capsys)
    assert code == 2 and err == f"error: run directory {run} exists and is not a folder"
    assert run.read_text() == "mine\n"  # never overwritten


def test_prepare_run_dir_under_a_file_is_one_line_exit_2(synthetic_dir, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = _exit(prepare.main, ["--data-dir", str(synthetic_dir), "--run-dir", str(tmp_path / "f" / "run")], capsys)
    assert code == 2 and err == f"error: cannot create run directory {tmp_path / 'f' / 'run'}: {tmp_path / 'f'} is not a folder"


def test_prepare_into_read_only_run_dir_is_one_line_exit_2(synthetic_dir, tmp_path, capsys):
    """Issue 11 item 2: was an OSError traceback, exit 1."""
    with read_only_dir(tmp_path / "ro") as ro:
        code, err = _exit(prepare.main, ["--data-dir", str(synthetic_dir), "--run-dir", str(ro)], capsys)
        assert code == 2 and err.startswith(f"error: run directory {ro} is not writable (")
        assert "\n" not in err and list(ro.iterdir()) == []
        code, err = _exit(prepare.main, ["--data-dir", str(synthetic_dir), "--run-dir", str(ro / "new")], capsys)
        assert code == 2 and err.startswith(f"error: cannot create run directory {ro / 'new'}: {ro} is not writable (")


def test_infer_output_read_only_refused_before_the_batch(tmp_path, ckpt, capsys):
    """Issue 11 item 4: was a traceback, exit 1, nothing processed."""
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "a.png"), _image())
    with read_only_dir(tmp_path / "ro") as ro:
        code, err = _exit(infer.main, _infer_argv(ckpt, inp, ro / "out"), capsys)
        assert code == 2 and err.startswith(f"error: cannot create output folder {ro / 'out'}: {ro} is not writable (")
        code, err = _exit(infer.main, _infer_argv(ckpt, inp, ro), capsys)
        assert code == 2 and err.startswith(f"error: output folder {ro} is not writable (")


@pytest.mark.parametrize(
    "what, expected",
    [("checkpoint_dir", "error: cannot use checkpoint {p}: no checkpoint in {p} (expected best.pt, last.pt or fold<K>/ "
                        "folders)"),
     ("checkpoint_missing", "error: checkpoint not found: {p}"),
     ("input_missing", "error: input not found: {p}"),
     ("input_fifo", "error: input {p} is not a regular file")],
)  # fmt: skip
def test_infer_paths_checked_up_front(tmp_path, ckpt, capsys, what, expected):
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "a.png"), _image())
    p = tmp_path / what
    argv = _infer_argv(ckpt, inp, tmp_path / "out")
    if what == "checkpoint_dir":
        p.mkdir()
        argv[1] = str(p)
    elif what == "checkpoint_missing":
        argv[1] = str(p)
    elif what == "input_missing":
        argv[3] = str(p)
    else:
        os.mkfifo(p)
        argv[3] = str(p)
    code, err = _exit(infer.main, argv, capsys)
    assert code == 2 and err == expected.format(p=p)
    assert not (tmp_path / "out").exists()


def test_split_and_prepare_missing_folders(tmp_path, capsys):
    code, err = _exit(split.main, ["--run-dir", str(tmp_path / "nope")], capsys)
    assert code == 2 and err == f"error: run directory not found: {tmp_path / 'nope'}"
    code, err = _exit(prepare.main, ["--data-dir", str(tmp_path / "nodata"), "--run-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and err == f"error: data folder not found: {tmp_path / 'nodata'}"
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- discovery (item 3)


def _scans(root: Path) -> Path:
    root.mkdir()
    cv2.imwrite(str(root / "good1.png"), _image(seed=1))
    (root / "sub").mkdir()
    cv2.imwrite(str(root / "sub" / "good2.png"), _image(seed=2))
    return root


def test_symlink_loop_beside_valid_scans_is_an_error_row(tmp_path, ckpt, capsys):
    """Issue 11 item 3: a.png -> b.png -> a.png used to stop the batch with 'RuntimeError: Symlink loop'."""
    inp = _scans(tmp_path / "in")
    os.symlink("b.png", inp / "a.png")
    os.symlink("a.png", inp / "b.png")
    out = tmp_path / "out"
    assert infer.main(_infer_argv(ckpt, inp, out)) == 1
    t = _table(out)
    assert t.loc["good1.png", "status"] == "ok" and t.loc["sub/good2.png", "status"] == "ok"
    for name in ("a.png", "b.png"):
        assert t.loc[name, "status"] == "error"
        assert t.loc[name, "message"] == f"{inp / name}: symbolic link loop (the link points back to itself)"
    assert not (out / "a_mask.png").exists()
    assert "symbolic link loop" in capsys.readouterr().err


def test_dangling_link_fifo_and_folder_loop_become_rows(tmp_path, ckpt):
    inp = _scans(tmp_path / "in")
    os.symlink(tmp_path / "gone.png", inp / "dangling.png")
    os.mkfifo(inp / "pipe.png")  # reading it would block forever
    os.symlink("..", inp / "sub" / "loop")  # a folder link back to the input root
    os.symlink(inp / "sub", inp / "sub_link")  # a second path to a folder: searched once
    os.symlink(tmp_path / "gone.txt", inp / "notes.txt")  # not a scan name: ignored like any other stray file
    out = tmp_path / "out"
    assert infer.main(_infer_argv(ckpt, inp, out)) == 1
    t = _table(out)
    assert t.loc["dangling.png", "status"] == "error"
    assert t.loc["dangling.png", "message"].endswith("broken symbolic link (its target does not exist)")
    assert t.loc["pipe.png", "status"] == "error"
    assert t.loc["pipe.png", "message"].endswith("not a regular file but a FIFO (named pipe)")
    looped = [p for p in t.index if t.loc[p, "format"] == "folder"]
    assert len(looped) == 2 and all(t.loc[p, "status"] == "skipped" for p in looped)
    assert all("already searched" in t.loc[p, "message"] for p in looped)
    assert t.loc["good1.png", "status"] == "ok" and t.loc["sub/good2.png", "status"] == "ok"
    assert (t["status"] == "ok").sum() == 2  # each real scan once, however many paths lead to it
    assert "notes.txt" not in t.index


def test_unreadable_subfolder_is_an_error_row_and_the_rest_goes_on(tmp_path, ckpt, monkeypatch):
    inp = _scans(tmp_path / "in")
    locked = inp / "locked"
    locked.mkdir()
    cv2.imwrite(str(locked / "hidden.png"), _image(seed=3))
    if os.geteuid() != 0:
        locked.chmod(0o000)
    else:  # root reads any folder: make listing it fail as it does for a user without permission
        real = os.scandir

        def scandir(path="."):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        out = tmp_path / "out"
        assert infer.main(_infer_argv(ckpt, inp, out)) == 1
    finally:
        locked.chmod(0o755)
    t = _table(out)
    assert t.loc["locked", "status"] == "error" and t.loc["locked", "format"] == "folder"
    assert t.loc["locked", "message"] == "folder cannot be read (Permission denied); the scans in it were not searched"
    assert t.loc["good1.png", "status"] == "ok" and t.loc["sub/good2.png", "status"] == "ok"


# ----------------------------------------------------------------------------- NaN / inf (item 5)


def _nifti_with_nans(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.uniform(100, 400, (40, 36, 6)).astype(np.float32)
    data[10:20, 12:24, :] = 900.0
    data[2, 3:8, 1] = np.nan  # 5 NaN in slice 1 (slices along axis 2)
    data[5, 5, 4] = np.inf  # 1 inf in slice 4
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return data


def test_nan_and_inf_voxels_replaced_with_a_warning_never_a_silent_empty_slice(tmp_path, ckpt):
    """Issue 11 item 5: the two slices' probability maps were all NaN, their masks empty, the row 'ok'."""
    from mri_seg.inference.predictor import Predictor

    inp = tmp_path / "in"
    inp.mkdir()
    data = _nifti_with_nans(inp / "vol.nii.gz")
    before = (inp / "vol.nii.gz").read_bytes()
    out = tmp_path / "out"
    assert infer.main(_infer_argv(ckpt, inp, out, "--save-probabilities", "--threshold", "0.5",
                                  "--set", "infer.nifti_axis=2")) == 0  # index space: compared below
    t = _table(out)
    assert t.loc["vol.nii.gz", "status"] == "ok"
    assert t.loc["vol.nii.gz", "warnings"].split("; ") == [
        f"{inp / 'vol.nii.gz'}: 1 channel replicated to 3 (the model expects 3 sequences)",
        f"{inp / 'vol.nii.gz'}: 6 voxel(s) with NaN/inf intensities in 2 of 6 slices replaced by 0 (background)",
    ]
    prob = np.asarray(nib.load(str(out / "vol_prob.nii.gz")).dataobj)
    assert np.isfinite(prob).all()
    # the affected slices are predicted exactly like the same volume with those voxels set to background
    clean = np.where(np.isfinite(data), data, 0).astype(np.float32)
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    expected = np.stack(list(predictor.iter_proba(np.moveaxis(clean, 2, 0)[..., None])), axis=2)
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    assert (prob[:, :, 1] > 0).any() and (prob[:, :, 4] > 0).any()
    assert (inp / "vol.nii.gz").read_bytes() == before  # input untouched


def test_predictor_never_returns_nan_for_nan_input(ckpt):
    from mri_seg.inference.predictor import Predictor
    from mri_seg.io.scan import NonFiniteWarning

    image = np.full((32, 32, 3), 50.0, np.float32)
    image[4:8, 4:8] = np.nan
    with pytest.warns(NonFiniteWarning, match=r"image: 16 voxel\(s\) with NaN/inf intensities replaced by 0"):
        prob = Predictor.from_checkpoint(ckpt, device="cpu").predict_proba(image)
    assert prob.shape == (32, 32) and np.isfinite(prob).all()


def test_prepare_reports_a_float_slice_with_nan_as_a_defect(synthetic_dir, tmp_path):
    import shutil

    from mri_seg.config import load_config
    from mri_seg.data.kaggle_lgg import prepare_dataset

    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    patient = sorted(p for p in data.iterdir() if p.is_dir())[0]
    target = sorted(patient.glob("*_1.tif"))[0]
    image = cv2.imread(str(target), cv2.IMREAD_UNCHANGED).astype(np.float32)
    image[0, :5, 0] = np.nan
    tifffile.imwrite(target, image, photometric="rgb")
    result = prepare_dataset(data, tmp_path / "run", load_config(None, ["prepare.workers=1"]), progress=False)
    found = [p for p in result.problems if p.file == str(target)]
    assert [(p.kind, p.severity) for p in found] == [("non_finite_image", "error")]
    assert found[0].reason == "image has 5 NaN/inf pixel value(s); the slice is excluded"
    assert str(target) not in set(result.manifest["image_path"])


# ----------------------------------------------------------------------------- CMYK JPEG, multi-page TIFF


def test_cmyk_jpeg_is_refused_and_rgb_jpeg_accepted(tmp_path, ckpt):
    from PIL import Image

    inp = tmp_path / "in"
    inp.mkdir()
    rgb = Image.fromarray(_image()[:, :, ::-1].copy())
    rgb.save(inp / "rgb.jpg")
    rgb.convert("CMYK").save(inp / "cmyk.jpg")
    out = tmp_path / "out"
    assert infer.main(_infer_argv(ckpt, inp, out)) == 1
    t = _table(out)
    assert t.loc["rgb.jpg", "status"] == "ok"
    assert t.loc["cmyk.jpg", "status"] == "error"
    assert t.loc["cmyk.jpg", "message"].endswith("CMYK JPEG; save the scan as grayscale or RGB "
                                                 "(CMYK cannot be mapped back to MRI sequences faithfully)")


def test_multi_page_tiff_uses_page_one_with_a_warning(tmp_path, ckpt):
    inp = tmp_path / "in"
    inp.mkdir()
    pages = [_image(seed=s) for s in range(3)]
    with tifffile.TiffWriter(inp / "stack.tif") as tif:
        for page in pages:
            tif.write(page[:, :, ::-1], photometric="rgb")
    tifffile.imwrite(inp / "single.tif", pages[0][:, :, ::-1], photometric="rgb")
    out = tmp_path / "out"
    assert infer.main(_infer_argv(ckpt, inp, out)) == 0
    t = _table(out)
    assert t.loc["stack.tif", "status"] == "ok" and t.loc["stack.tif", "shape"] == "40x48x3"
    assert t.loc["stack.tif", "warnings"] == (f"{inp / 'stack.tif'}: multi-page TIFF (3 full-size pages); only page 1 "
                                              "was segmented (store a volume as NIfTI or one slice per file)")  # fmt: skip
    assert t.loc["single.tif", "warnings"] == ""
    same = cv2.imread(str(out / "stack_mask.tif"), 0), cv2.imread(str(out / "single_mask.tif"), 0)
    assert np.array_equal(*same)  # page 1 is exactly the single-page file


# ----------------------------------------------------------------------------- checkpoint messages


def test_architecture_mismatch_is_one_line(tmp_path, capsys):
    import torch

    from mri_seg.training.checkpoint import load_checkpoint, save_checkpoint

    path = write_untrained_checkpoint(tmp_path / "a.pt", tiny_config(scale=0.5))
    state = load_checkpoint(path)
    state["config"]["model"]["channels"] = [8, 16, 32]  # the config no longer describes the weights
    save_checkpoint(tmp_path / "b.pt", state)
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "a.png"), _image())
    code, err = _exit(infer.main, _infer_argv(tmp_path / "b.pt", inp, tmp_path / "out"), capsys)
    assert code == 2 and "\n" not in err, err
    assert err.startswith(f"error: cannot use checkpoint {tmp_path / 'b.pt'}: {tmp_path / 'b.pt'}: weights do not "
                          "match the model its config describes (0 missing, 0 unexpected, ")
    assert "of another shape; e.g. model." in err and torch  # names one tensor, not all of them


def test_overlap_and_tile_batch_errors_do_not_blame_the_checkpoint(tmp_path, ckpt, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "a.png"), _image())
    for flag, value, key in [("--overlap", "1.0", "infer.overlap"), ("--tile-batch", "0", "infer.tile_batch")]:
        code, err = _exit(infer.main, _infer_argv(ckpt, inp, tmp_path / "out", flag, value), capsys)
        assert code == 2 and err.startswith(f"error: config key '{key}' is ") and "checkpoint" not in err


def test_prepare_unreadable_patient_folder_is_reported_and_the_rest_prepared(synthetic_dir, tmp_path, monkeypatch):
    import shutil

    from mri_seg.config import load_config
    from mri_seg.data.kaggle_lgg import prepare_dataset

    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    locked = sorted(p for p in data.iterdir() if p.is_dir())[0]
    if os.geteuid() != 0:
        locked.chmod(0o000)
    else:  # root reads any folder: make listing it fail as it does for a user without permission
        real = Path.iterdir

        def iterdir(self):
            if self == locked:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "iterdir", iterdir)
    try:
        result = prepare_dataset(data, tmp_path / "run", load_config(None, ["prepare.workers=1"]), progress=False)
    finally:
        locked.chmod(0o755)
    found = [p for p in result.problems if p.file == str(locked)]
    assert [(p.kind, p.reason) for p in found] == [
        ("unreadable_folder", "patient folder cannot be read (Permission denied); skipped")]
    assert result.counts["patients"] == 7 and locked.name not in set(result.manifest["patient_id"])
