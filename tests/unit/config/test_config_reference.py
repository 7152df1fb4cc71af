"""docs/reference/config.md is generated from the key declarations and kept up to date."""

from __future__ import annotations

from pathlib import Path

from mri_seg.config import Config
from mri_seg.config.reference import REGENERATE, render, type_name, yaml_value
from mri_seg.config.rules import declared_keys

PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "config.md"


def test_committed_page_is_up_to_date():
    assert PAGE.is_file(), f"docs/reference/config.md is missing; generate it with: {REGENERATE}"
    assert PAGE.read_text() == render(), f"docs/reference/config.md is out of date; regenerate it with: {REGENERATE}"


def test_page_lists_every_key_with_its_default_rule_and_doc():
    page = render()
    for key in declared_keys(Config):
        section, name = key.name.rsplit(".", 1)
        assert f"## `{section}`" in page
        row = next(line for line in page.splitlines()[page.splitlines().index(f"## `{section}`"):]
                   if line.startswith(f"| `{name}` |"))  # fmt: skip
        assert f"`{yaml_value(key.default)}`" in row and key.rule is not None and key.rule.allowed() in row
        assert key.doc.replace("|", "\\|").replace("<", "&lt;") in row


def test_types_and_defaults_read_as_in_a_recipe():
    assert type_name(int) == "int" and type_name(list[float]) == "list[float]" and type_name(int | str) == "int | str"
    assert yaml_value(True) == "true" and yaml_value([0.9, 1.1]) == "[0.9, 1.1]" and yaml_value("auto") == "auto"
    assert yaml_value([]) == "[]"
