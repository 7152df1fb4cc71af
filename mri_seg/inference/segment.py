"""One scan of a folder inference: read, predict, post-process, write; its ``predictions.csv`` row.

Per scan: read (any registered file type) into the training layout with channels in the
model's sequence order (:func:`read_options`), predict the volume (slices in bounded
chunks, 2.5D context from the scan's own neighbouring slices) with the uncertainty of its
passes (:mod:`mri_seg.uncertainty`: the ``uncertainty`` and ``review_flag`` columns),
post-process (with ``postprocess.flair_view_threshold``, the scan is predicted a second time with
FLAIR in every channel: :func:`predict_flair_view`), write the mask (input format and geometry), optional probabilities, the
scan's report page (``infer.report``) and the overlay PNG (written last, so a scan whose
outputs all exist is complete).

A scan that fails becomes an ``error`` row whose ``message`` says why in one line, and
leaves none of its outputs behind; a full disk stops the run at once
(:class:`mri_seg.utils.atomic.DiskFullError`, one line naming the file). A reference mask
or a report page that cannot be used is a note in ``message``, not a failure. Warnings
about a scan (channels adapted, NaN/inf intensities replaced, one page of a multi-page TIFF
used, orientation or sequence notes: :class:`mri_seg.io.scan.ScanWarning`) go to its
``warnings`` column.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mri_seg.config import InferConfig
from mri_seg.inference.journal import DICE_COLUMN, Row, empty_row
from mri_seg.inference.provenance import checkpoint_columns
from mri_seg.io.dicom import DicomNote
from mri_seg.io.kaggle import slice_number
from mri_seg.io.options import ReadOptions
from mri_seg.io.overlay import write_overlay
from mri_seg.io.registry import OutputPaths, Source, read_source, read_truth, write_outputs
from mri_seg.io.scan import Scan, ScanError, ScanWarning, replace_nonfinite
from mri_seg.io.sequences import flair_in_every_channel, flair_of, is_flair_only
from mri_seg.metrics import dice_score
from mri_seg.postprocess import PostprocessSettings, apply_postprocess, for_flair_only
from mri_seg.uncertainty import Uncertainty, UncertaintyAccumulator
from mri_seg.utils.atomic import DiskFullError

# Writes a scan's report page: (OUT, row, slices, mask, slice names); rendering is mri_seg.reports' job.
PageWriter = Callable[[Path, Row, np.ndarray, np.ndarray, "list[str] | None"], object]


def one_line(exc: BaseException) -> str:
    """An exception as one line; the type is named unless it is a scan or file error (their text says it all)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (ScanError, OSError)) else f"{type(exc).__name__}: {text}"


def error_row(source: Source, with_truth: bool) -> Row:
    """A scan's row before it is segmented: ``error`` until it succeeds."""
    row = empty_row(with_truth)
    row.update(path=str(source.rel), format=source.format, status="error")
    return row


def unusable_row(item: Any, root: Path, with_truth: bool) -> Row:
    """The row of a folder discovery could not search (unreadable, or a link loop)."""
    try:
        rel = item.path.relative_to(root).as_posix()
    except ValueError:
        rel = str(item.path)
    row = empty_row(with_truth)
    row.update(path=rel, format="folder", status=item.status, message=item.reason)
    return row


def slice_names(scan: Scan) -> list[str] | None:
    """Montage labels: a Kaggle slice's number from its file name; else the index along the slice axis."""
    if scan.format != "kaggle":
        return None
    return [str(slice_number(p.name)) for p in scan.geometry["slice_paths"]]


def read_options(predictor: Any, cfg: InferConfig) -> ReadOptions:
    """How scans are read for this model: its sequence order plus the ``infer`` settings (validated)."""
    return ReadOptions.from_config(cfg, getattr(predictor, "sequences", None))


def predict_with_uncertainty(
    predictor: Any, slices: np.ndarray, threshold: float, slice_spacing_mm: float | None = None
) -> tuple[np.ndarray, Uncertainty]:
    """The volume's mean probability ``D x H x W`` and the uncertainty of its passes, slice by slice
    (only one slice's passes are held at a time), scored member by member (mri_seg.uncertainty).
    A predictor without passes counts as one pass. ``slice_spacing_mm``: where the scan states it
    (the 2.5D neighbours' distance)."""
    acc = UncertaintyAccumulator(threshold, int(getattr(predictor, "passes_per_member", 0)))
    if hasattr(predictor, "iter_volume_passes"):
        prob = np.zeros(slices.shape[:3], dtype=np.float32)
        for i, passes in enumerate(predictor.iter_volume_passes(slices, slice_spacing_mm=slice_spacing_mm)):
            acc.add(passes)
            prob[i] = passes.mean(axis=0)
    else:
        prob = np.asarray(predictor.predict_volume(slices), dtype=np.float32)
        acc.add(prob[None])
    return prob, acc.result()


def flair_view_note(settings: PostprocessSettings) -> str | None:
    """The stderr line an inference run prints where the FLAIR view is on (each 3-sequence scan predicted twice)."""
    if settings.flair_view_threshold <= 0.0:
        return None
    return (
        f"FLAIR view on (postprocess.flair_view_threshold {settings.flair_view_threshold:g}, min ratio "
        f"{settings.flair_view_min_ratio:g}): scans with more than FLAIR are predicted twice"
    )


def predict_flair_view(
    predictor: Any, slices: np.ndarray, settings: PostprocessSettings, slice_spacing_mm: float | None = None
) -> np.ndarray | None:
    """The scan's FLAIR view (FLAIR copied into every channel, the same passes) where ``settings`` use it;
    ``None`` where they do not or the scan is FLAIR-only already (its prediction is its FLAIR view)."""
    if settings.flair_view_threshold <= 0.0 or is_flair_only(slices):
        return None
    view, _ = predict_with_uncertainty(predictor, flair_in_every_channel(slices), settings.threshold, slice_spacing_mm)
    return view


def segment_scan(
    predictor: Any,
    source: Source,
    paths: OutputPaths,
    cfg: InferConfig,
    with_truth: bool = False,
    out_dir: Path | None = None,
    write_page: PageWriter | None = None,
) -> Row:
    """Segment one scan and write its outputs; returns its ``predictions.csv`` row (never raises
    but :class:`DiskFullError`).

    ``out_dir``: the run's output folder, where ``write_page`` puts the scan's report page (``infer.report``).
    """
    start = time.perf_counter()
    row = error_row(source, with_truth)
    notes: list[str] = []  # -> message
    cautions: list[str] = []  # -> warnings
    existed = {p for p in paths.all(with_probs=True) if p.exists()}
    try:
        _segment(predictor, source, paths, cfg, row, notes, cautions, with_truth, out_dir, write_page)
    except DiskFullError:  # every later write would fail too: stop the run with one line
        _remove_new_outputs(paths, existed)
        raise
    except Exception as exc:  # one bad scan must not stop the run
        row["status"] = "error"
        notes.append(one_line(exc))
        _remove_new_outputs(paths, existed)
    row["message"] = "; ".join(notes)
    row["warnings"] = "; ".join(cautions)
    row["seconds"] = round(time.perf_counter() - start, 3)
    row.update(checkpoint_columns(predictor))
    return row


def _segment(
    predictor: Any, source: Source, paths: OutputPaths, cfg: InferConfig, row: Row, notes: list[str],
    cautions: list[str], with_truth: bool, out_dir: Path | None, write_page: PageWriter | None,
) -> None:  # fmt: skip
    """The steps of :func:`segment_scan`, filling ``row``, ``notes`` and ``cautions``; raises on failure."""
    scan, slices = _read(predictor, source, cfg, row, notes, cautions)
    scan.geometry["provenance"] = checkpoint_columns(predictor)  # the DICOM SEG's algorithm identification
    pp = cfg.postprocess
    own = for_flair_only(pp) if is_flair_only(slices) else pp  # a FLAIR-only scan's own threshold (cv's choice)
    if own is not pp:
        pp = own
        notes.append(f"FLAIR-only scan: threshold {pp.threshold:g}, keep_ratio {pp.keep_ratio:g} (FLAIR-only scans')")
    volume_prob, uncertainty = predict_with_uncertainty(predictor, slices, pp.threshold, scan.slice_spacing_mm)
    view_prob = predict_flair_view(predictor, slices, pp, scan.slice_spacing_mm)
    mask = apply_postprocess(volume_prob, pp, view_prob, flair_of(slices))  # per slice, 3D components over the volume
    write_outputs(source, scan, paths, mask, volume_prob if cfg.save_probabilities else None)
    row.update(uncertainty.columns(cfg.review.threshold))
    tumour = int(mask.sum())
    row.update(
        tumour_pixels=tumour,
        slices_with_tumour=int(mask.reshape(mask.shape[0], -1).any(axis=1).sum()),
        tumour_volume_mm3="" if scan.voxel_mm3 is None else round(tumour * scan.voxel_mm3, 3),
        status="ok",
    )
    if with_truth:
        _score(source, scan, mask, row, notes)
    if cfg.report and out_dir is not None and write_page is not None:
        _write_page(write_page, out_dir, row, notes, cautions, slices, mask, scan)
    write_overlay(paths.overlay, slices, mask, slice_names(scan))  # last: marks a complete scan


def _read(
    predictor: Any, source: Source, cfg: InferConfig, row: Row, notes: list[str], cautions: list[str]
) -> tuple[Scan, np.ndarray]:
    """The scan and its slices (training layout, the model's channel order; NaN/inf -> background).

    Its :class:`ScanWarning` messages go to ``cautions`` (and to stderr), also when reading fails;
    :class:`DicomNote` information (a localizer skipped) goes to ``notes``. A reader's extra
    columns (a DICOM study's ``series`` and ``series_reason``) go to the row.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScanWarning)
        try:
            scan = read_source(source, read_options(predictor, cfg))
            row["shape"] = scan.shape_text()
            row["sequences"] = scan.sequences
            row.update(scan.geometry.get("columns", {}))
            slices = replace_nonfinite(scan.slices, source.path)  # 1 channel: a broadcast view
        finally:
            for w in caught:
                if issubclass(w.category, DicomNote):
                    notes.append(str(w.message))
                    tqdm.write(f"note: {w.message}", file=sys.stderr)
                elif issubclass(w.category, ScanWarning):
                    cautions.append(str(w.message))
                    tqdm.write(f"warning: {w.message}", file=sys.stderr)
    return scan, slices


def _score(source: Source, scan: Scan, mask: np.ndarray, row: Row, notes: list[str]) -> None:
    """``dice`` against the scan's reference mask; a missing or bad one is a note, not a failure."""
    try:
        truth = read_truth(source, scan)
        if truth is None:
            notes.append("dice: no reference mask found")
        else:
            row[DICE_COLUMN] = round(dice_score(mask, truth), 6)
    except Exception as exc:  # a bad reference mask does not fail the segmentation
        notes.append(f"dice: {one_line(exc)}")


def _write_page(
    write_page: PageWriter, out_dir: Path, row: Row, notes: list[str], cautions: list[str], slices: np.ndarray,
    mask: np.ndarray, scan: Scan,
) -> None:  # fmt: skip
    """The scan's report page; a page that cannot be drawn is a note, not a failure."""
    try:
        write_page(out_dir, {**row, "message": "; ".join(notes), "warnings": "; ".join(cautions)},
                   slices, mask, slice_names(scan))  # fmt: skip
    except Exception as exc:  # a page that cannot be drawn does not fail the segmentation
        notes.append(f"report page: {one_line(exc)}")


def _remove_new_outputs(paths: OutputPaths, existed: set[Path]) -> None:
    """A failed scan leaves no partial set of outputs: remove those this attempt created."""
    for p in paths.all(with_probs=True):
        if p not in existed:
            with contextlib.suppress(OSError):
                p.unlink()
