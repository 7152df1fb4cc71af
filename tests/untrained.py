"""Untrained checkpoints for tests and benchmarks (geometry, formats and speed need no training).

A test fixture, not part of the package: tests import it as ``untrained`` (pytest puts
``tests/`` on the path), ``benchmarks/bench_infer.py`` adds ``tests/`` to its path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mri_seg.config import Config, config_to_dict
from mri_seg.models import build_model
from mri_seg.preprocess import normalisation_spec
from mri_seg.training.checkpoint import save_checkpoint


def tiny_config(scale: float = 1.0, channels: list[int] | None = None) -> Config:
    """A config whose model runs in milliseconds on a CPU (size divisor 4).

    The output prior is off (MONAI's initialisation): an untrained model then predicts
    scattered tumour at about half the pixels, so tests of the inference plumbing have
    masks to compare instead of all-empty ones.
    """
    cfg = Config()
    cfg.model.output_prior = 0.0
    cfg.data.scale = scale
    cfg.model.channels = list(channels or [4, 8, 16])
    cfg.model.strides = [2] * (len(cfg.model.channels) - 1)
    cfg.model.num_res_units = 1
    return cfg


def write_untrained_checkpoint(path: str | Path, cfg: Config | None = None, seed: int = 0) -> Path:
    """A checkpoint in the training stage's format holding a freshly initialised model."""
    cfg = cfg or tiny_config()
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    state = {
        "model": model.state_dict(),
        "config": config_to_dict(cfg),
        "normalisation": normalisation_spec(cfg.data.normalisation),
        "epoch": 1,
        "metrics": {},
    }
    save_checkpoint(path, state)
    return Path(path)
