"""Concurrent runs: one writer per run directory / output folder; the second refuses naming the holder;
a lock left by a killed process is taken over with a note."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from reliability_helpers import env
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.pipelines import cv, evaluate, infer, prepare, run, split, train
from mri_seg.pipelines._cli import run_main
from mri_seg.utils.lock import LOCK_NAME, LockError, folder_lock, holder

HOLD = "import sys, time; from mri_seg.utils.lock import folder_lock\n" \
       "with folder_lock(sys.argv[1], 'mri_seg prepare --run-dir ' + sys.argv[1]):\n" \
       "    print('held', flush=True); time.sleep(120)\n"  # fmt: skip


def _hold(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (as a running stage would)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def held(tmp_path):
    folder = tmp_path / "held"
    folder.mkdir()
    proc = _hold(folder)
    yield folder, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_lock_is_reentrant_in_one_process_and_removed_on_exit(tmp_path):
    with folder_lock(tmp_path / "r", "cmd one") as path:
        assert path == tmp_path / "r" / LOCK_NAME
        with folder_lock(tmp_path / "r", "cmd two"):  # the pipeline runner calling a stage
            pass
        assert path.is_file()
    assert not (tmp_path / "r" / LOCK_NAME).exists()
    assert holder(tmp_path / "r") is None


def test_second_process_refused_naming_the_holder(held):
    folder, proc = held
    info = holder(folder)
    assert info["pid"] == proc.pid and info["command"] == f"mri_seg prepare --run-dir {folder}"
    with pytest.raises(LockError) as exc:
        with folder_lock(folder, "second"):
            pass
    text = str(exc.value)
    assert text.startswith(f"{folder} is in use by pid {proc.pid} (`mri_seg prepare --run-dir {folder}`, started ")
    assert text.endswith(f"wait for it to finish or use another folder (lock file {folder / LOCK_NAME})")


def test_stale_lock_of_a_killed_process_is_taken_over_with_a_note(held):
    folder, proc = held
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folder / LOCK_NAME).is_file() and holder(folder) is None  # file left behind, lock released by the kernel
    notes = []
    with folder_lock(folder, "next", note=notes.append):
        assert holder(folder)["pid"] == os.getpid()
    assert notes == [notes[0]] and notes[0].startswith(f"note: took over the lock of pid {proc.pid} (")
    assert notes[0].endswith("which is no longer running")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    cfg = tiny_config(scale=0.5)
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", cfg)


def _argv(stage: str, folder: Path, synthetic_dir: Path, ckpt: Path, inputs: Path) -> list[str]:
    return {
        "prepare": ["--data-dir", str(synthetic_dir), "--run-dir", str(folder)],
        "split": ["--run-dir", str(folder)],
        "train": ["--run-dir", str(folder), "--epochs", "1"],
        "cv": ["--run-dir", str(folder), "--no-progress"],
        "evaluate": ["--run-dir", str(folder), "--checkpoint", str(ckpt), "--no-progress"],
        "infer": ["--checkpoint", str(ckpt), "--input", str(inputs), "--output", str(folder), "--no-progress"],
        "run": [str(Path(__file__).resolve().parents[2] / "pipelines" / "demo.yaml"), "--run-dir", str(folder)],
    }[stage]


@pytest.mark.parametrize("stage", ["prepare", "split", "train", "cv", "evaluate", "infer", "run"])
def test_every_stage_refuses_a_folder_in_use(stage, held, synthetic_run, synthetic_dir, ckpt, tmp_path, capsys):
    folder, proc = held
    for name in ("manifest.csv", "splits.csv", "patients.csv"):
        shutil.copy(synthetic_run / name, folder / name)
    inputs = tmp_path / "scans"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "a.png"), np.full((32, 32, 3), 60, np.uint8))
    before = sorted(p.name for p in folder.iterdir())
    module = {"prepare": prepare, "split": split, "train": train, "cv": cv, "evaluate": evaluate, "infer": infer,
              "run": run}
    with pytest.raises(SystemExit) as info:
        run_main(module[stage].main, _argv(stage, folder, synthetic_dir, ckpt, inputs))
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert err == [f"error: {folder} is in use by pid {proc.pid} (`mri_seg prepare --run-dir {folder}`, started "
                   f"{holder(folder)['started']}); wait for it to finish or use another folder "
                   f"(lock file {folder / LOCK_NAME})"]  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written by the refused command


def test_two_real_prepare_processes_never_interleave(synthetic_dir, tmp_path):
    """Start two prepares on one run dir at once: each either completes or refuses with exit 2."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "mri_seg.pipelines.prepare", "--data-dir", str(synthetic_dir), "--run-dir",
           str(run_dir), "--workers", "1"]  # fmt: skip
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env())
             for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code in (0, 2) for code, _ in results) and any(code == 0 for code, _ in results)
    for code, err in results:
        if code == 2:
            assert "is in use by pid" in err
    assert not (run_dir / LOCK_NAME).exists()
    time.sleep(0)  # (both finished)
