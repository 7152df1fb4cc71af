"""Evaluation figures as PNG bytes (matplotlib, Agg; no pyplot global state).

Each function returns the PNG, so the same bytes go to a file and into the HTML report.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

TRUE_COLOUR = "#00e000"  # green: ground-truth contour
PRED_COLOUR = "#ff2a2a"  # red: predicted contour
POINT_COLOUR = "#4c72b0"  # blue: patients' bars and points
DPI = 90


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _thousands(value: float, _pos: int | None = None) -> str:
    """Tick label with thousands separators: 12000 -> 12,000; 1.5e6 -> 1.5M."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    return f"{value:,.0f}"


def volume_axis(axis: Axis, log: bool = False) -> None:
    """Readable volume ticks: at most 5 of them, thousands separators (LGG volumes reach 10^5 pixels)."""
    if not log:
        axis.set_major_locator(MaxNLocator(nbins=5, min_n_ticks=3))
    axis.set_major_formatter(FuncFormatter(_thousands))


def _column(patients: pd.DataFrame, name: str) -> np.ndarray:
    return patients[name].to_numpy(dtype=float)


def _scatter(x: np.ndarray, y: np.ndarray, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """A figure with one axes and the patients as points (the per-patient scatter plots' look)."""
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=18, color=POINT_COLOUR, alpha=0.8)
    return fig, ax


def dice_by_patient_png(patients: pd.DataFrame) -> bytes:
    """Patient Dice, sorted descending, with mean and median lines."""
    ordered = patients.sort_values("dice", ascending=False, kind="stable")
    dice = _column(ordered, "dice")
    fig = Figure(figsize=(max(6.0, 0.22 * len(dice) + 2), 4))
    ax = fig.add_subplot()
    ax.bar(np.arange(len(dice)), dice, color=POINT_COLOUR)
    ax.axhline(float(np.mean(dice)), color="#dd8452", linestyle="-", label=f"mean {np.mean(dice):.3f}")
    ax.axhline(float(np.median(dice)), color="#55a868", linestyle="--", label=f"median {np.median(dice):.3f}")
    ax.set_xticks(np.arange(len(dice)))
    ax.set_xticklabels(ordered["patient_id"], rotation=90, fontsize=6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("patient Dice")
    ax.set_title(f"Dice per patient (n={len(dice)})")
    ax.legend(loc="upper right")
    return _png(fig)


def volume_scatter_png(patients: pd.DataFrame) -> bytes:
    """Predicted vs true tumour volume (pixels) with the identity line."""
    true, pred = _column(patients, "true_volume"), _column(patients, "pred_volume")
    fig, ax = _scatter(true, pred, (5, 5))
    top = max(1.0, float(np.max(true, initial=0)), float(np.max(pred, initial=0))) * 1.05
    ax.plot([0, top], [0, top], color="grey", linestyle="--", label="identity")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    volume_axis(ax.xaxis)
    volume_axis(ax.yaxis)
    ax.set_xlabel("true volume (pixels)")
    ax.set_ylabel("predicted volume (pixels)")
    ax.set_title("Tumour volume per patient")
    ax.legend(loc="upper left")
    return _png(fig)


def dice_vs_size_png(patients: pd.DataFrame) -> bytes:
    """Patient Dice against true tumour volume (log axis when volumes span decades)."""
    true, dice = _column(patients, "true_volume"), _column(patients, "dice")
    fig, ax = _scatter(true, dice, (6, 4))
    positive = true[true > 0]
    log = bool(positive.size and positive.max() / positive.min() > 20)
    if log:
        ax.set_xscale("symlog", linthresh=max(1.0, float(positive.min())))
    volume_axis(ax.xaxis, log)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("true tumour volume (pixels)")
    ax.set_ylabel("patient Dice")
    ax.set_title("Dice vs tumour size")
    return _png(fig)


def montage_png(slices: list, title: str, columns: int = 4) -> bytes:
    """FLAIR slices with true (green) and predicted (red) contours, each titled with its Dice.

    ``slices``: objects with ``slice_index``, ``flair``, ``truth``, ``pred``, ``dice``
    (:class:`mri_seg.evaluation.scoring.MontageSlice`).
    """
    n = max(1, len(slices))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.4 * cols, 2.5 * rows + 0.6))
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.axis("off")
        if k >= len(slices):
            continue
        s = slices[k]
        ax.imshow(s.flair, cmap="gray", interpolation="nearest")
        for mask, colour, width in ((s.truth, TRUE_COLOUR, 2.0), (s.pred, PRED_COLOUR, 1.0)):
            if np.any(mask) and not np.all(mask):  # truth drawn wider so both show where they coincide
                ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=width)
        ax.set_title(f"slice {s.slice_index} | Dice {s.dice:.2f}", fontsize=8)
    if not slices:
        fig.axes[0].text(0.5, 0.5, "no tumour slices", ha="center", va="center")
    handles = [Line2D([], [], color=TRUE_COLOUR, label="truth"), Line2D([], [], color=PRED_COLOUR, label="prediction")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def uncertainty_vs_dice_png(patients: pd.DataFrame, threshold: float, review: dict | None = None) -> bytes:
    """Patient Dice against the review-flag uncertainty; flagged patients in red, threshold dashed."""
    unc, dice = _column(patients, "uncertainty"), _column(patients, "dice")
    flagged = unc > threshold
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.scatter(unc[~flagged], dice[~flagged], s=22, color=POINT_COLOUR, alpha=0.85, label="not flagged")
    ax.scatter(unc[flagged], dice[flagged], s=22, color=PRED_COLOUR, alpha=0.85, label="flagged for review")
    ax.axvline(threshold, color="grey", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(left=0)
    ax.set_xlabel("uncertainty (pass disagreement, 0..1)")
    ax.set_ylabel("patient Dice")
    title = "Review flag: uncertainty vs Dice"
    rho = (review or {}).get("spearman_uncertainty_dice")
    if rho is not None and np.isfinite(rho):
        title += f" (Spearman {rho:.2f}, n={len(dice)})"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


PAIR_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")  # one per pair (seed)
HARD_COLOUR = "#000000"  # black ring: a hard patient


def paired_differences_png(differences: pd.DataFrame, small_below: float | None = None) -> bytes:
    """Per-patient differences (run - base) against true tumour volume, one colour per pair of runs.

    ``differences`` has columns ``pair`` (a label per run/base pair, e.g. a seed), ``true_volume``,
    ``diff`` and ``hard`` (bool: ringed in black). ``small_below`` draws the small-tumour boundary, so a
    change that trades the small tumours for the large ones shows as points below 0 on its left.
    """
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for i, (label, rows) in enumerate(differences.groupby("pair", sort=False)):
        colour = PAIR_COLOURS[i % len(PAIR_COLOURS)]
        mean = float(rows["diff"].mean())
        ax.scatter(_column(rows, "true_volume"), _column(rows, "diff"), s=18, color=colour, alpha=0.8,
                   label=f"{label} (mean {mean:+.3f})")  # fmt: skip
        hard = rows[rows["hard"].astype(bool)]
        ax.scatter(_column(hard, "true_volume"), _column(hard, "diff"), s=70, facecolors="none",
                   edgecolors=HARD_COLOUR, linewidths=1.0)  # fmt: skip
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    if small_below is not None:
        ax.axvline(small_below, color="0.4", linestyle="--", linewidth=0.8)
        ax.text(small_below, ax.get_ylim()[1], " small tumours ←", ha="right", va="top", fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    volume_axis(ax.xaxis, log=True)
    ax.set_xlabel("true tumour volume (pixels; log)")
    ax.set_ylabel("Dice difference, run − base")
    ax.set_title("Per patient, run against base (black rings: hard patients)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)
