"""SIGKILL in the middle of a write, then the same command again: it completes and every output is whole.

One kill point per stage (tests/kill_on_write.py kills the process just before the rename of
an atomic write: the worst moment, a complete temp file and no target yet). Each test runs
the real command twice in subprocesses (a kill needs its own process), so evaluate and
infer take 10-20 s: most of it is importing torch and MONAI twice.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from reliability_helpers import run_stage, temp_leftovers
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.utils.lock import LOCK_NAME

KILLED = -signal.SIGKILL


def _assert_clean(folder: Path) -> None:
    assert temp_leftovers(folder) == [] and not (folder / LOCK_NAME).exists()


def test_prepare_killed_while_writing_then_rerun(synthetic_dir, synthetic_run, tmp_path):
    run = tmp_path / "run"
    args = ["--data-dir", str(synthetic_dir), "--run-dir", str(run), "--workers", "1"]
    killed = run_stage("prepare", *args, kill_at=(r"^patients\.csv$", 1))
    assert killed.returncode == KILLED
    assert (run / "manifest.csv").is_file() and not (run / "patients.csv").exists()  # killed between the two
    assert temp_leftovers(run) and (run / LOCK_NAME).is_file()  # the debris a kill leaves
    again = run_stage("prepare", *args)
    assert again.returncode == 0, again.stderr
    assert "took over the lock of pid" in again.stderr
    for name in ("manifest.csv", "patients.csv"):  # whole, and identical to an uninterrupted run's
        assert (run / name).read_bytes() == (synthetic_run / name).read_bytes()
    assert json.loads((run / "prepare_report.json").read_text())["counts"]["slices"] == len(
        pd.read_csv(run / "manifest.csv"))
    _assert_clean(run)


def test_split_killed_while_writing_then_rerun(synthetic_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("manifest.csv", "patients.csv"):
        shutil.copy(synthetic_run / name, run / name)
    killed = run_stage("split", "--run-dir", str(run), kill_at=(r"^splits\.csv$", 1))
    assert killed.returncode == KILLED and not (run / "splits.csv").exists()
    again = run_stage("split", "--run-dir", str(run))
    assert again.returncode == 0, again.stderr
    assert (run / "splits.csv").read_bytes() == (synthetic_run / "splits.csv").read_bytes()
    _assert_clean(run)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, synthetic_run) -> Path:
    height = int(pd.read_csv(synthetic_run / "manifest.csv")["height"].max())
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", tiny_config(scale=32 / height))


def test_evaluate_killed_while_writing_the_report_then_rerun(synthetic_run, ckpt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("manifest.csv", "patients.csv", "splits.csv"):  # not eval/: other tests may have evaluated there
        shutil.copy(synthetic_run / name, run / name)
    args = ["--run-dir", str(run), "--checkpoint", str(ckpt), "--device", "cpu", "--no-progress",
            "--set", "eval.bootstrap_samples=50"]  # fmt: skip
    killed = run_stage("evaluate", *args, kill_at=(r"^report\.html$", 1))
    out = run / "eval" / "test"
    assert killed.returncode == KILLED
    assert (out / "patients.csv").is_file() and not (out / "report.html").exists()
    assert not (out / "summary.json").exists()  # written last: its absence marks an incomplete evaluation
    again = run_stage("evaluate", *args)
    assert again.returncode == 0, again.stderr
    html = (out / "report.html").read_text()
    assert html.rstrip().endswith("</html>")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_patients"] == len(pd.read_csv(out / "patients.csv"))
    for png in ("dice_by_patient.png", "volume_scatter.png", "dice_vs_size.png"):
        assert cv2.imread(str(out / png)) is not None
    _assert_clean(run)


def test_infer_killed_mid_batch_continues_where_it_stopped(ckpt, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(inp / f"scan{i}.png"), rng.integers(0, 255, (48, 40, 3), np.uint8))
    out = tmp_path / "out"
    args = ["--checkpoint", str(ckpt), "--input", str(inp), "--output", str(out), "--device", "cpu", "--no-progress"]
    killed = run_stage("infer", *args, kill_at=(r"_mask\.png$", 3))  # during the third scan
    assert killed.returncode == KILLED and not (out / "predictions.csv").exists()
    journal = [json.loads(line) for line in (out / ".predictions.part-0.jsonl").read_text().splitlines()]
    assert [r["path"] for r in journal] == ["scan0.png", "scan1.png"] and {r["status"] for r in journal} == {"ok"}
    assert not (out / "scan2_mask.png").exists()
    finished = {n: (out / f"scan{n}_mask.png").stat().st_mtime_ns for n in (0, 1)}
    again = run_stage("infer", *args)
    assert again.returncode == 0, again.stderr
    assert "5 scans: 5 ok (2 unchanged since the last run, kept), 0 failed" in again.stderr
    table = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).set_index("path")
    assert list(table.index) == [f"scan{i}.png" for i in range(5)] and set(table["status"]) == {"ok"}
    for row in journal:  # the finished scans were not recomputed: their rows (timings included) are kept
        assert table.loc[row["path"], "seconds"] == str(row["seconds"])
    assert {n: (out / f"scan{n}_mask.png").stat().st_mtime_ns for n in (0, 1)} == finished
    for i in range(5):
        mask = cv2.imread(str(out / f"scan{i}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (48, 40) and set(np.unique(mask)) <= {0, 255}
    assert not list(out.glob(".predictions.part-*"))
    _assert_clean(out)
