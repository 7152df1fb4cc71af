"""Checkpoints: everything inference needs, saved atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors and primitives (no pickled objects), so
``torch.load(path, weights_only=True)`` can read it safely:

    model            model state_dict (the shipped weights: their average with train.ema_decay > 0)
    train_model      with train.ema_decay > 0 only: the trained weights, for resume (mri_seg.training.ema)
    ema_steps        with train.ema_decay > 0 only: the steps the average has taken
    optimizer        optimizer state_dict (or None)
    scheduler        scheduler state_dict (or None)
    scaler           GradScaler state_dict (or None)
    epoch            last completed epoch (1-based)
    config           full resolved config as a dict (see mri_seg.config.config_to_dict)
    normalisation    {"method": ...} (see mri_seg.preprocess)
    metrics          {"val_patient_dice_mean": ..., ...}
    best_metric      best mean val patient Dice so far
    data_hash        sha256 of manifest.csv + splits.csv the model was trained on
    version          mri_seg version
    sequences        the model's input sequences by name, in channel order (e.g. ["post", "flair", "pre"]);
                     recorded by save_checkpoint (default: the Kaggle TIFF order as OpenCV reads it);
                     read with checkpoint_sequences (a checkpoint without it gets that default)
    extra            free-form dict of primitives (e.g. early-stopping counters, RNG state)
    fold             cross-validation fold held out (None: trained on the train split)
    train_patients   sorted ids of the patients whose slices were trained on

Which checkpoint a path means (:func:`resolve_checkpoints`): a file is that checkpoint; a
folder (``RUN/checkpoints``) is the run's deliverable -- each ``fold<K>/`` folder's shipped
checkpoint when there are fold folders (an ensemble), else the folder's own shipped one;
an exported bundle (:mod:`mri_seg.training.bundle`) is its members' weight files, each
loaded by :func:`load_checkpoint` from the bundle's JSON and weights-only state dict.
The shipped file is ``best.pt`` or ``last.pt``: ``train.ship_checkpoint`` of the config
stored in the folder's checkpoints, unless the caller names one.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from mri_seg import __version__
from mri_seg.config import Config, config_from_dict
from mri_seg.config.names import SHIP_CHOICES
from mri_seg.io.sequences import TRAINING_SEQUENCES, model_sequences
from mri_seg.rundir import checkpoint_file, fold_folders
from mri_seg.utils.atomic import atomic_write_bytes
from mri_seg.utils.hashing import file_sha256  # noqa: F401 (re-exported)

REQUIRED_KEYS = ("model", "config", "normalisation", "epoch")


class CheckpointError(ValueError):
    """The file is not a usable mri_seg checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` (see module docstring) and write it atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint state is missing {missing}")
    state = {"version": __version__, "sequences": list(TRAINING_SEQUENCES), **state}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely (``weights_only=True``) and check it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from mri_seg.training.bundle import bundle_root_of, load_bundle_member

    if bundle_root_of(path) is not None:  # a member of an exported bundle: weights + JSON, sha256 checked
        return load_bundle_member(path, map_location)
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




def _check_ship_name(name: str, where: str) -> str:
    if name not in SHIP_CHOICES:
        raise CheckpointError(f"{where} must be one of {', '.join(SHIP_CHOICES)}, got '{name}'")
    return name


def shipped_checkpoint(folder: str | Path, name: str | None = None) -> Path:
    """``folder/best.pt`` or ``folder/last.pt``: ``name`` if given, else ``train.ship_checkpoint``
    of the config stored in the folder's checkpoints (last.pt, else best.pt)."""
    folder = Path(folder)
    if name is None:
        stored = [checkpoint_file(folder, n) for n in ("last", "best") if checkpoint_file(folder, n).is_file()]
        if not stored:
            raise FileNotFoundError(f"no checkpoint in {folder} (expected best.pt, last.pt or fold<K>/ folders)")
        config = load_checkpoint(stored[0])["config"]
        name = _check_ship_name(str((config.get("train") or {}).get("ship_checkpoint", "best")),
                                f"train.ship_checkpoint in {stored[0]}")  # fmt: skip
    else:
        _check_ship_name(name, "the checkpoint name")
    path = checkpoint_file(folder, name)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def resolve_checkpoints(paths: str | Path | list[str | Path], name: str | None = None) -> list[Path]:
    """The checkpoint files that ``paths`` mean (see the module docstring), in the order given.

    ``name`` (``best``/``last``) overrides the stored ``train.ship_checkpoint`` for folders.
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise CheckpointError("no checkpoint given")
    from mri_seg.training.bundle import bundle_member_files, is_bundle

    out: list[Path] = []
    for item in map(Path, items):
        if item.is_file():
            out.append(item)
        elif item.is_dir() and is_bundle(item):
            out += bundle_member_files(item)  # every member checked against its recorded sha256
        elif item.is_dir():
            folds = fold_folders(item)
            out += [shipped_checkpoint(f, name) for _, f in folds] if folds else [shipped_checkpoint(item, name)]
        else:
            raise FileNotFoundError(f"checkpoint not found: {item}")
    return out


def checkpoint_sequences(state: dict[str, Any]) -> tuple[str, ...]:
    """The model's input sequences in channel order; the training default for older checkpoints."""
    try:
        return model_sequences(state.get("sequences"), "checkpoint 'sequences'")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
