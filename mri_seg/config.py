"""Typed configuration: YAML recipes in ``configs/`` loaded into dataclasses.

One config object (:class:`Config`) carries every stage's settings. A recipe file
only needs the keys it changes; everything else takes the defaults below.
Command-line overrides use dotted paths: ``--set train.epochs=3``. Unknown keys,
in a file or an override, raise :class:`ConfigError` naming the key; so does a value outside
the key's valid range or set (the table in :mod:`mri_seg.config_rules`).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mri_seg.errors import StageError
from mri_seg.utils.atomic import atomic_write_text


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(StageError, ValueError):
    """A config file or override is invalid (unknown key, wrong type, value outside its rule)."""


@dataclass
class DataConfig:
    image_size: int = 256  # native slice size of the Kaggle dataset
    scale: float = 1.0  # resampling factor applied to slices before the model (0.5: 256 -> 128)
    # z-score of each channel over its non-zero pixels: zscore_nonzero per slice | zscore_volume per patient volume
    normalisation: str = "zscore_nonzero"
    context_slices: int = 0  # 2.5D: k neighbours each side as extra channels (0 = 2D); model.in_channels = C*(2k+1)
    cache_in_memory: bool = True
    num_workers: int = 2


@dataclass
class PrepareConfig:
    workers: int = 2
    strict: bool = False


@dataclass
class SplitConfig:
    seed: int = 42
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    n_folds: int = 0  # >1: also assign a cross-validation `fold` to train+val patients
    tumour_bins: int = 3  # quantile bins of tumour pixel total used for stratification


@dataclass
class AffineConfig:
    p: float = 0.5
    scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    rotate: float = 15.0  # degrees, symmetric
    translate: float = 0.0625  # fraction of image size, symmetric


@dataclass
class ElasticConfig:
    p: float = 0.2
    alpha: float = 30.0
    sigma: float = 6.0


@dataclass
class IntensityConfig:
    p: float = 0.3
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: list[float] = field(default_factory=lambda: [80.0, 120.0])  # albumentations' percent units
    noise_std: list[float] = field(default_factory=lambda: [0.0, 0.03])  # fraction of max value
    noise_p: float = 0.2


@dataclass
class AugmentConfig:
    enabled: bool = True
    hflip_p: float = 0.5
    missing_sequence_p: float = 0.15  # copy FLAIR over pre/post-contrast, as the dataset does for missing ones
    affine: AffineConfig = field(default_factory=AffineConfig)
    elastic: ElasticConfig = field(default_factory=ElasticConfig)
    intensity: IntensityConfig = field(default_factory=IntensityConfig)


@dataclass
class ModelConfig:
    name: str = "unet"  # unet | attention_unet | segresnet | dynunet (MONAI; see mri_seg/models/factory.py)
    in_channels: int = 3
    out_channels: int = 1
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])  # per level (segresnet: doubling)
    strides: list[int] = field(default_factory=lambda: [2, 2, 2, 2])  # between levels (segresnet: all 2)
    num_res_units: int = 2  # unet: residual units per block; dynunet: > 0 = residual blocks
    norm: str = "batch"  # unet, segresnet, dynunet (attention_unet: always batch)
    dropout: float = 0.0
    deep_supervision: int = 2  # dynunet: auxiliary output heads in training (0 = off, < len(strides))
    blocks_down: list[int] = field(default_factory=list)  # segresnet: residual blocks per level; [] = 1,2,2,4,4...
    output_prior: float = 0.01  # initial tumour probability of every pixel (output bias); 0 = MONAI's init


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine (with linear warm-up) | plateau
    warmup_epochs: int = 1
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision on CUDA only
    channels_last: bool = True  # CUDA only
    val_every: int = 1
    early_stop_patience: int = 0  # epochs without val improvement; 0 disables
    tumour_oversample: float = 0.0  # target fraction of tumour slices per epoch; 0 = natural
    loss: str = "dice_bce"  # dice_bce | tversky_bce | dice_focal (see mri_seg/losses.py)
    bce_weight: float = 1.0  # weight of the pixel term: BCE (dice_bce, tversky_bce) or focal loss (dice_focal)
    dice_weight: float = 1.0  # weight of the overlap term: soft Dice, or Tversky for tversky_bce
    dice_batch: bool = True  # overlap term over the whole batch (true) or the mean over images (false)
    tversky_alpha: float = 0.5  # tversky_bce: weight of false positives
    tversky_beta: float = 0.5  # tversky_bce: weight of false negatives (> alpha fights under-segmentation)
    focal_gamma: float = 2.0  # dice_focal: focusing exponent of the focal loss (0 = BCE)
    # safety cap (minutes) on one invocation's wall time: training stops after an epoch when the next
    # would overrun it, says so, and stays unfinished (resumable); it never shapes the LR schedule. 0: none
    max_time_minutes: float = 0.0
    # the deliverable: which file of RUN/checkpoints (or of each fold<K>/) `--checkpoint RUN/checkpoints`
    # means: best (the validation-selected epoch) | last (the end of the schedule)
    ship_checkpoint: str = "best"


@dataclass
class PostprocessConfig:
    threshold: float = 0.5
    min_component_pixels: int = 0  # remove connected components smaller than this (per slice)
    min_component_voxels: int = 0  # remove 3D components (26-connected, stacked slices) smaller than this
    largest_only: bool = False  # keep only the largest 3D component (drop all not connected to it)
    tta_flip: bool = False
    # given a run's checkpoints folder, use the threshold the cv stage chose on out-of-fold
    # predictions (RUN/checkpoints/postprocess.json) instead of `threshold`; --threshold turns it off
    threshold_from_cv: bool = True


@dataclass
class ReviewConfig:
    # Review flag (mri_seg/uncertainty.py): a scan/patient whose uncertainty score (0..1, mean of
    # the passes' entropy over the predicted region and their relative volume spread) exceeds
    # this is flagged for a person to check. Default chosen on lgg-dev: docs/review_flags.md.
    threshold: float = 0.3


@dataclass
class EvalConfig:
    split: str = "test"
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    bootstrap_samples: int = 2000
    montage_slices: int = 8
    batch_size: int = 16
    review: ReviewConfig = field(default_factory=ReviewConfig)
    patient_pages: bool = True  # write RUN/eval/<split>/patients/<patient>.html (slice viewer per patient)
    # all: the slices as read | flair_only: FLAIR copied into every channel, as inference does
    # for a single-sequence scan (measures the FLAIR-only figure on the same patients)
    input_sequences: str = "all"


@dataclass
class InferConfig:
    tile_size: int = 0  # 0 = the model's training size
    overlap: float = 0.5
    tile_batch: int = 8
    blend: str = "gaussian"
    # NIfTI slicing: "auto" reorients a volume from its affine to the training layout (axial slices,
    # rows anterior->posterior, columns patient right->left); 0/1/2 slices that stored array axis as is
    nifti_axis: int | str = "auto"
    # the sequences in a 4D NIfTI's last axis, in order (names: pre, flair, post, t2; aliases t1, t1ce...);
    # default: the Kaggle TIFF channels as OpenCV reads them; [pre, flair, post] is the natural order
    sequences: list[str] = field(default_factory=lambda: ["post", "flair", "pre"])
    # what nnU-Net-named files <case>_0000, _0001, ... hold (default: the MSD/nnU-Net BrainTumour order)
    nnunet_channels: list[str] = field(default_factory=lambda: ["flair", "pre", "post", "t2"])
    save_probabilities: bool = False
    overwrite: bool = False
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    report: bool = True  # write OUT/report.html (sortable scan table, a slice-viewer page per scan)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    infer: InferConfig = field(default_factory=InferConfig)


# --------------------------------------------------------------------------- building


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotated type ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # e.g. int | str: the first type that accepts the value
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc).split(" must be ", 1)[-1].split(", got")[0])
        raise ConfigError(f"config key '{key}' must be {' or '.join(errors)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads 1e-3 without a dot as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def get_dotted(tree: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at ``a.b.c`` of a nested dict, or ``default`` where a key is missing."""
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` of a nested dict in place; the parents must exist (KeyError otherwise)."""
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node[key]
    node[leaf] = value


def merge_values(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, recursively for nested mappings (inputs unchanged)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value read as YAML: ``3``, ``0.5``, ``true``, ``[1,2]``)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw.strip() else ""


def _read_mapping(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def explicit_values(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Only the keys a YAML file and ``key.path=value`` overrides set (file first), as a nested
    dict; for stages that layer them over another base than the defaults (a checkpoint's config).
    Validate with :func:`load_config` first."""
    tree = _read_mapping(path) if path is not None else {}
    for text in overrides or []:
        keys, value = parse_override(text)
        node: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            node = {key: node}
        tree = merge_values(tree, node)
    return tree


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(values: dict[str, Any], validate: bool = True) -> Config:
    """Build and validate: every value must follow its rule in :mod:`mri_seg.config_rules`.

    ``validate=False`` checks keys and types only (for a partial config that is merged
    into another one, which is validated after the merge).
    """
    cfg = _build(Config, values)
    if validate:
        validate_config(cfg)
    return cfg


def validate_config(cfg: Config) -> None:
    """Raise :class:`ConfigError` (one line: key, value, what is allowed) for the first bad value."""
    from mri_seg.config_rules import config_violations

    problems = config_violations(config_to_dict(cfg))
    if problems:
        raise ConfigError(problems[0])


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, validate: bool = True) -> Config:
    """Defaults, then the YAML file (if any), then each ``key.path=value`` override; validated (see above)."""
    values = config_to_dict(Config())
    if path is not None:
        loaded = _read_mapping(path)
        _build(Config, loaded)  # validate keys against the schema before merging
        values = merge_values(values, loaded)
    for text in overrides or []:
        keys, value = parse_override(text)
        node = values
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"unknown config key '{'.'.join(keys[: i + 1])}' in override '{text}'")
            node = node[key]
        if keys[-1] not in node:
            raise ConfigError(f"unknown config key '{'.'.join(keys)}' in override '{text}'")
        node[keys[-1]] = value
    return config_from_dict(values, validate)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_resolved_config(cfg: Config, run_dir: str | Path, stage: str) -> Path:
    """Write the config a stage ran with to ``RUN/config_<stage>.yaml`` (atomically).

    A header records the package version and git commit, so any result in the run
    directory can be traced to the code and settings that made it.
    """
    from mri_seg.utils.provenance import provenance

    header = "".join(f"# {key}: {value}\n" for key, value in provenance().items())
    path = Path(run_dir) / f"config_{stage}.yaml"
    atomic_write_text(path, f"# resolved config of stage '{stage}'\n{header}{dump_config(cfg)}")
    return path
