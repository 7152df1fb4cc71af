"""The deliverable's threshold (and component keep_ratio and grow_threshold), chosen on out-of-fold predictions
(nnU-Net's habit for post-processing).

The ``cv`` stage predicts every train+val patient with the fold model that never saw it
and sweeps the probability threshold (``eval.postprocess.sweep_thresholds``).
With ``eval.postprocess.threshold_from_cv`` it writes the threshold with the best
out-of-fold mean patient Dice (ties: the one nearest 0.5) beside the fold models (with
``eval.postprocess.sweep_keep_ratios``, the best pair of threshold and ``keep_ratio``: ties
keep the configured ``keep_ratio``; with ``eval.postprocess.sweep_grow_thresholds`` the
hysteresis threshold is chosen with them), in
``RUN/checkpoints/postprocess.json``, together with the sha256 of every fold checkpoint it
was chosen for. Where the FLAIR view is on, cv also sweeps it (the same passes a FLAIR-only scan
gets) and stores a FLAIR-only scan's own threshold (and keep_ratio) under ``flair_only``: a model
given FLAIR alone is less sure than with three sequences, so its best threshold is lower.

``evaluate`` and ``infer`` given that folder (``--checkpoint RUN/checkpoints``, the
recipe's deliverable) use the stored threshold instead of ``<section>.postprocess.threshold``
while their ``threshold_from_cv`` is true -- but only when the folder's checkpoints are
still exactly the ones it was chosen for (a retrained fold makes the choice stale: it is
ignored with a note). A checkpoint file, several paths, or ``--threshold`` use the
configured threshold as before. An exported bundle (``export``) carries the choice in
``configs/mri_seg.json``, keyed to the sha256 of its own member files, and is read the same way. Where the threshold came from is recorded
(``summary.json`` / ``predictions.csv`` options, and a line on stderr).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from mri_seg.config import PostprocessConfig, ReviewConfig
from mri_seg.evaluation.scoring import threshold_key
from mri_seg.rundir import POSTPROCESS_FILE
from mri_seg.training.bundle import INFERENCE_FILE, bundle_choice, is_bundle
from mri_seg.utils.atomic import atomic_write_json

CHOICE_FILE = POSTPROCESS_FILE  # RunDir.postprocess_choice


@dataclass(frozen=True)
class ThresholdSource:
    """The threshold a command used and why (recorded beside its results)."""

    threshold: float
    source: str  # "config" | "cv: <path>"
    note: str = ""  # why a stored choice was not used, if there was one
    keep_ratio: float | None = None  # the keep_ratio cv chose with it (None: the configured one)
    grow_threshold: float | None = None  # the grow_threshold cv chose with it (None: the configured one)
    flair_only: tuple[float, float | None] | None = None  # a FLAIR-only scan's threshold and keep_ratio cv chose


def choose_threshold(summary: dict[str, Any]) -> float | None:
    """The swept threshold with the best out-of-fold mean patient Dice (``None``: no sweep)."""
    sweep = summary.get("threshold_sweep") or {}
    best = sweep.get("best_mean")
    return None if best is None else float(best)


def flair_only_choice(summary: dict[str, Any]) -> dict[str, Any] | None:
    """A FLAIR-only scan's threshold (and keep_ratio, where swept), chosen like the deliverable's on the
    out-of-fold FLAIR view (``summary["flair_only_sweep"]``); ``None`` where the cases had no FLAIR view.
    Only threshold and keep_ratio: a FLAIR-only scan keeps the deliverable's grow_threshold."""
    swept = summary.get("flair_only_sweep") or {}
    if swept.get("best_mean") is None:
        return None
    threshold = float(swept["best_mean"])
    choice: dict[str, Any] = {
        "threshold": threshold,
        "chosen_on": "out-of-fold mean patient Dice of the FLAIR view (FLAIR in every channel: a FLAIR-only scan)",
        "oof_dice_mean": swept.get("best_dice_mean", swept["thresholds"].get(threshold_key(threshold), {}).get("mean")),
        "sweep": swept["thresholds"],
    }
    if "best_keep_ratio" in swept:
        choice["keep_ratio"] = float(swept["best_keep_ratio"])
    return choice


def write_choice(folder: Path, summary: dict[str, Any], members: Sequence[dict[str, Any]]) -> Path | None:
    """Store the out-of-fold choice in ``folder/postprocess.json`` (atomically); ``None``: nothing to choose."""
    threshold = choose_threshold(summary)
    if threshold is None:
        return None
    swept = summary["threshold_sweep"]
    sweep = swept["thresholds"]
    chosen: tuple[str, ...] = ("threshold", "sweep_thresholds")
    if "best_keep_ratio" in swept:
        chosen += ("keep_ratio", "sweep_keep_ratios")
    if "best_grow_threshold" in swept:
        chosen += ("grow_threshold", "sweep_grow_thresholds")
    choice = {
        "threshold": threshold,
        "chosen_on": "out-of-fold mean patient Dice (the cv stage)",
        "n_patients": int(summary["n_patients"]),
        "oof_dice_mean": swept.get("best_dice_mean", sweep.get(threshold_key(threshold), {}).get("mean")),
        "sweep": sweep,
        # the rest of the post-processing, fixed during the sweep (largest_only, TTA, ...)
        "fixed_options": {k: v for k, v in summary.get("options", {}).items() if k not in chosen},
        "members": sorted(str(m["sha256"]) for m in members),
    }
    if "best_keep_ratio" in swept:  # eval.postprocess.sweep_keep_ratios: the pair was chosen
        choice["keep_ratio"] = float(swept["best_keep_ratio"])
        choice["grid"] = swept["grid"]
    if "best_grow_threshold" in swept:  # eval.postprocess.sweep_grow_thresholds: chosen with them
        choice["grow_threshold"] = float(swept["best_grow_threshold"])
    flair_only = flair_only_choice(summary)
    if flair_only is not None:
        choice["flair_only"] = flair_only
    review = summary.get("review") or {}
    if "budget" in review:  # eval.review.budget: the review flag calibrated on the same out-of-fold patients
        choice["review"] = {key: review[key] for key in
                            ("threshold", "budget", "n", "n_flagged", "below_half", "below_half_flagged")}  # fmt: skip
    path = folder / CHOICE_FILE
    atomic_write_json(path, choice)
    return path


def read_choice(given: Sequence[Path], members: Sequence[dict[str, Any]]) -> tuple[dict | None, str]:
    """The stored choice that applies to these checkpoints, or ``None`` and why not ("" if there is none)."""
    if len(given) != 1 or not Path(given[0]).is_dir():
        return None, ""
    folder = Path(given[0])
    if is_bundle(folder):  # an exported bundle carries the run's choice, keyed to its own member files
        path = folder / INFERENCE_FILE
    else:
        path = folder / CHOICE_FILE
    if not path.is_file():
        return None, ""
    try:
        choice = bundle_choice(folder) if is_bundle(folder) else json.loads(path.read_text())
        if choice is None:
            return None, ""
        threshold = float(choice["threshold"])
        recorded = sorted(map(str, choice["members"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{path} is unreadable ({exc}); using the configured threshold"
    if not 0.0 <= threshold <= 1.0:
        return None, f"{path}: threshold {threshold} is outside [0, 1]; using the configured threshold"
    keep_ratio = choice.get("keep_ratio")
    if keep_ratio is not None and not (isinstance(keep_ratio, (int, float)) and 0.0 < keep_ratio <= 1.0):
        return None, f"{path}: keep_ratio {keep_ratio!r} is outside (0, 1]; using the configured post-processing"
    grow = choice.get("grow_threshold")
    if grow is not None and not (isinstance(grow, (int, float)) and 0.0 <= grow <= 1.0):
        return None, f"{path}: grow_threshold {grow!r} is outside [0, 1]; using the configured post-processing"
    flair_only = choice.get("flair_only")
    if flair_only is not None and not _valid_flair_only(flair_only):
        return None, f"{path}: flair_only {flair_only!r} is not a threshold in [0, 1]; using the configured post-processing"
    if recorded != sorted(str(m["sha256"]) for m in members):
        return None, (
            f"{path} was chosen for other checkpoints (a fold was retrained since the cv stage); "
            "using the configured threshold: re-run cv to choose again"
        )
    return {**choice, "path": str(path)}, ""


def _valid_flair_only(entry: Any) -> bool:
    """A stored FLAIR-only choice: a threshold in [0, 1] and, if any, a keep_ratio in (0, 1]."""
    if not isinstance(entry, dict) or not isinstance(entry.get("threshold"), (int, float)):
        return False
    ratio = entry.get("keep_ratio")
    return 0.0 <= entry["threshold"] <= 1.0 and (ratio is None or (isinstance(ratio, (int, float)) and 0 < ratio <= 1))


def resolve_threshold(
    pp: PostprocessConfig, given: Sequence[Path], members: Sequence[dict[str, Any]]
) -> tuple[PostprocessConfig, ThresholdSource]:
    """``pp`` with the deliverable's chosen threshold (and keep_ratio, where cv chose one and ``pp``
    keeps the largest component; and grow_threshold, where cv chose one) when ``pp.threshold_from_cv``
    and a choice applies."""
    if not pp.threshold_from_cv:
        return pp, ThresholdSource(float(pp.threshold), "config")
    choice, note = read_choice(given, members)
    if choice is None:
        return pp, ThresholdSource(float(pp.threshold), "config", note)
    source = ThresholdSource(choice["threshold"], f"cv: {choice['path']}")
    pp = replace(pp, threshold=choice["threshold"])
    if choice.get("keep_ratio") is not None and pp.largest_only:
        ratio = float(choice["keep_ratio"])
        pp, source = replace(pp, keep_ratio=ratio), replace(source, keep_ratio=ratio)
    if choice.get("grow_threshold") is not None:
        grow = float(choice["grow_threshold"])
        pp, source = replace(pp, grow_threshold=grow), replace(source, grow_threshold=grow)
    flair_only = choice.get("flair_only")
    if flair_only is not None:  # a FLAIR-only scan's own pair (mri_seg.postprocess.for_flair_only)
        pp = replace(pp, flair_only_threshold=float(flair_only["threshold"]))
        if flair_only.get("keep_ratio") is not None and pp.largest_only:
            pp = replace(pp, flair_only_keep_ratio=float(flair_only["keep_ratio"]))
        source = replace(source, flair_only=(pp.flair_only_threshold, pp.flair_only_keep_ratio or None))
    return pp, source


def report_threshold(threshold: ThresholdSource) -> None:
    """One stderr line when the threshold is the deliverable's out-of-fold choice, or a stored one was not used."""
    if threshold.note:
        print(f"note: {threshold.note}", file=sys.stderr)
    elif threshold.source != "config":
        ratio = "" if threshold.keep_ratio is None else f", keep_ratio {threshold.keep_ratio:g}"
        ratio += "" if threshold.grow_threshold is None else f", grow_threshold {threshold.grow_threshold:g}"
        if threshold.flair_only is not None:
            value, keep = threshold.flair_only
            ratio += f"; FLAIR-only scans {value}" + ("" if keep is None else f", keep_ratio {keep:g}")
        print(f"threshold {threshold.threshold}{ratio} (chosen on out-of-fold predictions, {threshold.source})",
              file=sys.stderr)  # fmt: skip


def resolve_review(
    review: ReviewConfig, given: Sequence[Path], members: Sequence[dict[str, Any]]
) -> tuple[ReviewConfig, ThresholdSource]:
    """``review`` with the review threshold cv chose for its budget, when ``review.threshold_from_cv``
    and a stored choice with one applies to these checkpoints (as for :func:`resolve_threshold`)."""
    if not review.threshold_from_cv:
        return review, ThresholdSource(float(review.threshold), "config")
    choice, note = read_choice(given, members)
    if choice is None:
        return review, ThresholdSource(float(review.threshold), "config", note)
    stored = choice.get("review") or {}
    try:
        value = float(stored["threshold"])
    except (KeyError, TypeError, ValueError):
        return review, ThresholdSource(float(review.threshold), "config", note)
    if not 0.0 <= value <= 1.0:
        return review, ThresholdSource(float(review.threshold), "config", f"review threshold {value} is outside [0, 1]")
    source = f"cv: {choice['path']} (flags {stored.get('budget')} of the out-of-fold patients)"
    return replace(review, threshold=value), ThresholdSource(value, source)


def report_review(review: ThresholdSource) -> None:
    """One stderr line when the review threshold is the deliverable's out-of-fold choice."""
    if review.source != "config":
        print(f"review threshold {review.threshold:.4f} ({review.source})", file=sys.stderr)
