"""The valid range or set of every config key, in one table (:data:`RULES`).

:func:`mri_seg.config.config_from_dict` checks every resolved config against it, so each
stage refuses a bad value before any work, with one line naming the key, the value and
what is allowed (``config key 'train.epochs' is -1; allowed: an integer >= 1``).
A test asserts that every leaf key of :class:`mri_seg.config.Config` has a rule here:
whoever adds a config key adds its rule in the same commit. Checks that involve several
keys (split fractions summing to 1, one stride per UNet level) are in :data:`CROSS_RULES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Rule:
    """What values one key allows; ``check`` returns the allowed-text when ``value`` is outside it."""

    def ok(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def allowed(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, value: Any) -> str | None:
        return None if self.ok(value) else self.allowed()

    def detail(self, value: Any) -> str:
        """More about why ``value`` fails (appended to the message); empty for most rules."""
        return ""


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Range(Rule):
    """A number in an interval; ``lo_open``/``hi_open`` exclude the end points."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"{kind} in {left}{_num(self.lo)}, {_num(self.hi)}{right}"
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{kind} {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return f"{kind} (finite)"


@dataclass(frozen=True)
class OneOf(Rule):
    """One value of a fixed set (strings, or small integer codes)."""

    values: tuple

    def ok(self, value: Any) -> bool:
        return not isinstance(value, bool) and value in self.values

    def allowed(self) -> str:
        return "one of " + ", ".join(str(v) for v in self.values)


@dataclass(frozen=True)
class Flag(Rule):
    """true or false (the type check already enforces it; listed so every key has a rule)."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)

    def allowed(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class ListOf(Rule):
    """A list whose items each follow ``item``, with a length range; ``ordered``: non-decreasing."""

    item: Rule
    min_len: int = 0
    max_len: int | None = None
    ordered: bool = False

    def ok(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)):
            return False
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            return False
        if not all(self.item.ok(v) for v in value):
            return False
        return not self.ordered or all(a <= b for a, b in zip(value, value[1:]))

    def allowed(self) -> str:
        if self.max_len == self.min_len:
            size = f"{self.min_len}"
        elif self.max_len is None:
            size = f"{self.min_len} or more"
        else:
            size = f"{self.min_len} to {self.max_len}"
        order = ", in non-decreasing order" if self.ordered else ""
        return f"a list of {size} items, each {self.item.allowed()}{order}"


@dataclass(frozen=True)
class Either(Rule):
    """Any of several rules (e.g. ``0`` meaning "off", or a value >= 2)."""

    options: tuple[Rule, ...]

    def ok(self, value: Any) -> bool:
        return any(r.ok(value) for r in self.options)

    def allowed(self) -> str:
        return " or ".join(r.allowed() for r in self.options)


@dataclass(frozen=True)
class SequenceNames(Rule):
    """A non-empty list of distinct MRI sequence names (aliases allowed: t1, t1ce, t2w...)."""

    def ok(self, value: Any) -> bool:
        from mri_seg.io.sequences import parse_names

        try:
            parse_names(value, "value")
        except ValueError:
            return False
        return True

    def allowed(self) -> str:
        return "a non-empty list of distinct sequence names"

    def detail(self, value: Any) -> str:
        from mri_seg.io.sequences import parse_names

        try:
            parse_names(value, "value")
        except ValueError as exc:
            return str(exc).removeprefix("value: ").removeprefix("value ")
        return ""


def _normalisation_methods() -> tuple[str, ...]:
    from mri_seg.preprocess import NORMALISATIONS

    return tuple(NORMALISATIONS)


PROBABILITY = Range(0.0, 1.0)
FRACTION_BELOW_ONE = Range(0.0, 1.0, hi_open=True)
POSITIVE = Range(0.0, lo_open=True)
NON_NEGATIVE = Range(0.0)
COUNT = Range(1, integer=True)  # at least one
COUNT_OR_ZERO = Range(0, integer=True)
SEED = Range(0, 2**32 - 1, integer=True)  # numpy seeds are unsigned 32-bit
DEVICES = ("auto", "cpu", "cuda")
LOSSES = ("dice_bce", "tversky_bce", "dice_focal")  # = mri_seg.losses.LOSSES (not imported: it loads torch)
ARCHITECTURES = ("unet", "attention_unet", "segresnet", "dynunet")  # = mri_seg.models.factory.ARCHITECTURES
INPUT_SEQUENCES = ("all", "flair_only")  # = mri_seg.evaluation.INPUT_SEQUENCES

# Why these ranges: each is the set of values the code using the key handles correctly;
# the comments of mri_seg/config.py say what each key does.
RULES: dict[str, Rule] = {
    "data.image_size": Range(8, 65536, integer=True),
    "data.scale": Range(0.0, 8.0, lo_open=True),
    "data.normalisation": OneOf(_normalisation_methods()),
    "data.context_slices": Range(0, 16, integer=True),  # 2.5D neighbours each side
    "data.cache_in_memory": Flag(),
    "data.num_workers": COUNT_OR_ZERO,
    "prepare.workers": COUNT_OR_ZERO,
    "prepare.strict": Flag(),
    "split.seed": SEED,
    "split.train": PROBABILITY,
    "split.val": PROBABILITY,
    "split.test": PROBABILITY,
    "split.n_folds": Either((OneOf((0,)), Range(2, integer=True))),
    "split.tumour_bins": COUNT,
    "augment.enabled": Flag(),
    "augment.hflip_p": PROBABILITY,
    "augment.missing_sequence_p": PROBABILITY,
    "augment.affine.p": PROBABILITY,
    "augment.affine.scale": ListOf(POSITIVE, 2, 2, ordered=True),
    "augment.affine.rotate": Range(0.0, 180.0),
    "augment.affine.translate": FRACTION_BELOW_ONE,
    "augment.elastic.p": PROBABILITY,
    "augment.elastic.alpha": NON_NEGATIVE,
    "augment.elastic.sigma": POSITIVE,
    "augment.intensity.p": PROBABILITY,
    "augment.intensity.brightness": PROBABILITY,
    "augment.intensity.contrast": PROBABILITY,
    "augment.intensity.gamma": ListOf(POSITIVE, 2, 2, ordered=True),
    "augment.intensity.noise_std": ListOf(PROBABILITY, 2, 2, ordered=True),
    "augment.intensity.noise_p": PROBABILITY,
    "model.name": OneOf(ARCHITECTURES),
    "model.in_channels": COUNT,
    "model.out_channels": OneOf((1,)),  # one tumour logit: sigmoid BCE + Dice
    "model.channels": ListOf(COUNT, 2),
    "model.strides": ListOf(COUNT, 1),
    "model.num_res_units": COUNT_OR_ZERO,
    "model.norm": OneOf(("batch", "instance")),
    "model.dropout": FRACTION_BELOW_ONE,
    "model.deep_supervision": COUNT_OR_ZERO,
    "model.blocks_down": ListOf(COUNT),
    "model.output_prior": FRACTION_BELOW_ONE,
    "train.epochs": COUNT,
    "train.batch_size": COUNT,
    "train.lr": Range(0.0, 10.0, lo_open=True),
    "train.weight_decay": NON_NEGATIVE,
    "train.scheduler": OneOf(("cosine", "plateau")),
    "train.warmup_epochs": COUNT_OR_ZERO,
    "train.grad_clip": NON_NEGATIVE,
    "train.seed": SEED,
    "train.device": OneOf(DEVICES),
    "train.amp": Flag(),
    "train.channels_last": Flag(),
    "train.val_every": COUNT,
    "train.early_stop_patience": COUNT_OR_ZERO,
    "train.tumour_oversample": PROBABILITY,
    "train.loss": OneOf(LOSSES),
    "train.bce_weight": NON_NEGATIVE,
    "train.dice_weight": NON_NEGATIVE,
    "train.dice_batch": Flag(),
    "train.tversky_alpha": NON_NEGATIVE,
    "train.tversky_beta": NON_NEGATIVE,
    "train.focal_gamma": NON_NEGATIVE,
    "train.max_time_minutes": NON_NEGATIVE,
    "train.ship_checkpoint": OneOf(("best", "last")),
    "eval.split": OneOf(("train", "val", "test")),
    "eval.postprocess.threshold": PROBABILITY,
    "eval.postprocess.min_component_pixels": COUNT_OR_ZERO,
    "eval.postprocess.tta_flip": Flag(),
    "eval.postprocess.min_component_voxels": COUNT_OR_ZERO,
    "eval.postprocess.largest_only": Flag(),
    "eval.postprocess.threshold_from_cv": Flag(),
    "eval.input_sequences": OneOf(INPUT_SEQUENCES),
    "eval.bootstrap_samples": COUNT,
    "eval.montage_slices": COUNT,
    "eval.batch_size": COUNT,
    "eval.review.threshold": PROBABILITY,  # uncertainty scores are in [0, 1]
    "eval.patient_pages": Flag(),
    "infer.tile_size": Either((OneOf((0,)), Range(8, integer=True))),  # 0: the training size
    "infer.overlap": FRACTION_BELOW_ONE,
    "infer.tile_batch": COUNT,
    "infer.blend": OneOf(("gaussian", "constant")),
    "infer.nifti_axis": OneOf(("auto", 0, 1, 2)),
    "infer.sequences": SequenceNames(),
    "infer.nnunet_channels": SequenceNames(),
    "infer.save_probabilities": Flag(),
    "infer.overwrite": Flag(),
    "infer.postprocess.threshold": PROBABILITY,
    "infer.postprocess.min_component_pixels": COUNT_OR_ZERO,
    "infer.postprocess.tta_flip": Flag(),
    "infer.postprocess.min_component_voxels": COUNT_OR_ZERO,
    "infer.postprocess.largest_only": Flag(),
    "infer.postprocess.threshold_from_cv": Flag(),
    "infer.review.threshold": PROBABILITY,
    "infer.report": Flag(),
}


def _split_sum(v: dict[str, Any]) -> str | None:
    s = v["split"]
    total = s["train"] + s["val"] + s["test"]
    if abs(total - 1.0) > 1e-6:
        return f"config keys split.train + split.val + split.test sum to {total:g}; allowed: a sum of 1"
    if s["train"] <= 0:
        return "config key 'split.train' is 0; allowed: a number > 0 (training needs patients)"
    return None


def _unet_levels(v: dict[str, Any]) -> str | None:
    m = v["model"]
    if len(m["strides"]) != len(m["channels"]) - 1:
        return (f"config key 'model.strides' has {len(m['strides'])} entries for {len(m['channels'])} "
                f"model.channels; allowed: len(model.channels) - 1 = {len(m['channels']) - 1} entries")  # fmt: skip
    return None


def _loss_weights(v: dict[str, Any]) -> str | None:
    t = v["train"]
    if t["bce_weight"] == 0 and t["dice_weight"] == 0:
        return "config keys train.bce_weight and train.dice_weight are both 0; allowed: at least one > 0"
    return None


def _tversky_weights(v: dict[str, Any]) -> str | None:
    t = v["train"]
    if t["loss"] == "tversky_bce" and t["tversky_alpha"] == 0 and t["tversky_beta"] == 0:
        return "config keys train.tversky_alpha and train.tversky_beta are both 0; allowed: at least one > 0"
    return None


CROSS_RULES: tuple[Callable[[dict[str, Any]], str | None], ...] = (
    _split_sum, _unet_levels, _loss_weights, _tversky_weights,
)  # fmt: skip


def leaf_items(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a nested config dict, in declaration order."""
    out = []
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else key
        out += leaf_items(value, full) if isinstance(value, dict) else [(full, value)]
    return out


def config_violations(values: dict[str, Any]) -> list[str]:
    """One line per key whose value breaks its rule (then the cross-key rules); empty when valid."""
    problems = []
    for key, value in leaf_items(values):
        rule = RULES.get(key)
        if rule is None:
            problems.append(f"config key '{key}' has no validation rule in mri_seg/config_rules.py (a bug)")
            continue
        allowed = rule.check(value)
        if allowed is not None:
            detail = rule.detail(value)
            problems.append(f"config key '{key}' is {value!r}; allowed: {allowed}" + (f" ({detail})" if detail else ""))
    if not problems:
        problems += [p for p in (check(values) for check in CROSS_RULES) if p]
    return problems
