"""One HTML page per evaluated patient: ``RUN/eval/<split>/patients/<patient>.html``.

Two steps, because evaluation streams patients and keeps no volumes:

1. :class:`PatientSliceWriter` is called once per patient while its volume is in
   memory (``evaluate_run(..., on_case=...)``) and writes every slice's pictures into
   ``patients/<patient>/`` (FLAIR JPEG + contour PNG, :mod:`mri_seg.reports.slice_images`).
2. :func:`write_patient_pages` writes the pages once all metrics are known: the
   patient's metrics and review flag, its ``data.csv`` row, every slice with tumour in
   truth or prediction (contours, slice Dice in the caption) and a slice viewer over all
   slices. Links are relative; nothing is fetched from the network.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from mri_seg.reports.html import PATIENT_TABLE_COLUMNS
from mri_seg.reports.slice_images import DEFAULT_MAX_SIDE, volume_window, write_slice_pictures
from mri_seg.reports.viewer import LEGEND, ViewerSlice, page, viewer_html
from mri_seg.reports.web import fmt, key_value_table
from mri_seg.uncertainty import COLUMNS as UNCERTAINTY_COLUMNS
from mri_seg.utils.atomic import atomic_write_text

PAGES_DIR = "patients"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(patient_id: str) -> str:
    """A file-name-safe form of a patient id (TCGA ids are already safe)."""
    return _UNSAFE.sub("_", str(patient_id)) or "_"


def page_href(patient_id: str) -> str:
    """Link from the report (``RUN/eval/<split>/report.html``) to the patient's page."""
    return f"{PAGES_DIR}/{quote(safe_name(patient_id))}.html"


def slice_stem(slice_index: int) -> str:
    return f"slice_{int(slice_index):03d}"


class PatientSliceWriter:
    """Per patient, writes the pictures of every slice (called from the evaluation loop)."""

    def __init__(self, eval_dir: str | Path, max_side: int = DEFAULT_MAX_SIDE):
        self.folder = Path(eval_dir) / PAGES_DIR
        self.max_side = max_side

    def __call__(self, case: Any, pred: np.ndarray, slice_rows: list[dict[str, Any]]) -> None:
        if case.flair is None:
            return
        folder = self.folder / safe_name(case.patient_id)
        window = volume_window(case.flair)
        for i, index in enumerate(case.slice_indices):
            write_slice_pictures(
                folder, slice_stem(index), case.flair[i], case.truth[i], pred[i], self.max_side, window
            )


def _caption(row: dict[str, Any]) -> str:
    return (
        f"slice {int(row['slice_index'])} | Dice {float(row['dice']):.2f} | "
        f"truth {int(row['true_pixels'])} px, prediction {int(row['pred_pixels'])} px"
    )


def _split_columns(columns: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(metric columns, shape-feature columns, the patient's clinical/dataset columns)."""
    own = set(PATIENT_TABLE_COLUMNS) | set(UNCERTAINTY_COLUMNS) | {"patient_id", "case_id", "n_slices"}
    own |= {c for c in columns if c.startswith("dice_at_")}  # threshold sweep (mri_seg.evaluation.scoring)
    shape = [c for c in columns if c.startswith(("true_", "pred_")) and c not in own]
    metrics = [c for c in columns if c in own and c not in ("patient_id", "case_id")]
    return metrics, shape, [c for c in columns if c not in metrics and c not in shape and c != "patient_id"]


def _vertical(record: dict[str, Any], columns: list[str]) -> str:
    return key_value_table((c, record.get(c)) for c in columns)


def render_patient_page(patient: dict[str, Any], slices: pd.DataFrame, split: str, report_href: str) -> str:
    """The page of one patient. ``slices``: that patient's rows of slices.csv, in slice order."""
    pid = str(patient["patient_id"])
    folder = quote(safe_name(pid))
    metric_cols, shape_cols, clinical_cols = _split_columns(list(patient))
    flagged = bool(patient.get("review_flag", False))
    views: list[ViewerSlice] = []
    gallery: list[str] = []
    records = slices.sort_values("slice_index", kind="stable").to_dict("records")
    for rec in records:
        stem = slice_stem(rec["slice_index"])
        view = ViewerSlice(f"{folder}/{stem}.jpg", f"{folder}/{stem}_overlay.png", _caption(rec))
        views.append(view)
        if rec["true_pixels"] > 0 or rec["pred_pixels"] > 0:
            gallery.append(
                f'<figure><div class="stack"><img src="{html.escape(view.image)}" alt="{html.escape(view.caption)}">'
                f'<img class="overlay" src="{html.escape(view.overlay)}" alt=""></div>'
                f"<figcaption>{html.escape(view.caption)}</figcaption></figure>"
            )
    amount = [r["true_pixels"] + r["pred_pixels"] for r in records]
    start = int(np.argmax(amount)) if amount else 0
    flag_text = (
        f'<p class="flag">Flagged for review: uncertainty {fmt(patient.get("uncertainty"))}</p>' if flagged else ""
    )
    body = [
        f'<p><a href="{html.escape(report_href)}">&larr; evaluation report ({html.escape(split)})</a></p>',
        f"<h1>{html.escape(pid)}</h1>",
        f"<p>Patient Dice <b>{fmt(patient.get('dice'))}</b>, {len(records)} slices, "
        f"{len(gallery)} with tumour in truth or prediction.</p>",
        flag_text,
        '<div class="columns"><div>',
        "<h2>Slice viewer</h2>",
        LEGEND,
        viewer_html(views, start),
        "</div><div>",
        "<h2>Metrics</h2>",
        _vertical(patient, metric_cols),
        "</div><div>",
        "<h2>data.csv row</h2>",
        _vertical(patient, clinical_cols) if clinical_cols else '<p class="note">No data.csv row for this patient.</p>',
        "</div></div>",
        "<h2>Slices with tumour</h2>",
        "".join(['<div class="gallery">', *gallery, "</div>"]) if gallery else '<p class="note">None.</p>',
        "<h2>Shape features (truth / prediction)</h2>",
        _vertical(patient, shape_cols),
    ]
    return page(f"{pid} — mri_seg evaluation", body)


def write_patient_pages(patients: pd.DataFrame, slices: pd.DataFrame, eval_dir: str | Path, split: str) -> list[Path]:
    """Write ``patients/<patient>.html`` for every patient; returns the paths."""
    folder = Path(eval_dir) / PAGES_DIR
    by_patient = dict(tuple(slices.groupby("patient_id", sort=False))) if not slices.empty else {}
    written = []
    for row in patients.to_dict("records"):
        record = {str(k): v for k, v in row.items()}
        pid = str(record["patient_id"])
        rows = by_patient.get(pid, pd.DataFrame(columns=slices.columns))
        path = folder / f"{safe_name(pid)}.html"
        atomic_write_text(path, render_patient_page(record, rows, split, "../report.html#patient-" + quote(pid)))
        written.append(path)
    return written


def patient_links(patients: pd.DataFrame) -> dict[str, str]:
    """patient_id -> relative link used by the report's patient table."""
    return {str(pid): page_href(str(pid)) for pid in patients["patient_id"]}



def clear_pages(eval_dir: str | Path) -> None:
    """Remove the patient pages of an earlier evaluation (``patients/`` is this stage's own folder)."""
    import shutil

    folder = Path(eval_dir) / PAGES_DIR
    if folder.is_dir():
        shutil.rmtree(folder)
