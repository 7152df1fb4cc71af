"""Checkpoints: everything inference needs, saved atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors and primitives (no pickled objects), so
``torch.load(path, weights_only=True)`` can read it safely:

    model            model state_dict
    optimizer        optimizer state_dict (or None)
    scheduler        scheduler state_dict (or None)
    scaler           GradScaler state_dict (or None)
    epoch            last completed epoch (1-based)
    config           full resolved config as a dict (see mri_seg.config.config_to_dict)
    normalisation    {"method": ...} (see mri_seg.data.normalize)
    metrics          {"val_patient_dice_mean": ..., ...}
    best_metric      best mean val patient Dice so far
    data_hash        sha256 of manifest.csv + splits.csv the model was trained on
    version          mri_seg version
    extra            free-form dict of primitives (e.g. early-stopping counters, RNG state)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from mri_seg import __version__
from mri_seg.config import Config, config_from_dict
from mri_seg.utils.atomic import atomic_write_bytes

REQUIRED_KEYS = ("model", "config", "normalisation", "epoch")


class CheckpointError(ValueError):
    """The file is not a usable mri_seg checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` (see module docstring) and write it atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint state is missing {missing}")
    state = {"version": __version__, **state}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely (``weights_only=True``) and check it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt/truncated/not a torch file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not an mri_seg checkpoint (missing keys)")
    return state


def checkpoint_config(state: dict[str, Any]) -> Config:
    """The resolved :class:`Config` a checkpoint was trained with."""
    return config_from_dict(state["config"])
