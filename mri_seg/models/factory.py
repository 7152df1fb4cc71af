"""Model factory: ``model.name`` picks a MONAI 2D architecture, built from :class:`ModelConfig`.

Every architecture maps ``in_channels`` inputs to ``out_channels`` logits (no final
activation) at the input's resolution, and reads the same keys, so an ablation changes
``model.name`` and little else:

* ``unet``: MONAI ``UNet`` -- ``channels`` per level, ``strides`` between levels,
  ``num_res_units`` residual units per block, ``norm``, ``dropout``.
* ``attention_unet``: MONAI ``AttentionUnet`` (attention gates on the skip connections) --
  ``channels``, ``strides``, ``dropout``; MONAI fixes its norm (batch) and has no residual
  units, so ``norm`` and ``num_res_units`` are not used.
* ``segresnet``: MONAI ``SegResNet`` (residual encoder, light decoder) -- ``channels[0]`` is
  its ``init_filters`` and it doubles them per level, so ``channels`` must double and
  ``strides`` must all be 2; ``blocks_down`` residual blocks per encoder level (empty:
  MONAI's 1, 2, 2, 4 pattern, continued with 4); ``norm``, ``dropout``; ``num_res_units``
  is not used.
* ``dynunet``: MONAI ``DynUNet`` (nnU-Net's network) -- ``channels`` (filters),
  ``strides``, 3x3 kernels, ``num_res_units`` > 0 switches residual blocks on, ``norm``,
  ``dropout``; ``deep_supervision`` extra output heads during training (the loss weighs
  them, :mod:`mri_seg.losses`); in eval mode only the main head is returned.

Output prior (``model.output_prior``, default 0.01): the bias of the output layer starts
at ``logit(prior)``, so a fresh network predicts "1% tumour" everywhere instead of 50%
(RetinaNet's prior initialisation). Why: tumour is ~1% of the pixels; from MONAI's
zero-mean init, Adam moves a bias by about ``lr`` per step, and on lgg-dev the first
~5 epochs of a 128x128 run went to unlearning the 50% guess (val Dice 0.01 after 2
epochs). With the prior, the overlap term starts learning within ~20 steps. 0 keeps
MONAI's initialisation. Only a fresh model is affected: a checkpoint loads its weights.

All take inputs whose height and width are multiples of :func:`size_divisor` (the product
of ``strides``). Nothing here depends on the device: CUDA autocast and channels_last are
applied by the caller.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import torch
from monai.networks.nets import AttentionUnet, DynUNet, SegResNet, UNet

from mri_seg.config import ModelConfig
from mri_seg.config.names import ARCHITECTURES

SEGRESNET_BLOCKS = (1, 2, 2, 4)  # MONAI's default blocks_down; deeper levels repeat the last


def _check(cfg: ModelConfig) -> None:
    if cfg.name not in ARCHITECTURES:
        raise ValueError(f"unknown model.name '{cfg.name}' (known: {', '.join(ARCHITECTURES)})")
    if len(cfg.channels) < 2:
        raise ValueError(f"model.channels needs at least 2 levels, got {cfg.channels}")
    if len(cfg.strides) != len(cfg.channels) - 1:
        raise ValueError(
            f"model.strides needs len(model.channels) - 1 = {len(cfg.channels) - 1} entries, got {len(cfg.strides)}"
        )
    if any(s < 1 for s in cfg.strides) or any(c < 1 for c in cfg.channels):
        raise ValueError(f"model.channels and model.strides must be >= 1, got {cfg.channels}, {cfg.strides}")


def _unet_args(cfg: ModelConfig) -> dict[str, Any]:
    """The arguments MONAI's UNet and AttentionUnet share."""
    return {
        "spatial_dims": 2,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels,
        "channels": tuple(cfg.channels),
        "strides": tuple(cfg.strides),
        "dropout": cfg.dropout,
    }


def _unet(cfg: ModelConfig) -> torch.nn.Module:
    return UNet(**_unet_args(cfg), num_res_units=cfg.num_res_units, norm=cfg.norm)


def _attention_unet(cfg: ModelConfig) -> torch.nn.Module:
    return AttentionUnet(**_unet_args(cfg))


def segresnet_blocks(cfg: ModelConfig) -> tuple[int, ...]:
    """Residual blocks per SegResNet encoder level (``model.blocks_down`` or MONAI's pattern)."""
    levels = len(cfg.channels)
    if cfg.blocks_down:
        if len(cfg.blocks_down) != levels:
            raise ValueError(
                f"model.blocks_down needs one entry per level (len(model.channels) = {levels}), got {cfg.blocks_down}"
            )
        return tuple(int(b) for b in cfg.blocks_down)
    return tuple(SEGRESNET_BLOCKS[min(i, len(SEGRESNET_BLOCKS) - 1)] for i in range(levels))


def _segresnet(cfg: ModelConfig) -> torch.nn.Module:
    doubling = [cfg.channels[0] * 2**i for i in range(len(cfg.channels))]
    if list(cfg.channels) != doubling:
        raise ValueError(
            f"model.name segresnet doubles its filters per level: model.channels must be {doubling}, got {cfg.channels}"
        )
    if any(s != 2 for s in cfg.strides):
        raise ValueError(
            f"model.name segresnet downsamples by 2 per level: model.strides must all be 2, got {cfg.strides}"
        )
    blocks = segresnet_blocks(cfg)
    return SegResNet(
        spatial_dims=2,
        init_filters=cfg.channels[0],
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        dropout_prob=cfg.dropout or None,
        norm=cfg.norm,
        blocks_down=blocks,
        blocks_up=(1,) * (len(blocks) - 1),
    )


def _dynunet(cfg: ModelConfig) -> torch.nn.Module:
    levels = len(cfg.strides)  # up-sampling layers
    if not 0 <= cfg.deep_supervision < levels:
        raise ValueError(
            f"model.deep_supervision must be in [0, {levels - 1}] for {levels} down-sampling levels "
            f"(len(model.strides)), got {cfg.deep_supervision}"
        )
    return DynUNet(
        spatial_dims=2,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        kernel_size=[3] * (levels + 1),
        strides=[1, *cfg.strides],
        upsample_kernel_size=list(cfg.strides),
        filters=list(cfg.channels),
        dropout=cfg.dropout or None,
        norm_name=cfg.norm,
        deep_supervision=cfg.deep_supervision > 0,
        deep_supr_num=max(1, cfg.deep_supervision),
        res_block=cfg.num_res_units > 0,
    )


_BUILDERS = {"unet": _unet, "attention_unet": _attention_unet, "segresnet": _segresnet, "dynunet": _dynunet}


def build_model(cfg: ModelConfig) -> torch.nn.Module:
    """The 2D network named by ``model.name`` (see the module docstring)."""
    _check(cfg)
    if cfg.in_channels < 1 or cfg.out_channels < 1:
        raise ValueError(
            f"model.in_channels and model.out_channels must be >= 1, got {cfg.in_channels}, {cfg.out_channels}"
        )
    model = _BUILDERS[cfg.name](cfg)
    if cfg.output_prior > 0:
        init_output_prior(model, cfg.name, cfg.out_channels, cfg.output_prior)
    return model


_Conv: TypeAlias = torch.nn.Conv2d | torch.nn.ConvTranspose2d  # a layer whose bias can set the output level


def _bias(conv: _Conv) -> torch.Tensor:
    if conv.bias is None:
        raise ValueError(f"{conv}: an output convolution without a bias")
    return conv.bias


def _output_convs(model: torch.nn.Module, name: str, out_channels: int) -> list[_Conv]:
    """The convolutions whose biases set the output logits' starting level.

    Every conv producing ``out_channels`` maps has its bias zeroed first (MONAI's UNet adds
    two at its top residual unit: conv path + 1x1 residual), then the prior goes on the last
    one (the output layer, registered last), and for DynUNet also on each deep-supervision head.
    """
    convs = [
        m for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.out_channels == out_channels
        and m.bias is not None
    ]  # fmt: skip
    if not convs:
        raise ValueError(f"model.name {name}: no output convolution with a bias to initialise")
    for conv in convs:
        torch.nn.init.zeros_(_bias(conv))
    heads: list[_Conv] = [convs[-1]]
    if name == "dynunet":
        heads = [
            m for part in (model.output_block, *getattr(model, "deep_supervision_heads", []))
            for m in part.modules() if isinstance(m, torch.nn.Conv2d)
        ]  # fmt: skip
    return heads


def init_output_prior(model: torch.nn.Module, name: str, out_channels: int, prior: float) -> None:
    """Set the output bias so a fresh network predicts probability ``prior`` everywhere."""
    if not 0 < prior < 1:
        raise ValueError(f"model.output_prior must be in (0, 1) (0 = off), got {prior}")
    logit = math.log(prior / (1 - prior))
    with torch.no_grad():
        for conv in _output_convs(model, name, out_channels):
            _bias(conv).fill_(logit)


def size_divisor(cfg: ModelConfig) -> int:
    """Input height/width must be a multiple of this: the product of ``model.strides`` (every architecture)."""
    _check(cfg)
    return math.prod(cfg.strides)
