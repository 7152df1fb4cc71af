"""Typed configuration: YAML recipes in ``configs/`` loaded into dataclasses.

One config object (:class:`Config`) carries every stage's settings. A recipe file
only needs the keys it changes; everything else takes its declared default.
Command-line overrides use dotted paths: ``--set train.epochs=3``. Unknown keys,
in a file or an override, raise :class:`ConfigError` naming the key; so does a value outside
the key's valid range or set.

Each key is declared once, in :mod:`mri_seg.config.schema`: type, default, rule (its valid
range or set) and a one-line doc. The check and the reference page
``docs/reference/config.md`` (``python -m mri_seg.config.reference``) are read from those
declarations. Names that other modules implement (losses, architectures...) are declared in
:mod:`mri_seg.config.names`, which those modules import.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mri_seg.config.rules import Rule, declared_keys, violations
from mri_seg.config.schema import (
    CROSS_RULES,
    AffineConfig,
    AugmentConfig,
    DataConfig,
    DicomConfig,
    ElasticConfig,
    EvalConfig,
    InferConfig,
    IntensityConfig,
    ModelConfig,
    PostprocessConfig,
    PrepareConfig,
    ReviewConfig,
    SplitConfig,
    TrainConfig,
)
from mri_seg.errors import StageError
from mri_seg.utils.atomic import atomic_write_text

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "AffineConfig", "AugmentConfig", "Config", "ConfigError", "DataConfig", "DicomConfig", "ElasticConfig", "EvalConfig",
    "InferConfig", "IntensityConfig", "ModelConfig", "PostprocessConfig", "PrepareConfig", "ReviewConfig",
    "SplitConfig", "TrainConfig", "CROSS_RULES", "RULES", "config_from_dict", "config_to_dict", "config_violations",
    "dump_config", "explicit_values", "get_dotted", "load_config", "merge_values", "parse_override",
    "save_resolved_config", "set_dotted", "validate_config",
]  # fmt: skip


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_MISSING = object()


class ConfigError(StageError, ValueError):
    """A config file or override is invalid (unknown key, wrong type, value outside its rule)."""


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
        return _build(typing.cast(type, tp), value, key)
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


def config_to_dict(cfg: DataclassInstance) -> dict[str, Any]:
    """A :class:`Config`, or one of its sections (e.g. an :class:`InferConfig`), as nested plain dicts."""
    return dataclasses.asdict(cfg)


def config_from_dict(values: dict[str, Any], validate: bool = True) -> Config:
    """Build and validate: every value must follow its declared rule (see :func:`config_violations`).

    ``validate=False`` checks keys and types only (for a partial config that is merged
    into another one, which is validated after the merge).
    """
    cfg = _build(Config, values)
    if validate:
        validate_config(cfg)
    return cfg


# key -> its rule, read from the declarations (for the check; not a second declaration)
RULES: dict[str, Rule | None] = {key.name: key.rule for key in declared_keys(Config)}


def config_violations(values: dict[str, Any]) -> list[str]:
    """One line per key of the nested config dict ``values`` whose value breaks its declared rule
    (then the :data:`CROSS_RULES`); empty when valid."""
    return violations(values, RULES, CROSS_RULES)


def validate_config(cfg: Config) -> None:
    """Raise :class:`ConfigError` (one line: key, value, what is allowed) for the first bad value."""
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
        for depth in range(1, len(keys)):
            if not isinstance(get_dotted(values, ".".join(keys[:depth])), dict):
                raise ConfigError(f"unknown config key '{'.'.join(keys[:depth])}' in override '{text}'")
        if get_dotted(values, ".".join(keys), _MISSING) is _MISSING:
            raise ConfigError(f"unknown config key '{'.'.join(keys)}' in override '{text}'")
        set_dotted(values, ".".join(keys), value)
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
