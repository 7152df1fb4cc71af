"""Folder inference: scans -> masks, overlays, ``predictions.csv`` (and a report).

The runner of :mod:`mri_seg.pipelines.infer`, in four parts, one module each:

- :mod:`~mri_seg.inference.plan`: what to read and where to write, refusing to write over an input;
- :mod:`~mri_seg.inference.segment`: one scan (read, predict, post-process, write) and its row;
- :mod:`~mri_seg.inference.journal`: the resume journal, the re-run decision and the table merge;
- :mod:`~mri_seg.inference.provenance`: what made a row (checkpoint, settings, input).

Report (``infer.report``): each scan's viewer page is written with its outputs, and the
index page by rank 0 after the merge, by the :class:`Report` the caller gives (rendering is
:mod:`mri_seg.reports.inference_report`'s job; :mod:`mri_seg.pipelines.infer` passes it).

Re-runs: every row records what made its mask (:mod:`mri_seg.inference.provenance`). A
re-run keeps a scan's previous row and files only when the checkpoint(s), the
mask-shaping settings and the input are unchanged and its outputs exist; anything else
(another model, threshold, TTA, tiling..., an edited input, a missing row) recomputes it.
``infer.overwrite`` recomputes everything. A run killed at any point leaves whole
outputs (every file is written atomically) and the journal rows of the scans it
finished; the same command again skips those scans and does the rest.

Sharding: under torchrun each rank takes its share (:mod:`mri_seg.inference.sharding`)
and rank 0 merges the journals into ``predictions.csv`` (sorted by path) after a barrier.
Folders discovery could not search are rank 0's rows (``error`` or ``skipped``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mri_seg.config import InferConfig
from mri_seg.inference.journal import (
    PREDICTIONS,
    REUSED,
    Journal,
    Row,
    can_skip,
    merge_rows,
    part_path,
    previous_rows,
    remove_journals,
    write_table,
)
from mri_seg.inference.plan import Plan
from mri_seg.inference.provenance import input_stamp, provenance_of
from mri_seg.inference.segment import PageWriter, segment_scan, unusable_row
from mri_seg.inference.sharding import Shard, barrier


@dataclass(frozen=True)
class Report:
    """The viewer pages of a folder inference (``infer.report``): where a scan's page is
    (``page_path(OUT, rel)``; a scan whose page is missing is redone), how it is written
    (``write_page``) and how the index is written from the merged rows (``write_index``)."""

    page_path: Callable[[Path, str], Path]
    write_page: PageWriter
    write_index: Callable[[Path, list[Row]], object]


def run_folder(
    predictor: Any,
    plan: Plan,
    cfg: InferConfig,
    with_truth: bool = False,
    shard: Shard = Shard(),
    progress: bool = True,
    report: Report | None = None,
) -> list[Row]:
    """Segment this rank's share of ``plan``; returns the merged rows (rank 0) or this rank's rows.

    ``report``: writes the viewer pages when ``infer.report`` is on (no pages without it).
    """
    out_dir = plan.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = previous_rows(out_dir)
    barrier(shard)  # every rank has read the previous rows before any part file changes
    report = report if cfg.report else None
    rows = _run_share(predictor, plan, cfg, with_truth, shard, progress, previous, report)
    barrier(shard)
    if not shard.is_main:
        return rows
    extra = []
    for item in plan.discovery.unusable:
        extra.append(unusable_row(item, plan.input_root, with_truth))
        tqdm.write(f"{'error' if item.status == 'error' else 'note'}: {item.path}: {item.reason}", file=sys.stderr)
    planned = {str(s.rel) for s, _ in plan.scans}
    merged = merge_rows(out_dir, rows, shard.rank, shard.world_size, planned, extra)
    write_table(out_dir / PREDICTIONS, merged, with_truth)
    if report is not None:
        report.write_index(out_dir, merged)
    remove_journals(out_dir)
    return merged


def _run_share(
    predictor: Any, plan: Plan, cfg: InferConfig, with_truth: bool, shard: Shard, progress: bool,
    previous: dict[str, Row], report: Report | None,
) -> list[Row]:  # fmt: skip
    """This rank's scans, each kept from the previous run or segmented, and journalled."""
    out_dir = plan.out_dir
    rows: list[Row] = []
    journal = Journal(part_path(out_dir, shard.rank))
    bar = tqdm(shard.take(plan.scans), desc=f"infer[{shard.rank}]" if shard.distributed else "infer", unit="scan",
               disable=not progress or not shard.is_main, file=sys.stderr)  # fmt: skip
    run_provenance = provenance_of(predictor, cfg)
    try:
        for source, paths in bar:
            prev = previous.get(str(source.rel))
            page = report.page_path(out_dir, str(source.rel)) if report is not None else None
            made_by = {**run_provenance, "input_stamp": input_stamp(source, with_truth)}
            if prev is not None and can_skip(prev, paths, cfg, with_truth, made_by, page):
                row = {**prev, REUSED: True}  # counted by status_counts; not a column
            else:
                row = segment_scan(predictor, source, paths, cfg, with_truth, out_dir,
                                   report.write_page if report is not None else None)  # fmt: skip
                row.update(made_by)
                if row["status"] == "error":
                    message = row["message"]
                    where = "" if str(source.path) in message else f"{source.path}: "
                    tqdm.write(f"error: {where}{message}", file=sys.stderr)
            rows.append(row)
            journal.append(row)  # progress survives a crash or a kill
    finally:
        journal.close()
    return rows
