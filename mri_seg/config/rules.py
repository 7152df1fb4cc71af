"""How a config key is declared: :func:`setting` (default, rule, doc) and the rules it takes.

Each key of :class:`mri_seg.config.Config` is one dataclass field declared with
:func:`setting`, which stores the key's :class:`Rule` (its valid range or set) and a
one-line doc in the field's metadata; :func:`declared_keys` reads them back, for the check
(:func:`violations`) and for the reference page (:mod:`mri_seg.config.reference`). Every
stage refuses a bad value before any work, with one line naming the key, the value and
what is allowed (``config key 'train.epochs' is -1; allowed: an integer >= 1``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mri_seg.config.names import parse_names


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
        try:
            parse_names(value, "value")
        except ValueError:
            return False
        return True

    def allowed(self) -> str:
        return "a non-empty list of distinct sequence names"

    def detail(self, value: Any) -> str:
        try:
            parse_names(value, "value")
        except ValueError as exc:
            return str(exc).removeprefix("value: ").removeprefix("value ")
        return ""


@dataclass(frozen=True)
class SeriesRules(Rule):
    """A list of ``"<sequence>: <regular expression>"`` items (sequence names as in :class:`SequenceNames`)."""

    def ok(self, value: Any) -> bool:
        return self.detail(value) == "" and isinstance(value, (list, tuple))

    def allowed(self) -> str:
        return "a list of 'sequence: regular expression' items (e.g. 'flair: dark.?fluid')"

    def detail(self, value: Any) -> str:
        if not isinstance(value, (list, tuple)):
            return "not a list"
        for item in value:
            name, sep, pattern = str(item).partition(":")
            if not isinstance(item, str) or not sep:
                return f"{item!r} has no ':' between the sequence and the expression"
            try:
                parse_names([name.strip()], "value")
                re.compile(pattern.strip())
            except (ValueError, re.error) as exc:
                return f"{item!r}: {exc}"
        return ""


PROBABILITY = Range(0.0, 1.0)
FRACTION_BELOW_ONE = Range(0.0, 1.0, hi_open=True)
POSITIVE = Range(0.0, lo_open=True)
NON_NEGATIVE = Range(0.0)
COUNT = Range(1, integer=True)  # at least one
COUNT_OR_ZERO = Range(0, integer=True)
SEED = Range(0, 2**32 - 1, integer=True)  # numpy seeds are unsigned 32-bit

CrossRule = Callable[[dict[str, Any]], "str | None"]


# --------------------------------------------------------------------------- declaring a key


def setting(default: Any, rule: Rule, doc: str) -> Any:
    """One config key as a dataclass field: its default, the values it allows and a one-line doc.

    A list default is copied for every instance (``default_factory``), as dataclasses require.
    """
    metadata = {"rule": rule, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Key:
    """A declared config key, as :func:`declared_keys` reads it back."""

    name: str  # dotted: train.epochs
    type: Any  # the annotation: int, list[float], int | str
    default: Any
    rule: Rule | None  # None: declared without setting() (a bug the tests catch)
    doc: str
    section: type  # the dataclass that declares it


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def declared_keys(cls: type, prefix: str = "") -> list[Key]:
    """Every leaf key of the config dataclass ``cls`` (nested sections walked), in declaration order."""
    hints = typing.get_type_hints(cls)
    out: list[Key] = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += declared_keys(typing.cast(type, tp), name)
        else:
            out.append(Key(name, tp, _default(f), f.metadata.get("rule"), f.metadata.get("doc", ""), cls))
    return out


def sections(cls: type, prefix: str = "") -> list[tuple[str, type]]:
    """``(dotted name, dataclass)`` of every section below ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, type]] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            name = f"{prefix}.{f.name}" if prefix else f.name
            out += [(name, typing.cast(type, tp)), *sections(typing.cast(type, tp), name)]
    return out


# --------------------------------------------------------------------------- checking values


def leaf_items(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a nested config dict, in declaration order."""
    out = []
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else key
        out += leaf_items(value, full) if isinstance(value, dict) else [(full, value)]
    return out


def violations(values: dict[str, Any], rules: Mapping[str, Rule | None], cross: Iterable[CrossRule]) -> list[str]:
    """One line per key whose value breaks its rule (then the cross-key rules); empty when valid."""
    problems = []
    for key, value in leaf_items(values):
        rule = rules.get(key)
        if rule is None:
            problems.append(f"config key '{key}' has no validation rule in its declaration in mri_seg/config (a bug)")
            continue
        allowed = rule.check(value)
        if allowed is not None:
            detail = rule.detail(value)
            problems.append(f"config key '{key}' is {value!r}; allowed: {allowed}" + (f" ({detail})" if detail else ""))
    if not problems:
        problems += [p for p in (check(values) for check in cross) if p]
    return problems
