"""Helpers shared by the reliability tests (read-only folders, small tmpfs mounts, stage runs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
KILL_SCRIPT = Path(__file__).with_name("kill_on_write.py")


def env() -> dict[str, str]:
    return {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(REPO_ROOT)}


def run_stage(stage: str, *args: str, kill_at: tuple[str, int] | None = None,
              timeout: int = 300) -> subprocess.CompletedProcess:  # fmt: skip
    """``python -m mri_seg.pipelines.STAGE ARGS`` in a subprocess, optionally SIGKILLed at a write."""
    prefix = [sys.executable]
    if kill_at is not None:
        prefix += [str(KILL_SCRIPT), kill_at[0], str(kill_at[1])]
    cmd = [*prefix, "-m", f"mri_seg.pipelines.{stage}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout, cwd=REPO_ROOT)


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return proc.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[Path]:
    """An empty folder this process cannot write into.

    Permission bits do not stop root, so as root it is a read-only tmpfs mount (skipped
    when mounting is not allowed); otherwise mode 0555.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    if not _mount_tmpfs(path, "ro,size=64k"):
        pytest.skip("cannot make a read-only folder here (root without permission to mount)")
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A writable tmpfs of ``size`` at ``path`` (a real full disk); skipped when mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if not _mount_tmpfs(path, f"size={size}"):
        pytest.skip("cannot mount a small tmpfs here (needs root with mount permission)")
    try:
        yield path
    finally:
        _umount(path)


def temp_leftovers(root: Path) -> list[Path]:
    """Temp files of atomic writes (``.<name>.<random>.tmp``) under ``root``."""
    return [p for p in root.rglob(".*.tmp")]
