"""Self-contained HTML evaluation report: images as base64 data URIs, no external files.

Sections: run summary and metric statistics, the plots, best/median/worst patient
montages, a per-cluster table, and a per-patient table sortable by clicking a header
(a few lines of inline JavaScript).
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any, Sequence

import pandas as pd

from mri_seg.metrics import SUMMARY_METRICS
from mri_seg.reports.web import BASE_STYLE, SORT_JS, fmt, key_value_table

PATIENT_TABLE_COLUMNS = (
    "patient_id",
    "fold",  # out-of-fold (cv) reports only
    "dice",
    "iou",
    "hd95",
    "asd",
    "precision",
    "sensitivity",
    "true_volume",
    "pred_volume",
    "volume_rel_error",
    "true_tumour_slices",
    "pred_tumour_slices",
    "fp_slices",
    "fn_slices",
    "true_solidity",
    "pred_solidity",
    "true_irregularity",
    "pred_irregularity",
    "uncertainty",
    "review_flag",
)

_STYLE = BASE_STYLE + """img{max-width:100%;margin:6px 0}
.legend span{display:inline-block;width:14px;height:3px;margin:0 4px 3px 12px;vertical-align:middle}
.note{color:#555;font-size:13px;max-width:900px}
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _sort_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _cell(column: str, value: Any, links: dict[str, str] | None, link_column: str | None) -> str:
    text = html.escape(fmt(value))
    if links and column == link_column and str(value) in links:
        text = f'<a href="{html.escape(links[str(value)])}">{text}</a>'
    return f'<td data-v="{html.escape(_sort_value(value))}">{text}</td>'


def _table(
    frame: pd.DataFrame, css_class: str = "", row_id_column: str | None = None, links: dict[str, str] | None = None
) -> str:
    """``links``: value of ``row_id_column`` -> href, to make those cells links."""
    cls = f' class="{css_class}"' if css_class else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.to_dict(orient="records"):
        rid = f' id="patient-{html.escape(str(record[row_id_column]))}"' if row_id_column else ""
        cells = "".join(_cell(str(k), v, links, row_id_column) for k, v in record.items())
        rows.append(f"<tr{rid}>{cells}</tr>")
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _summary_table(summary: dict[str, Any]) -> str:
    rows = []
    for name in SUMMARY_METRICS:
        if f"{name}_mean" not in summary:
            continue
        lo, hi = summary.get(f"{name}_ci95", [math.nan, math.nan])
        rows.append(
            {
                "metric": name,
                "mean": summary[f"{name}_mean"],
                "median": summary[f"{name}_median"],
                "std": summary[f"{name}_std"],
                "min": summary[f"{name}_min"],
                "max": summary[f"{name}_max"],
                "95% CI of mean": f"[{fmt(lo)}, {fmt(hi)}]",
                "undefined (excluded)": summary.get(f"{name}_n_undefined", 0),
            }
        )
    return _table(pd.DataFrame(rows))


# (label, key) of the run facts at the top of the report, in order: from the summary, the
# (first) checkpoint, the post-processing options, then the summary again
_RUN_FACTS = (("split", "split"), ("patients", "n_patients"), ("slices", "n_slices"))
_CHECKPOINT_FACTS = (("checkpoint", "path"), ("checkpoint epoch", "epoch"))
_OPTION_FACTS = (
    ("threshold", "threshold"),
    ("min component (pixels)", "min_component_pixels"),
    ("min 3D component (voxels)", "min_component_voxels"),
    ("largest 3D component only", "largest_only"),
    ("largest by (component rule)", "component_rule"),
    ("also kept: components scoring >= this x the largest", "keep_ratio"),
    ("kept components grown into probability >= (hysteresis)", "grow_threshold"),
    ("enclosed holes filled (per slice)", "fill_holes"),
    ("FLAIR view: its components >= this probability added (0: off)", "flair_view_threshold"),
    ("FLAIR view: added where >= this x the kept tumour", "flair_view_min_ratio"),
    ("flip TTA", "tta_flip"),
    ("TTA rotations (degrees)", "tta_rotations"),
)
_INPUT_AND_TIME_FACTS = (("input sequences", "input_sequences"), ("seconds", "seconds"))


def _run_info(summary: dict[str, Any]) -> str:
    sources = (
        (_RUN_FACTS, summary),
        (_CHECKPOINT_FACTS, summary.get("checkpoint", {}) or {}),
        (_OPTION_FACTS, summary.get("options", {})),
        (_INPUT_AND_TIME_FACTS, summary),
    )
    items = [(label, source.get(key)) for facts, source in sources for label, key in facts]
    members = summary.get("checkpoints") or []
    for member in members if len(members) > 1 else []:  # several models (folds, ensemble members)
        label = f"fold {member['fold']}" if member.get("fold") is not None else "member"
        items.append((f"checkpoint ({label})", f"{member.get('path')} (epoch {member.get('epoch')})"))
    return key_value_table((k, v) for k, v in items if v is not None)


def _review_note(review: dict[str, Any] | None) -> str:
    """One paragraph: how many patients the review flag marks and how the score relates to Dice."""
    if not review:
        return ""
    rho = review.get("spearman_uncertainty_dice")
    rho_text = "" if rho is None or (isinstance(rho, float) and math.isnan(rho)) else f" Spearman correlation of uncertainty with patient Dice: {rho:.2f}."
    worst = review.get("worst_flagged")
    worst_text = "" if worst is None else f" Of the {review.get('worst_n')} lowest-Dice patients, {worst} are flagged."
    return (
        f'<p class="note"><b>Review flags.</b> {review.get("n_flagged", 0)} of {review.get("n", 0)} patients have an '
        f"uncertainty above {fmt(review.get('threshold'))} (disagreement of the prediction's passes; "
        f"see the uncertainty plot).{rho_text}{worst_text}</p>"
    )


def render_report(
    summary: dict[str, Any],
    patients: pd.DataFrame,
    plots: dict[str, bytes],
    montages: Sequence[tuple[str, str, float, bytes]],
    clusters: pd.DataFrame,
    title: str = "mri_seg evaluation",
    links: dict[str, str] | None = None,
) -> str:
    """The whole report as one HTML string.

    ``plots``: file name -> PNG; ``montages``: (label, patient_id, patient Dice, PNG);
    ``links``: patient_id -> relative href of the patient's page.
    """
    columns = [c for c in PATIENT_TABLE_COLUMNS if c in patients.columns]
    ordered = patients.sort_values("dice", ascending=False, kind="stable")[columns]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)} &mdash; split {html.escape(str(summary.get('split', '')))}</h1>",
        _run_info(summary),
        "<h2>Patient-level metrics</h2>",
        _summary_table(summary),
        f'<p class="note"><b>Conventions.</b> {html.escape(str(summary.get("conventions", "")))}</p>',
        _review_note(summary.get("review")),
        "<h2>Plots</h2>",
    ]
    for name, png in plots.items():
        parts.append(f'<figure><img src="{data_uri(png)}" alt="{html.escape(name)}"><figcaption>{html.escape(name)}'
                     "</figcaption></figure>")
    parts.append("<h2>Best, median and worst patients</h2>")
    parts.append(
        '<p class="legend">FLAIR with contours:<span style="background:#00e000"></span>truth'
        '<span style="background:#ff2a2a"></span>prediction; panels titled with the slice Dice.</p>'
    )
    for label, patient_id, dice, png in montages:
        parts.append(f"<h3>{html.escape(label)}: {html.escape(patient_id)} (Dice {fmt(float(dice))})</h3>")
        parts.append(f'<img src="{data_uri(png)}" alt="montage {html.escape(label)} {html.escape(patient_id)}">')
    if summary.get("folds"):
        parts.append("<h2>By fold</h2>")
        parts.append(_table(pd.DataFrame(summary["folds"])))
    parts.append("<h2>By genomic cluster</h2>")
    if clusters.empty:
        parts.append('<p class="note">No cluster columns in patients.csv.</p>')
    else:
        parts.append(_table(clusters))
    note = "Click a column header to sort." + (" Click a patient for their page: every slice, a slice viewer." if links else "")
    parts.append(f'<h2>Patients</h2><p class="note">{note}</p>')
    parts.append(_table(ordered, "sortable", row_id_column="patient_id", links=links))
    parts.append(f"<script>{SORT_JS}</script></body></html>")
    return "\n".join(parts)
