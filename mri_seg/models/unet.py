"""Model factory: MONAI's UNet built from :class:`mri_seg.config.ModelConfig`."""

from __future__ import annotations

import torch
from monai.networks.nets import UNet

from mri_seg.config import ModelConfig


def build_model(cfg: ModelConfig) -> torch.nn.Module:
    """2D UNet with ``in_channels`` inputs and ``out_channels`` logits (no final activation)."""
    if cfg.name != "unet":
        raise ValueError(f"unknown model name '{cfg.name}' (known: unet)")
    if len(cfg.strides) != len(cfg.channels) - 1:
        raise ValueError(
            f"model.strides needs len(model.channels) - 1 = {len(cfg.channels) - 1} entries, got {len(cfg.strides)}"
        )
    return UNet(
        spatial_dims=2,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        channels=tuple(cfg.channels),
        strides=tuple(cfg.strides),
        num_res_units=cfg.num_res_units,
        norm=cfg.norm,
        dropout=cfg.dropout,
    )


def size_divisor(cfg: ModelConfig) -> int:
    """Input height/width must be a multiple of this (product of the strides)."""
    d = 1
    for s in cfg.strides:
        d *= s
    return d
