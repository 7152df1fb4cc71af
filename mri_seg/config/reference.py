"""The config reference page, generated from the key declarations (:mod:`mri_seg.config.schema`).

    python -m mri_seg.config.reference > docs/reference/config.md

A test fails when the committed page differs from what this prints.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from typing import Any

from mri_seg.config import Config
from mri_seg.config.rules import Key, declared_keys, sections

REGENERATE = "python -m mri_seg.config.reference > docs/reference/config.md"


def type_name(tp: Any) -> str:
    """``int``, ``list[float]``, ``int | str``: an annotation as a recipe author reads it."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(type_name(t) for t in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"list[{type_name(typing.get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def yaml_value(value: Any) -> str:
    """A default as it is written in a recipe (YAML flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return str(value)


def _cell(text: str) -> str:
    """Table-safe: ``|`` would end the cell, ``<split>`` would read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _row(key: Key, prefix: str) -> str:
    rule = key.rule.allowed() if key.rule is not None else "(no rule)"
    name = key.name.removeprefix(prefix + ".")
    cells = [f"`{name}`", f"`{type_name(key.type)}`", f"`{yaml_value(key.default)}`", rule, key.doc]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render(root: type = Config) -> str:
    """The whole page, one table per section (keys in declaration order)."""
    keys = declared_keys(root)
    lines = [
        "# Config reference",
        "",
        "<!-- generated from mri_seg/config/schema.py; do not edit: regenerate with",
        f"     {REGENERATE} -->",
        "",
        "Every key of a recipe (`configs/*.yaml`) or a `--set key.path=value` override, with its type,",
        "default and allowed values. A recipe only needs the keys it changes. A value outside the allowed",
        "set stops a stage before any work, with one line naming the key (exit 2). Checks of several",
        "keys at once: the split fractions sum to 1; `model.strides` has `len(model.channels) - 1`",
        "entries; `train.bce_weight` and `train.dice_weight` are not both 0; with `train.loss: tversky_bce`,",
        "`train.tversky_alpha` and `train.tversky_beta` are not both 0.",
    ]
    for name, cls in sections(root):
        own = [k for k in keys if k.section is cls and k.name.rsplit(".", 1)[0] == name]
        if not own:
            continue
        doc = inspect.getdoc(cls) or ""
        lines += ["", f"## `{name}`", ""]
        lines += [doc, ""] if doc else []
        lines += ["| key | type | default | allowed | what it does |", "|---|---|---|---|---|"]
        lines += [_row(k, name) for k in own]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
