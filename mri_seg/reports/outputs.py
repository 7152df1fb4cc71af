"""Write an :class:`EvalResult` to ``RUN/eval/<split>/`` (every file atomically).

Files: patients.csv, slices.csv, summary.json, dice_by_patient.png, volume_scatter.png,
dice_vs_size.png, uncertainty_vs_dice.png, report.html, and the patient pages
(``patients/<patient>.html`` + ``patients/<patient>/`` slice pictures, when their pictures
were drawn during evaluation). Only these names are written, so re-running overwrites
this evaluation's outputs and nothing else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mri_seg.evaluation.scoring import EvalResult, cluster_table, ranked_patients
from mri_seg.reports.html import render_report
from mri_seg.reports.patient_pages import PatientSliceWriter, clear_pages, patient_links, write_patient_pages
from mri_seg.reports.plots import (
    dice_by_patient_png,
    dice_vs_size_png,
    montage_png,
    uncertainty_vs_dice_png,
    volume_scatter_png,
)
from mri_seg.training.curves import CURVES_FILE, run_learning_curves_png
from mri_seg.utils.atomic import atomic_write_bytes, atomic_write_csv, atomic_write_json, atomic_write_text

OUTPUT_FILES = (
    "patients.csv",
    "slices.csv",
    "summary.json",
    "dice_by_patient.png",
    "volume_scatter.png",
    "dice_vs_size.png",
    "uncertainty_vs_dice.png",
    "report.html",
)


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python numbers, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def render_plots(result: EvalResult) -> dict[str, bytes]:
    plots = {
        "dice_by_patient.png": dice_by_patient_png(result.patients),
        "volume_scatter.png": volume_scatter_png(result.patients),
        "dice_vs_size.png": dice_vs_size_png(result.patients),
    }
    if "uncertainty" in result.patients:
        review = result.summary.get("review") or {}
        threshold = float(review.get("threshold", 0.3))
        plots["uncertainty_vs_dice.png"] = uncertainty_vs_dice_png(result.patients, threshold, review)
    return plots


def render_montages(result: EvalResult) -> list[tuple[str, str, float, bytes]]:
    """(label, patient_id, Dice, PNG) for the best, median and worst patients."""
    dice = dict(zip(result.patients["patient_id"], result.patients["dice"]))
    out = []
    for label, pid in ranked_patients(result.patients):
        title = f"{label}: {pid} (patient Dice {dice[pid]:.3f})"
        out.append((label, pid, float(dice[pid]), montage_png(result.montage.get(pid, []), title)))
    return out


def write_eval_outputs(
    result: EvalResult,
    out_dir: str | Path,
    title: str = "mri_seg evaluation",
    run_dir: str | Path | None = None,
    patient_pages: bool = False,
) -> dict[str, Path]:
    """Write every output file of one evaluation; returns name -> path.

    ``patient_pages``: write ``patients/<patient>.html`` and link them from the patient
    table (their pictures were drawn during evaluation by
    :class:`~mri_seg.reports.patient_pages.PatientSliceWriter`). ``run_dir`` adds the
    run's learning curves (from its train logs) to the report.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in OUTPUT_FILES}
    atomic_write_csv(paths["patients.csv"], result.patients)
    atomic_write_csv(paths["slices.csv"], result.slices)
    plots = render_plots(result)
    for name, png in plots.items():
        atomic_write_bytes(paths[name], png)
    curves = run_learning_curves_png(run_dir) if run_dir is not None else None
    if curves is not None:
        plots[CURVES_FILE] = curves  # shown in the report; the file itself lives beside train_log.csv
    links = None
    if patient_pages:
        write_patient_pages(result.patients, result.slices, out_dir, result.split)
        links = patient_links(result.patients)
    clusters = cluster_table(result.patients)
    html_text = render_report(
        result.summary, result.patients, plots, render_montages(result), clusters, title, links
    )
    atomic_write_text(paths["report.html"], html_text)
    atomic_write_json(paths["summary.json"], json_safe(result.summary))  # last: marks a complete evaluation
    return paths


class ReportWriter:
    """How the evaluate and cv stages render (:class:`mri_seg.evaluation.flow.ResultWriter`)."""

    def case_sink(self, out_dir: Path) -> PatientSliceWriter:
        clear_pages(out_dir)  # pages of an earlier evaluation would show other predictions
        return PatientSliceWriter(out_dir)

    def write(
        self, result: EvalResult, out_dir: Path, title: str, run_dir: Path, patient_pages: bool
    ) -> dict[str, Path]:
        return write_eval_outputs(result, out_dir, title, run_dir=run_dir, patient_pages=patient_pages)
