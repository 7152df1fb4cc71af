"""Run-directory helpers shared by tests (importable by name: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import shutil
from pathlib import Path


def fresh_run(src: Path, dst: Path) -> Path:
    """A writable copy of a prepared+split run dir (manifest paths are absolute)."""
    dst.mkdir(parents=True)
    for name in ("manifest.csv", "splits.csv", "patients.csv"):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    return dst
