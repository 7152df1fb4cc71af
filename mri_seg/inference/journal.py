"""``predictions.csv`` and its journals: resuming a folder inference and merging its rows.

Crashes and kills: each rank appends every finished scan's row to its journal
``OUT/.predictions.part-<rank>.jsonl`` (one JSON line, flushed and fsynced), so a run
killed at any point leaves the rows of the scans it finished; the same command again
reads them (:func:`previous_rows`) and skips those scans (:func:`can_skip`). Rank 0
merges every rank's rows into ``predictions.csv`` (:func:`merge_rows`, sorted by path)
and removes the journals.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any, cast

import pandas as pd

from mri_seg.config import InferConfig
from mri_seg.inference.provenance import PROVENANCE
from mri_seg.io.registry import OutputPaths
from mri_seg.utils.atomic import DISK_FULL, DiskFullError, atomic_write_csv

PREDICTIONS = "predictions.csv"
COLUMNS = [
    "path", "format", "shape", "tumour_pixels", "tumour_volume_mm3", "slices_with_tumour",
    "seconds", "status", "message", "warnings", "sequences", "uncertainty", "review_flag", "checkpoints",
    "checkpoint_sha256", "settings_hash", "input_stamp", "series", "series_reason",
]  # fmt: skip
DICE_COLUMN = "dice"
REUSED = "_reused"  # marks a row kept from the previous run (counted, never written)
Row = dict[str, Any]


def empty_row(with_truth: bool) -> Row:
    """A row with every column blank (``dice`` too with ``--with-truth``)."""
    row: Row = {c: "" for c in COLUMNS}
    if with_truth:
        row[DICE_COLUMN] = ""
    return row


def part_path(out_dir: Path, rank: int) -> Path:
    """Rank ``rank``'s journal."""
    return out_dir / f".predictions.part-{rank}.jsonl"


def read_rows(path: Path) -> list[Row]:
    """Rows of ``predictions.csv`` or of a journal (a line cut short by a kill is ignored)."""
    if path.suffix == ".jsonl":
        rows = []
        with contextlib.suppress(OSError):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    row = json.loads(line)
                    if isinstance(row, dict):
                        rows.append({k: "" if v is None else str(v) for k, v in row.items()})
        return rows
    try:
        return cast(list[Row], pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records"))
    except Exception:  # unreadable previous table: recompute instead
        return []


def journals(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob(".predictions.part-*.jsonl"))


def previous_rows(out_dir: Path) -> dict[str, Row]:
    """Rows of an earlier run (``predictions.csv``, then the journals of an interrupted one)."""
    rows: dict[str, Row] = {}
    for path in [out_dir / PREDICTIONS, *journals(out_dir)]:
        if path.is_file():
            rows.update({r["path"]: r for r in read_rows(path) if "path" in r})
    return rows


class Journal:
    """Append-only log of finished rows: a kill loses at most the scan in progress."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def append(self, row: Row) -> None:
        try:
            if self._fh is None:
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps({k: ("" if v is None else v) for k, v in row.items()}, default=str) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise DiskFullError(self.path, exc) from exc
            raise

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def can_skip(
    previous: Row | None, paths: OutputPaths, cfg: InferConfig, with_truth: bool, made_by: dict[str, str],
    page: Path | None = None,
) -> bool:  # fmt: skip
    """Keep a scan only when its previous ``ok`` row was made by the same checkpoint, settings
    and input (``made_by``) and its outputs all exist (``page``: its report page, when asked for)."""
    if cfg.overwrite or previous is None or previous.get("status") != "ok":
        return False
    if any(not made_by[k] or previous.get(k, "") != made_by[k] for k in PROVENANCE):
        return False
    if not all(p.is_file() for p in paths.all(cfg.save_probabilities)):
        return False
    if page is not None and not page.is_file():  # report asked for, page missing: redo the scan
        return False
    return not with_truth or previous.get(DICE_COLUMN, "") != ""


def merge_rows(out_dir: Path, mine: list[Row], rank: int, world_size: int, planned: set[str], extra: list[Row]) -> list[Row]:
    """Every rank's rows of this run: the other ranks' journals, then ``mine`` (this rank's),
    then ``extra`` (rows of folders discovery could not search), one per path.

    Rows of paths outside ``planned`` (left from an earlier run over other inputs) are dropped,
    folder rows kept.
    """
    by_path: dict[str, Row] = {}
    for other in range(world_size):
        if other != rank:
            by_path.update({r["path"]: r for r in read_rows(part_path(out_dir, other)) if "path" in r})
    by_path.update({str(r["path"]): r for r in mine})
    by_path.update({str(r["path"]): r for r in extra})
    keep = planned | {str(r["path"]) for r in mine}
    return [r for p, r in by_path.items() if p in keep or r.get("format") == "folder"]


def write_table(path: Path, rows: list[Row], with_truth: bool) -> None:
    """``predictions.csv``: the columns in order, rows sorted by path."""
    columns = COLUMNS + ([DICE_COLUMN] if with_truth else [])
    frame = pd.DataFrame(rows, columns=columns).fillna("")
    atomic_write_csv(path, frame.sort_values("path", kind="stable").reset_index(drop=True))


def remove_journals(out_dir: Path) -> None:
    """After the merge: this run's journals and an interrupted earlier run's."""
    for leftover in [*journals(out_dir), *out_dir.glob(".predictions.part-*.csv")]:
        leftover.unlink(missing_ok=True)


def status_counts(rows: list[Row]) -> dict[str, int]:
    """Counts of ``ok`` / ``error`` rows, and ``reused``: ok rows kept unchanged from the previous run."""
    statuses = [str(r.get("status", "")) for r in rows]
    counts = {s: statuses.count(s) for s in ("ok", "error")}
    counts["reused"] = sum(1 for r in rows if r.get(REUSED))
    return counts
