"""``train --init-from``: start a training from trained weights (fine-tuning) instead of a fresh model.

The source is a checkpoint file, a run's checkpoints folder, or an exported bundle. One
member is used as is; a source with several members (a fold ensemble) gives each fold
``K`` the member trained as fold ``K`` (``train --fold K`` / ``--all-folds``). Only the
weights are taken: optimiser, schedule and epochs start afresh with this run's config and
data. The member must expect the input this run's config describes (input channels,
sequences, 2.5D context, scale, training size, normalisation); otherwise training is
refused with one line naming the key. Weights that do not fit the configured architecture
are refused the same way (see :func:`load_matching_weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mri_seg.config import Config
from mri_seg.io.sequences import TRAINING_SEQUENCES
from mri_seg.training.checkpoint import (
    CheckpointError,
    checkpoint_sequences,
    load_checkpoint,
    resolve_checkpoints,
)
from mri_seg.utils.hashing import file_sha256

# What the member's input must match in this run's config (the predictor's MEMBER_KEYS).
INPUT_KEYS = ("model.in_channels", "sequences", "data.context_slices", "data.scale", "data.image_size", "normalisation")


class InitFromError(CheckpointError):
    """The source's weights cannot start this training."""


def _own_value(cfg: Config, key: str) -> Any:
    if key == "sequences":
        return list(TRAINING_SEQUENCES)  # what the training data (Kaggle TIFFs) delivers, in channel order
    if key == "normalisation":
        return cfg.data.normalisation
    section, leaf = key.split(".")
    return getattr(getattr(cfg, section), leaf)


def _member_value(state: dict[str, Any], key: str) -> Any:
    if key == "sequences":
        return list(checkpoint_sequences(state))
    if key == "normalisation":
        return (state.get("normalisation") or {}).get("method", state["config"]["data"].get("normalisation"))
    section, leaf = key.split(".")
    return (state["config"].get(section) or {}).get(leaf)


def choose_member(source: Path, fold: int | None) -> Path:
    """The member file of ``source`` that starts fold ``fold`` (see the module docstring)."""
    files = resolve_checkpoints([source])
    if len(files) == 1:
        return files[0]
    folds = {load_checkpoint(f).get("fold"): f for f in files}
    if fold is not None and fold in folds:
        return folds[fold]
    named = ", ".join(str(k) for k in folds)
    if fold is None:
        raise InitFromError(
            f"--init-from {source} has {len(files)} members (folds {named}): train with --fold K / --all-folds to "
            "start each fold from its member, or name one member's file"
        )
    raise InitFromError(f"--init-from {source} has no member for fold {fold} (its folds: {named}); name one member's file")


def check_compatible(state: dict[str, Any], cfg: Config, path: Path) -> None:
    """Refuse a member whose input is not the input this run's config trains on."""
    for key in INPUT_KEYS:
        theirs, ours = _member_value(state, key), _own_value(cfg, key)
        if theirs != ours:
            raise InitFromError(
                f"--init-from {path}: its {key} is {theirs!r}, this run's config has {ours!r} "
                "(a model starts only a training of the same input)"
            )


def load_matching_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict`` with one line when the weights do not fit the configured architecture."""
    own = model.state_dict()
    weights = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in weights.items()}
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or shapes:
        example = (shapes or missing or unexpected)[0]
        raise InitFromError(
            f"--init-from {path}: its weights do not fit this run's model.* architecture ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(shapes)} of another shape, e.g. {example})"
        )
    model.load_state_dict(weights)


def load_init_member(source: Path, cfg: Config, fold: int | None) -> tuple[Path, dict[str, Any]]:
    """The member that starts fold ``fold``, loaded and checked against this run's input (before any data is read)."""
    path = choose_member(Path(source), fold)
    state = load_checkpoint(path)
    check_compatible(state, cfg, path)
    return path, state


def init_weights(model: torch.nn.Module, member: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    """Load a member from :func:`load_init_member` into ``model``; returns what was used (file, sha256, fold, epoch)."""
    path, state = member
    load_matching_weights(model, state["model"], path)
    return {"path": str(path), "sha256": file_sha256(path), "fold": state.get("fold"), "epoch": state.get("epoch")}
