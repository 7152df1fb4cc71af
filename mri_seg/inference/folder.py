"""Folder inference: scans -> masks, overlays, ``predictions.csv`` (and a report).

The runner of :mod:`mri_seg.pipelines.infer`, in four parts, one module each:

- :mod:`~mri_seg.inference.plan`: what to read and where to write, refusing to write over an input;
- :mod:`~mri_seg.inference.segment`: one scan (read, predict, post-process, write) and its row;
- :mod:`~mri_seg.inference.journal`: the resume journal, the re-run decision and the table merge;
- :mod:`~mri_seg.inference.provenance`: what made a row (checkpoint, settings, input).

Report (``infer.report``): each scan's viewer page is written with its outputs
(:mod:`mri_seg.reports.inference_report`), and ``OUT/report.html`` by rank 0 after the merge.

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
from mri_seg.inference.segment import segment_scan, unusable_row
from mri_seg.inference.sharding import Shard, barrier
from mri_seg.reports.inference_report import ASSETS_DIR, scan_key, write_inference_report


def run_folder(
    predictor: Any,
    plan: Plan,
    cfg: InferConfig,
    with_truth: bool = False,
    shard: Shard = Shard(),
    progress: bool = True,
) -> list[Row]:
    """Segment this rank's share of ``plan``; returns the merged rows (rank 0) or this rank's rows."""
    out_dir = plan.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = previous_rows(out_dir)
    barrier(shard)  # every rank has read the previous rows before any part file changes
    rows = _run_share(predictor, plan, cfg, with_truth, shard, progress, previous)
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
    if cfg.report:
        write_inference_report(out_dir, merged)
    remove_journals(out_dir)
    return merged


def _run_share(
    predictor: Any, plan: Plan, cfg: InferConfig, with_truth: bool, shard: Shard, progress: bool,
    previous: dict[str, Row],
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
            page = out_dir / ASSETS_DIR / f"{scan_key(str(source.rel))}.html" if cfg.report else None
            made_by = {**run_provenance, "input_stamp": input_stamp(source, with_truth)}
            if prev is not None and can_skip(prev, paths, cfg, with_truth, made_by, page):
                row = {**prev, REUSED: True}  # counted by status_counts; not a column
            else:
                row = segment_scan(predictor, source, paths, cfg, with_truth, out_dir)
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
