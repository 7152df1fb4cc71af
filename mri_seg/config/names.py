"""The names a config key may take where another module implements them: one copy each.

The config layer declares each list here and the implementing module imports it (never the
reverse, so ``mri_seg.config`` loads no model code): a name added here without code behind
it fails the implementing module's own check, and the config's rule, the implementation and
the reference page (``docs/reference/config.md``) can never list different names.
"""

from __future__ import annotations

from collections.abc import Sequence

from mri_seg.utils.device import DEVICES

__all__ = [
    "ALIASES", "ARCHITECTURES", "BACKENDS", "BACKGROUNDS", "BLENDS", "DEVICES", "INPUT_NAMES", "INPUT_SEQUENCES", "LOSSES", "MODEL_NAMES",
    "NORMALISATION_METHODS", "NORMS", "SCHEDULERS", "SHIP_CHOICES", "SPLITS", "canonical", "parse_names",
]  # fmt: skip

LOSSES = ("dice_bce", "tversky_bce", "dice_focal")  # train.loss: mri_seg.losses
ARCHITECTURES = ("unet", "attention_unet", "segresnet", "dynunet")  # model.name: mri_seg.models.factory
NORMS = ("batch", "instance")  # model.norm: MONAI's norm layer names
NORMALISATION_METHODS = ("zscore_nonzero", "zscore_volume", "zscore_head")  # data.normalisation: mri_seg.preprocess
SCHEDULERS = ("cosine", "plateau")  # train.scheduler: mri_seg.training.optim
SHIP_CHOICES = ("best", "last")  # train.ship_checkpoint: mri_seg.training.checkpoint
SPLITS = ("train", "val", "test")  # eval.split: mri_seg.data.manifest
INPUT_SEQUENCES = ("all", "flair_only")  # eval.input_sequences: mri_seg.evaluation
BACKENDS = ("torch", "onnxruntime")  # infer.backend: mri_seg.inference.backends (what runs the forward passes)
BLENDS = ("gaussian", "constant")  # infer.blend: mri_seg.inference (sliding-window tile weights)
BACKGROUNDS = ("border", "zero")  # infer.background: mri_seg.preprocess.border_background

# MRI sequence names (infer.sequences, infer.nnunet_channels, a checkpoint's record); what each
# name means and how inputs map to the model's order: mri_seg.io.sequences.
MODEL_NAMES = ("pre", "flair", "post")  # what a model can take
INPUT_NAMES = (*MODEL_NAMES, "t2")  # what an input may declare (t2 is read past)
ALIASES = {
    "pre": "pre", "t1": "pre", "t1w": "pre", "pre-contrast": "pre", "precontrast": "pre",
    "flair": "flair", "t2flair": "flair", "t2-flair": "flair",
    "post": "post", "t1ce": "post", "t1gd": "post", "t1c": "post", "post-contrast": "post", "postcontrast": "post",
    "t2": "t2", "t2w": "t2",
}  # fmt: skip


def canonical(name: str) -> str | None:
    """Canonical sequence name of ``name`` (case-insensitive, aliases allowed), else None."""
    return ALIASES.get(str(name).strip().lower())


def parse_names(values: Sequence[str], key: str, allowed: tuple[str, ...] = INPUT_NAMES) -> tuple[str, ...]:
    """Validate a declared list of sequence names (a config key or a checkpoint record).

    Raises ValueError naming ``key`` for an unknown name, a duplicate, or an empty list.
    """
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{key} must be a non-empty list of sequence names, got {values!r}")
    names = []
    for value in values:
        name = canonical(value)
        if name is None or name not in allowed:
            known = ", ".join(a for a, c in ALIASES.items() if c in allowed)
            raise ValueError(f"{key}: unknown sequence name {value!r} (known: {known})")
        if name in names:
            raise ValueError(f"{key}: sequence {value!r} listed twice ({list(values)})")
        names.append(name)
    return tuple(names)

COMPONENT_RULES = ("size", "mass", "bright")  # postprocess.component_rule: mri_seg.postprocess
