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


def train_killed_then_resumed(run: Path, cfg, monkeypatch, killed_in_epoch: int) -> None:
    """Train ``run`` until a KeyboardInterrupt inside epoch ``killed_in_epoch``, then ``--resume`` it to the end."""
    import pytest
    import torch

    from mri_seg.training import engine

    real_epoch = engine.train_one_epoch

    def dies(trainer, epoch: int) -> dict:
        if epoch == killed_in_epoch:
            raise KeyboardInterrupt
        return real_epoch(trainer, epoch)

    monkeypatch.setattr(engine, "train_one_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        engine.train(run, cfg, device="cpu")
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == killed_in_epoch - 1
    monkeypatch.setattr(engine, "train_one_epoch", real_epoch)
    engine.train(run, cfg, resume=True, device="cpu")
