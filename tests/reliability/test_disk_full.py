"""Disk full: a write failing with ENOSPC is one line naming the file, and leaves no partial output."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from reliability_helpers import temp_leftovers, tiny_tmpfs
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.pipelines import infer, prepare
from mri_seg.pipelines._cli import run_main
from mri_seg.utils import atomic
from mri_seg.utils.atomic import DiskFullError, atomic_write_text


def _full_disk_for(monkeypatch, pattern: str) -> None:
    """Make ``fsync`` of the temp file of any output whose name contains ``pattern`` fail with ENOSPC."""
    real_fsync = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if pattern in os.path.basename(name):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)


def _message(path: Path) -> str:
    return (f"no space left on the device writing {path}; nothing was written there "
            "(free some space and run the same command again)")  # fmt: skip


def test_atomic_write_keeps_the_previous_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    _full_disk_for(monkeypatch, "table.csv")
    with pytest.raises(DiskFullError) as info:
        atomic_write_text(target, "new content\n")
    assert str(info.value) == _message(target) and info.value.errno == errno.ENOSPC
    assert target.read_text() == "old\n" and temp_leftovers(tmp_path) == []


def test_prepare_disk_full_is_one_line_and_no_partial_table(synthetic_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _full_disk_for(monkeypatch, "patients.csv")
    with pytest.raises(SystemExit) as info:
        run_main(prepare.main, ["--data-dir", str(synthetic_dir), "--run-dir", str(run), "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err[-1] == f"error: {_message(run / 'patients.csv')}"
    assert not (run / "patients.csv").exists() and temp_leftovers(run) == []
    monkeypatch.undo()  # space freed: the same command completes
    with pytest.raises(SystemExit) as info:
        run_main(prepare.main, ["--data-dir", str(synthetic_dir), "--run-dir", str(run), "--workers", "1"])
    assert info.value.code == 0 and len(pd.read_csv(run / "patients.csv")) == 8


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", tiny_config(scale=0.5))


def test_infer_disk_full_stops_with_one_line_and_the_rerun_finishes(tmp_path, ckpt, monkeypatch, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(inp / f"{name}.png"), np.random.default_rng(len(name)).integers(0, 255, (40, 40, 3), np.uint8))
    out = tmp_path / "out"
    argv = ["--checkpoint", str(ckpt), "--input", str(inp), "--output", str(out), "--device", "cpu", "--no-progress"]
    _full_disk_for(monkeypatch, "b_overlay.png")  # b's mask is written, then its overlay fails
    with pytest.raises(SystemExit) as info:
        run_main(infer.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err[-1] == f"error: {_message(out / 'b_overlay.png')}"
    assert (out / "a_mask.png").is_file() and (out / "a_overlay.png").is_file()  # finished before the disk filled
    assert not (out / "b_mask.png").exists() and not (out / "b_overlay.png").exists()  # no partial scan
    assert not (out / "c_mask.png").exists() and temp_leftovers(out) == []
    monkeypatch.undo()
    a_written = (out / "a_mask.png").stat().st_mtime_ns
    with pytest.raises(SystemExit) as info:
        run_main(infer.main, argv)
    assert info.value.code == 0
    table = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).set_index("path")
    assert list(table["status"]) == ["ok", "ok", "ok"]  # a kept from the journal, b and c computed now
    assert (out / "a_mask.png").stat().st_mtime_ns == a_written


def test_prepare_on_a_real_full_tmpfs(synthetic_dir, tmp_path, capsys):
    """A 16 KiB tmpfs: manifest.csv (about 30 KiB) cannot be written; one line, nothing partial."""
    with tiny_tmpfs(tmp_path / "small", "16k") as small:
        run = small / "run"
        with pytest.raises(SystemExit) as info:
            run_main(prepare.main, ["--data-dir", str(synthetic_dir), "--run-dir", str(run), "--workers", "1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and err[-1] == f"error: {_message(run / 'manifest.csv')}"
        leftovers = sorted(p.name for p in run.iterdir()) if run.exists() else []
        assert leftovers == [] and shutil.disk_usage(small).used < 16 * 1024
