"""An exponential moving average (EMA) of the weights: ``train.ema_decay``.

The network trains its own weights; after every optimiser step an averaged copy moves
``1 - decay`` of the way towards them (torch's ``AveragedModel`` with
``get_ema_multi_avg_fn``; the first step copies the weights). A decay ``d`` averages over
about ``1 / (1 - d)`` steps, so it must be small against the schedule's steps: 0.995 is
~200 steps, four epochs of the CPU recipe's 1,530.

With the EMA on, validation scores the average and a checkpoint's ``model`` is the average
(what cv, evaluate, infer and export load, unchanged), while ``train_model`` (the trained
weights) and ``ema_steps`` (the averaged step count) are what ``--resume`` needs to go on
exactly. A checkpoint without them was trained without an EMA.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def build_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """The averaged copy of ``model`` (buffers averaged too), or None when ``decay`` is 0 (off)."""
    if decay <= 0.0:
        return None
    if decay >= 1.0:
        raise ValueError(f"train.ema_decay must be in [0, 1), got {decay:g}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def update_ema(ema: AveragedModel | None, model: torch.nn.Module) -> None:
    """One step of the average towards ``model``'s current weights (nothing when off)."""
    if ema is not None:
        ema.update_parameters(model)


def evaluated_model(ema: AveragedModel | None, model: torch.nn.Module) -> torch.nn.Module:
    """The network that is validated and shipped: the average when on, else ``model`` itself."""
    return ema.module if ema is not None else model


def ema_checkpoint_part(ema: AveragedModel | None, model: torch.nn.Module) -> dict[str, Any]:
    """The checkpoint keys for the weights: ``model`` (shipped) and, with an EMA, what resume needs."""
    if ema is None:
        return {"model": model.state_dict()}
    return {"model": ema.module.state_dict(), "train_model": model.state_dict(), "ema_steps": int(ema.n_averaged)}


def restore_weights(state: dict[str, Any], ema: AveragedModel | None, model: torch.nn.Module) -> None:
    """Load a checkpoint's weights into ``model`` (and its average into ``ema``)."""
    if ema is None:
        if "train_model" in state:
            raise ValueError("the checkpoint was trained with train.ema_decay > 0 but the config has it off")
        model.load_state_dict(state["model"])
        return
    if "train_model" not in state:
        raise ValueError("the checkpoint was trained without train.ema_decay; it cannot resume with an EMA")
    model.load_state_dict(state["train_model"])
    ema.module.load_state_dict(state["model"])
    ema.n_averaged.fill_(int(state["ema_steps"]))
