"""Batch inference over a folder (or one file): scans -> masks, overlays, ``predictions.csv``.

Per scan: read (any registered file type) into the training layout with channels in the
model's sequence order (:func:`read_options`), predict the volume
(``Predictor.predict_volume``: slices in bounded chunks, 2.5D context from the scan's own
neighbouring slices), post-process, write the mask (input format and geometry), optional
probabilities, and the overlay PNG (written last, so a scan whose outputs all exist is
complete). A scan that fails becomes an ``error`` row and the batch goes on.

Safety: inputs are never written. OUT may not be the input folder; an OUT inside the
input folder is left out of the search; every planned output path is checked against
the files found under the input before anything is written.

Report (``infer.report``): each scan's viewer page is written with its outputs
(:mod:`mri_seg.reports.inference_report`), and ``OUT/report.html`` by rank 0 after the
merge. Review flag: the uncertainty of the prediction's passes (:mod:`mri_seg.uncertainty`)
goes into the ``uncertainty`` and ``review_flag`` columns.

Re-runs: every row records what made its mask -- ``checkpoint_sha256`` (the model's
checkpoint file(s), ';'-joined for an ensemble), ``settings_hash`` (the ``infer``
settings that shape a mask, see :func:`settings_hash`) and ``input_stamp`` (size and
modification time of the scan's files). A re-run keeps a scan's previous row and files
only when all three are unchanged and its outputs exist; anything else (another model,
threshold, TTA, tiling..., an edited input, a missing row) recomputes it.
``infer.overwrite`` recomputes everything.

Crashes and kills: each rank appends every finished scan's row to its journal
``OUT/.predictions.part-<rank>.jsonl`` (one JSON line, flushed and fsynced), so a run
killed at any point leaves whole outputs (every file is written atomically) and the rows
of the scans it finished; the same command again skips those scans and does the rest.
A scan that fails leaves none of its outputs behind; a full disk stops the batch at once
(:class:`mri_seg.utils.atomic.DiskFullError`, one line naming the file).

Warnings about a scan (channels adapted, NaN/inf intensities replaced, one page of a
multi-page TIFF used, orientation or sequence notes: :class:`mri_seg.io.scan.ScanWarning`)
go to its ``warnings`` column; ``message`` holds errors and Dice notes.

Sharding: under torchrun each rank takes its share (:mod:`mri_seg.inference.sharding`)
and rank 0 merges the journals into ``predictions.csv`` (sorted by path) after a barrier.
Folders discovery could not search are rank 0's rows (``error`` or ``skipped``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from mri_seg.config import InferConfig, config_to_dict
from mri_seg.io.overlay import write_overlay
from mri_seg.postprocess import apply_postprocess
from mri_seg.inference.sharding import Shard, barrier
from mri_seg.io.registry import (
    Discovery,
    OutputPaths,
    Source,
    discover,
    output_paths,
    read_source,
    read_truth,
    write_outputs,
)
from mri_seg.io.kaggle import parse_kaggle_name
from mri_seg.io.options import ReadOptions
from mri_seg.io.scan import ScanError, ScanWarning, replace_nonfinite
from mri_seg.metrics import dice_score
from mri_seg.reports.inference_report import ASSETS_DIR, REPORT_FILE, scan_key, write_inference_report, write_scan_page
from mri_seg.uncertainty import Uncertainty, UncertaintyAccumulator
from mri_seg.utils.atomic import DISK_FULL, DiskFullError, atomic_write_csv

PREDICTIONS = "predictions.csv"
COLUMNS = [
    "path", "format", "shape", "tumour_pixels", "tumour_volume_mm3", "slices_with_tumour",
    "seconds", "status", "message", "warnings", "sequences", "uncertainty", "review_flag", "checkpoints",
    "checkpoint_sha256", "settings_hash", "input_stamp",
]  # fmt: skip
# infer keys that never change a mask or its row (batching, which files are written, re-run policy): left out
# of settings_hash. Every other infer key (threshold, min component, TTA, tile size,
# overlap, blend, NIfTI orientation and sequence settings...) is in it.
NOT_MASK_SHAPING = ("tile_batch", "save_probabilities", "overwrite", "report")
PROVENANCE = ("checkpoint_sha256", "settings_hash", "input_stamp")
DICE_COLUMN = "dice"
RESERVED = (PREDICTIONS, "config_infer.yaml", REPORT_FILE)


class InferError(ValueError):
    """The batch cannot start (bad input/output folders); nothing has been written."""


@dataclass
class Plan:
    input_path: Path
    out_dir: Path
    discovery: Discovery
    scans: list[tuple[Source, OutputPaths]]


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop
        return path.absolute()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_batch(input_path: str | Path, out_dir: str | Path) -> Plan:
    """Find the scans and their output paths; refuse anything that would write over an input."""
    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.exists():
        raise FileNotFoundError(f"input not found: {input_path}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InferError(f"output {out_dir} exists and is not a folder")
    inp, out = input_path.resolve(), out_dir.resolve()
    if input_path.is_dir() and out == inp:
        raise InferError(
            f"output folder {out_dir} is the input folder; choose another --output (inputs are never written)"
        )
    exclude = [out] if input_path.is_dir() and _inside(out, inp) else []
    found = discover(input_path, exclude=exclude)
    if not found.sources:
        raise InferError(f"no scans found in {input_path} (supported: .tif .tiff .png .jpg .jpeg .nii .nii.gz)")
    scans = [(s, output_paths(s, out_dir)) for s in found.sources]
    owners: dict[Path, str] = {(out / name).resolve(): "the batch table/config" for name in RESERVED}
    if set(owners) & found.input_files:
        raise InferError(f"{out_dir} holds input files named like the batch outputs {RESERVED}; choose another --output")
    for source, paths in scans:
        for p in paths.all(with_probs=True):
            rp = _resolve(p)
            if rp in found.input_files:
                raise InferError(
                    f"output {p} for {source.rel} would overwrite the input file {rp}; choose another --output"
                )
            if rp in owners:
                raise InferError(f"output {p} of {source.rel} collides with the output of {owners[rp]}")
            owners[rp] = str(source.rel)
    return Plan(input_path, out_dir, found, scans)


# ----------------------------------------------------------------------------- provenance


def settings_hash(cfg: InferConfig, device_type: str = "cpu") -> str:
    """Short sha256 of the settings that shape a mask: every ``infer`` key but
    :data:`NOT_MASK_SHAPING`, and the device type (CUDA predicts under autocast)."""
    values = {k: v for k, v in config_to_dict(cfg).items() if k not in NOT_MASK_SHAPING}
    payload = json.dumps({"infer": values, "device": device_type}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def input_stamp(source: Source, with_truth: bool) -> str:
    """Short sha256 of the name, size and modification time of the scan's files (and its
    reference masks with ``--with-truth``): a changed input is recomputed."""
    from mri_seg.io.kaggle import truth_path

    files = list(source.members) or [source.path]
    if with_truth:
        if source.format == "kaggle":  # one reference mask per slice
            files += [truth_path(m) for m in source.members]
        elif source.truth is not None:
            files.append(source.truth)
    h = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f.name}|missing\n".encode())
    return h.hexdigest()[:16]


def provenance_of(predictor, cfg: InferConfig) -> dict[str, str]:
    """The batch-wide provenance columns (the per-scan ``input_stamp`` is added per row)."""
    return {
        "checkpoint_sha256": checkpoint_columns(predictor)["checkpoint_sha256"],
        "settings_hash": settings_hash(cfg, getattr(getattr(predictor, "device", None), "type", "cpu")),
    }


# ----------------------------------------------------------------------------- one scan


def _row(source: Source, with_truth: bool) -> dict[str, Any]:
    row: dict[str, Any] = {c: "" for c in COLUMNS}
    row.update(path=str(source.rel), format=source.format, status="error")
    if with_truth:
        row[DICE_COLUMN] = ""
    return row


def _unusable_row(item, root: Path, with_truth: bool) -> dict[str, Any]:
    """The row of a folder discovery could not search (unreadable, or a link loop)."""
    try:
        rel = item.path.relative_to(root).as_posix()
    except ValueError:
        rel = str(item.path)
    row: dict[str, Any] = {c: "" for c in COLUMNS}
    row.update(path=rel, format="folder", status=item.status, message=item.reason)
    if with_truth:
        row[DICE_COLUMN] = ""
    return row


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (ScanError, OSError)) else f"{type(exc).__name__}: {text}"


def slice_names(scan) -> list[str] | None:
    """Montage labels: a Kaggle slice's number from its file name; else the index along the slice axis."""
    if scan.format != "kaggle":
        return None
    return [str(parse_kaggle_name(p.name)[1]) for p in scan.geometry["slice_paths"]]


def read_options(predictor, cfg: InferConfig) -> ReadOptions:
    """How scans are read for this model: its sequence order plus the ``infer`` settings (validated)."""
    return ReadOptions.from_config(cfg, getattr(predictor, "sequences", None))


def segment_scan(
    predictor,
    source: Source,
    paths: OutputPaths,
    cfg: InferConfig,
    with_truth: bool = False,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Segment one scan and write its outputs; returns its ``predictions.csv`` row (never raises).

    ``out_dir``: the batch's output folder, where the scan's report page goes (``infer.report``).
    """
    start = time.perf_counter()
    row = _row(source, with_truth)
    notes: list[str] = []
    cautions: list[str] = []
    existed = {p for p in paths.all(with_probs=True) if p.exists()}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ScanWarning)
            try:
                scan = read_source(source, read_options(predictor, cfg))
                row["shape"] = scan.shape_text()
                row["sequences"] = scan.sequences
                # training layout, model's channel order (1 channel: a broadcast view); NaN/inf -> background
                slices = replace_nonfinite(scan.slices, source.path)
            finally:
                for w in caught:
                    if issubclass(w.category, ScanWarning):
                        cautions.append(str(w.message))
                        tqdm.write(f"warning: {w.message}", file=sys.stderr)
        pp = cfg.postprocess
        volume_prob, uncertainty = predict_with_uncertainty(predictor, slices, pp.threshold)
        mask = apply_postprocess(volume_prob, pp)  # per slice and 3D components over the whole volume
        prob = volume_prob if cfg.save_probabilities else None
        write_outputs(source, scan, paths, mask, prob)
        row.update(uncertainty.columns(cfg.review.threshold))
        tumour = int(mask.sum())
        row.update(
            tumour_pixels=tumour,
            slices_with_tumour=int(mask.reshape(mask.shape[0], -1).any(axis=1).sum()),
            tumour_volume_mm3="" if scan.voxel_mm3 is None else round(tumour * scan.voxel_mm3, 3),
            status="ok",
        )
        if with_truth:
            try:
                truth = read_truth(source, scan)
                if truth is None:
                    notes.append("dice: no reference mask found")
                else:
                    row[DICE_COLUMN] = round(dice_score(mask, truth), 6)
            except Exception as exc:  # a bad reference mask does not fail the segmentation
                notes.append(f"dice: {_one_line(exc)}")
        if cfg.report and out_dir is not None:
            try:
                write_scan_page(out_dir, {**row, "message": "; ".join(notes), "warnings": "; ".join(cautions)},
                                slices, mask, slice_names(scan))  # fmt: skip
            except Exception as exc:  # a page that cannot be drawn does not fail the segmentation
                notes.append(f"report page: {_one_line(exc)}")
        write_overlay(paths.overlay, slices, mask, slice_names(scan))  # last: marks a complete scan
    except DiskFullError:  # every later write would fail too: stop the batch with one line
        _remove_new_outputs(paths, existed)
        raise
    except Exception as exc:  # one bad scan must not stop the batch
        row["status"] = "error"
        notes.append(_one_line(exc))
        _remove_new_outputs(paths, existed)
    row["message"] = "; ".join(notes)
    row["warnings"] = "; ".join(cautions)
    row["seconds"] = round(time.perf_counter() - start, 3)
    row.update(checkpoint_columns(predictor))
    return row


def _remove_new_outputs(paths: OutputPaths, existed: set[Path]) -> None:
    """A failed scan leaves no partial set of outputs: remove those this attempt created."""
    for p in paths.all(with_probs=True):
        if p not in existed:
            with contextlib.suppress(OSError):
                p.unlink()


def predict_with_uncertainty(predictor, slices: np.ndarray, threshold: float) -> tuple[np.ndarray, Uncertainty]:
    """The volume's mean probability ``D x H x W`` and the uncertainty of its passes, slice by slice
    (only one slice's passes are held at a time). A predictor without passes counts as one pass."""
    acc = UncertaintyAccumulator(threshold)
    if hasattr(predictor, "iter_volume_passes"):
        prob = np.zeros(slices.shape[:3], dtype=np.float32)
        for i, passes in enumerate(predictor.iter_volume_passes(slices)):
            acc.add(passes)
            prob[i] = passes.mean(axis=0)
    else:
        prob = np.asarray(predictor.predict_volume(slices), dtype=np.float32)
        acc.add(prob[None])
    return prob, acc.result()


def checkpoint_columns(predictor) -> dict[str, str]:
    """The checkpoint files that made a row and their sha256 (';'-joined for an ensemble)."""
    return {
        "checkpoints": ";".join(str(p) for p in getattr(predictor, "checkpoint_paths", [])),
        "checkpoint_sha256": ";".join(getattr(predictor, "checkpoint_sha256", [])),
    }


# ----------------------------------------------------------------------------- tables


def _part_path(out_dir: Path, rank: int) -> Path:
    return out_dir / f".predictions.part-{rank}.jsonl"


def _read_rows(path: Path) -> list[dict[str, Any]]:
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
        return pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    except Exception:  # unreadable previous table: recompute instead
        return []


def _journals(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob(".predictions.part-*.jsonl"))


def previous_rows(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Rows of an earlier run (``predictions.csv``, then the journals of an interrupted one)."""
    rows: dict[str, dict[str, Any]] = {}
    for path in [out_dir / PREDICTIONS, *_journals(out_dir)]:
        if path.is_file():
            rows.update({r["path"]: r for r in _read_rows(path) if "path" in r})
    return rows


class Journal:
    """Append-only log of finished rows: a kill loses at most the scan in progress."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = None

    def append(self, row: dict[str, Any]) -> None:
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


def write_table(path: Path, rows: list[dict[str, Any]], with_truth: bool) -> None:
    columns = COLUMNS + ([DICE_COLUMN] if with_truth else [])
    frame = pd.DataFrame(rows, columns=columns).fillna("")
    atomic_write_csv(path, frame.sort_values("path", kind="stable").reset_index(drop=True))


def _can_skip(
    previous: dict[str, Any] | None, paths: OutputPaths, cfg: InferConfig, with_truth: bool, made_by: dict[str, str],
    page: Path | None = None,
) -> bool:
    """Keep a scan only when its previous ``ok`` row was made by the same checkpoint, settings
    and input (``made_by``) and its outputs all exist."""
    if cfg.overwrite or previous is None or previous.get("status") != "ok":
        return False
    if any(not made_by[k] or previous.get(k, "") != made_by[k] for k in PROVENANCE):
        return False
    if not all(p.is_file() for p in paths.all(cfg.save_probabilities)):
        return False
    if page is not None and not page.is_file():  # report asked for, page missing: redo the scan
        return False
    return not with_truth or previous.get(DICE_COLUMN, "") != ""


# ----------------------------------------------------------------------------- batch


def run_batch(
    predictor,
    plan: Plan,
    cfg: InferConfig,
    with_truth: bool = False,
    shard: Shard = Shard(),
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Segment this rank's share of ``plan``; returns the merged rows (rank 0) or this rank's rows."""
    out_dir = plan.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = previous_rows(out_dir)
    barrier(shard)  # every rank has read the previous rows before any part file changes
    mine = shard.take(plan.scans)
    rows: list[dict[str, Any]] = []
    journal = Journal(_part_path(out_dir, shard.rank))
    bar = tqdm(mine, desc=f"infer[{shard.rank}]" if shard.distributed else "infer", unit="scan",
               disable=not progress or not shard.is_main, file=sys.stderr)
    batch_provenance = provenance_of(predictor, cfg)
    try:
        for source, paths in bar:
            prev = previous.get(str(source.rel))
            page = out_dir / ASSETS_DIR / f"{scan_key(str(source.rel))}.html" if cfg.report else None
            made_by = {**batch_provenance, "input_stamp": input_stamp(source, with_truth)}
            if _can_skip(prev, paths, cfg, with_truth, made_by, page):
                row = {**prev, "_reused": True}  # counted by summarise; not a column
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
    barrier(shard)
    if not shard.is_main:
        return rows
    root = plan.input_path if plan.input_path.is_dir() else plan.input_path.parent
    merged_by_path: dict[str, dict[str, Any]] = {}
    for rank in range(shard.world_size):
        if rank != shard.rank:
            merged_by_path.update({r["path"]: r for r in _read_rows(_part_path(out_dir, rank)) if "path" in r})
    merged_by_path.update({str(r["path"]): r for r in rows})
    for item in plan.discovery.unusable:
        row = _unusable_row(item, root, with_truth)
        tqdm.write(f"{'error' if item.status == 'error' else 'note'}: {item.path}: {item.reason}", file=sys.stderr)
        merged_by_path[row["path"]] = row
    planned = {str(s.rel) for s, _ in plan.scans} | {str(r["path"]) for r in rows}
    merged = [r for p, r in merged_by_path.items() if p in planned or r.get("format") == "folder"]
    write_table(out_dir / PREDICTIONS, merged, with_truth)
    if cfg.report:
        write_inference_report(out_dir, merged)
    for leftover in [*_journals(out_dir), *out_dir.glob(".predictions.part-*.csv")]:  # also an interrupted run's
        leftover.unlink(missing_ok=True)
    return merged


def summarise(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of ``ok`` / ``error`` rows, and ``reused``: ok rows kept unchanged from the previous run."""
    statuses = [str(r.get("status", "")) for r in rows]
    counts = {s: statuses.count(s) for s in ("ok", "error")}
    counts["reused"] = sum(1 for r in rows if r.get("_reused"))
    return counts
