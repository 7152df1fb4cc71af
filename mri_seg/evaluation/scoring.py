"""Scoring patients: probabilities per slice -> masks -> metric tables and a summary (arrays in, tables out).

:func:`evaluate_cases` takes :class:`PatientCase` arrays, so it is tested without a model;
:mod:`mri_seg.evaluation.prediction` feeds it from a run directory and a predictor.

Postprocessing options act only through their mechanism: ``threshold`` binarises the
probability map, ``min_component_pixels`` removes small connected components per slice,
``min_component_voxels`` / ``largest_only`` filter 3D components of the patient's stacked
volume (all via :func:`mri_seg.postprocess.apply_postprocess`), ``tta_flip`` is applied
by the predictor when it computes the probabilities (it is recorded here).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from mri_seg.config import EvalConfig, PostprocessConfig, ReviewConfig
from mri_seg.config.names import COMPONENT_RULES
from mri_seg.inference.tta import passes_per_member
from mri_seg.metrics import CONVENTIONS, SUMMARY_METRICS, describe, patient_metrics, slice_metrics
from mri_seg.postprocess import apply_postprocess
from mri_seg.shape import prefixed_shape_features
from mri_seg.uncertainty import budget_threshold, review_summary, scan_uncertainty

CLUSTER_COLUMNS = (
    "RNASeqCluster",
    "MethylationCluster",
    "miRNACluster",
    "CNCluster",
    "RPPACluster",
    "OncosignCluster",
    "COCCluster",
)
BOOTSTRAP_SEED = 0
# Thresholds at which every evaluation also scores each patient (summary.json "threshold_sweep"): on
# out-of-fold predictions (the cv stage) this is how a recipe's threshold is chosen. The default of
# eval.postprocess.sweep_thresholds (its one home is the config schema).
SWEEP_THRESHOLDS = tuple(PostprocessConfig().sweep_thresholds)
SWEEP_PREFIX = "dice_at_"
# The same sweep of the FLAIR view (FLAIR in every channel: what a FLAIR-only scan is given), where the
# cases have one: cv chooses a FLAIR-only scan's threshold on it (summary.json "flair_only_sweep").
FLAIR_ONLY_PREFIX = "flair_only_"


@dataclass(frozen=True)
class EvalOptions:
    """Postprocessing applied before the metrics (recorded in summary.json)."""

    threshold: float = 0.5
    min_component_pixels: int = 0
    tta_flip: bool = False
    min_component_voxels: int = 0
    largest_only: bool = False
    component_rule: str = "size"
    keep_ratio: float = 1.0
    sweep_keep_ratios: tuple[float, ...] = ()  # also swept with largest_only (the cv choice picks the pair)
    grow_threshold: float = 0.0  # hysteresis (mri_seg.postprocess): 0 off
    sweep_grow_thresholds: tuple[float, ...] = ()  # also swept (the cv choice picks threshold, keep_ratio, grow)
    fill_holes: bool = False  # regions a slice's mask encloses filled (mri_seg.postprocess)
    flair_view_threshold: float = 0.0  # the FLAIR view's components added (mri_seg.postprocess): 0 off
    flair_view_min_ratio: float = 1.5
    sweep_thresholds: tuple[float, ...] = SWEEP_THRESHOLDS  # the thresholds the sweep scores
    flair_only_threshold: float = 0.0  # a FLAIR-only scan's threshold (mri_seg.postprocess.for_flair_only): 0 threshold
    flair_only_keep_ratio: float = 0.0  # and keep_ratio: 0 keep_ratio
    bright_quantile: float = 0.75  # component_rule bright (mri_seg.postprocess.bright_voxels)
    tta_rotations: tuple[float, ...] = ()  # test-time rotations (mri_seg.inference.tta): more passes per member
    close_radius: float = 0.0  # per-slice closing, a fraction of the slice width (mri_seg.postprocess): 0 off

    @classmethod
    def from_config(cls, pp: PostprocessConfig) -> "EvalOptions":
        return cls(
            float(pp.threshold), int(pp.min_component_pixels), bool(pp.tta_flip),
            int(pp.min_component_voxels), bool(pp.largest_only), str(pp.component_rule), float(pp.keep_ratio),
            tuple(float(r) for r in pp.sweep_keep_ratios), float(pp.grow_threshold),
            tuple(float(g) for g in pp.sweep_grow_thresholds), bool(pp.fill_holes),
            float(pp.flair_view_threshold), float(pp.flair_view_min_ratio),
            tuple(float(t) for t in pp.sweep_thresholds), float(pp.flair_only_threshold),
            float(pp.flair_only_keep_ratio), float(pp.bright_quantile), tuple(float(r) for r in pp.tta_rotations),
            float(pp.close_radius),
        )  # fmt: skip

    def swept_keep_ratios(self) -> list[float]:
        """The keep_ratio values the sweep scores besides the configured one (only with largest_only)."""
        if not self.largest_only:
            return []
        return sorted({float(r) for r in self.sweep_keep_ratios} - {float(self.keep_ratio)}, reverse=True)

    def swept_grow_thresholds(self) -> list[float]:
        """The grow_threshold values the sweep scores besides the configured one."""
        return sorted({float(g) for g in self.sweep_grow_thresholds} - {float(self.grow_threshold)})

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.min_component_pixels < 0:
            raise ValueError(f"min_component_pixels must be >= 0, got {self.min_component_pixels}")
        if self.min_component_voxels < 0:
            raise ValueError(f"min_component_voxels must be >= 0, got {self.min_component_voxels}")
        if self.component_rule not in COMPONENT_RULES:
            raise ValueError(f"component_rule must be one of {', '.join(COMPONENT_RULES)}, got '{self.component_rule}'")
        for ratio in (self.keep_ratio, *self.sweep_keep_ratios):
            if not 0.0 < ratio <= 1.0:
                raise ValueError(f"keep_ratio must be in (0, 1], got {ratio}")
        for grow in (self.grow_threshold, *self.sweep_grow_thresholds):
            if not 0.0 <= grow <= 1.0:
                raise ValueError(f"grow_threshold must be in [0, 1], got {grow}")
        if not self.sweep_thresholds or not all(0.0 < t < 1.0 for t in self.sweep_thresholds):
            raise ValueError(f"sweep_thresholds must be one or more values in (0, 1), got {list(self.sweep_thresholds)}")
        if not 0.0 <= self.flair_view_threshold <= 1.0:
            raise ValueError(f"flair_view_threshold must be in [0, 1], got {self.flair_view_threshold}")
        if self.flair_view_min_ratio <= 0.0:
            raise ValueError(f"flair_view_min_ratio must be > 0, got {self.flair_view_min_ratio}")
        if not 0.0 < self.bright_quantile < 1.0:
            raise ValueError(f"bright_quantile must be in (0, 1), got {self.bright_quantile}")
        for name in ("flair_only_threshold", "flair_only_keep_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (0: off), got {getattr(self, name)}")

    @property
    def uses_flair_view(self) -> bool:
        """Whether the cases need the FLAIR view's probabilities (``PatientCase.view_prob``)."""
        return self.flair_view_threshold > 0.0


@dataclass
class PatientCase:
    """One patient's slices in slice order: probabilities, truth and (optionally) the FLAIR channel."""

    patient_id: str
    slice_indices: list[int]
    prob: np.ndarray  # D x H x W float in [0, 1]
    truth: np.ndarray  # D x H x W bool
    flair: np.ndarray | None = None  # D x H x W uint8, for the report montage
    case_id: str | None = None
    passes: np.ndarray | None = None  # P x D x H x W per-pass maps (flip TTA / members), for the review flag
    view_prob: np.ndarray | None = None  # D x H x W, the FLAIR view (FLAIR in every channel), where the options use it


@dataclass
class MontageSlice:
    """A slice kept for the report montage (FLAIR with true and predicted masks)."""

    slice_index: int
    flair: np.ndarray
    truth: np.ndarray
    pred: np.ndarray
    dice: float


@dataclass
class EvalResult:
    split: str
    patients: pd.DataFrame  # one row per patient (metrics + shape features [+ clinical columns])
    slices: pd.DataFrame  # one row per slice
    summary: dict[str, Any]
    montage: dict[str, list[MontageSlice]] = field(default_factory=dict)  # patient_id -> kept slices



def binarise(
    prob: np.ndarray, options: EvalOptions, view_prob: np.ndarray | None = None, flair: np.ndarray | None = None
) -> np.ndarray:
    """Threshold + component filtering per slice and in 3D (the inference stage's postprocess);
    ``view_prob``: the FLAIR view, ``flair``: the patient's FLAIR, where ``options`` use them."""
    return np.asarray(apply_postprocess(prob, options, view_prob, flair), dtype=bool)


def _montage_slices(case: PatientCase, pred: np.ndarray, slice_dice: list[float], limit: int) -> list[MontageSlice]:
    """The ``limit`` slices with the most true + predicted tumour, in slice order."""
    if case.flair is None or limit <= 0:
        return []
    amount = case.truth.reshape(len(pred), -1).sum(1) + pred.reshape(len(pred), -1).sum(1)
    order = [int(i) for i in np.argsort(-amount, kind="stable") if amount[i] > 0][:limit]
    return [
        MontageSlice(case.slice_indices[i], case.flair[i], case.truth[i], pred[i], slice_dice[i]) for i in sorted(order)
    ]


def evaluate_case(
    case: PatientCase, options: EvalOptions, montage_slices: int = 0, review_threshold: float = ReviewConfig.threshold
) -> tuple[dict[str, Any], list[dict[str, Any]], list[MontageSlice]]:
    """Metrics of one patient: (patient row, slice rows, montage slices).

    The row ends with the review-flag columns (:mod:`mri_seg.uncertainty`), from
    ``case.passes`` or, without them, from the mean map as a single pass.
    """
    if case.prob.shape != case.truth.shape:
        raise ValueError(
            f"patient {case.patient_id}: probabilities {case.prob.shape} do not match masks {case.truth.shape}"
        )
    truth = np.asarray(case.truth, dtype=bool)
    pred = binarise(case.prob, options, case.view_prob, case.flair)
    row: dict[str, Any] = {"patient_id": case.patient_id}
    if case.case_id is not None:
        row["case_id"] = case.case_id
    row["n_slices"] = len(case.slice_indices)
    row.update(patient_metrics(pred, truth))
    row.update(threshold_sweep(case.prob, truth, options, case.view_prob, case.flair))
    if case.view_prob is not None:  # a FLAIR-only scan's prediction: no view of its own
        flair_only = threshold_sweep(case.view_prob, truth, options, flair=case.flair)
        row.update({FLAIR_ONLY_PREFIX + column: dice for column, dice in flair_only.items()})
    row.update(prefixed_shape_features(pred, truth))
    passes = case.passes if case.passes is not None else case.prob[None]
    per_member = passes_per_member(options.tta_flip, options.tta_rotations)  # a predictor's passes: member by member
    if passes.shape[0] % per_member:
        per_member = 1  # not a predictor's passes (e.g. a slice function's one map)
    row.update(scan_uncertainty(passes, options.threshold, per_member).columns(review_threshold))
    slice_rows: list[dict[str, Any]] = []
    for i, index in enumerate(case.slice_indices):
        metrics = slice_metrics(pred[i], truth[i])
        slice_rows.append({"patient_id": case.patient_id, "slice_index": int(index), **metrics})
    montage = _montage_slices(case, pred, [r["dice"] for r in slice_rows], montage_slices)
    return row, slice_rows, montage


def _sweep_pattern(prefix: str = "") -> re.Pattern[str]:
    """The sweep's column names (``prefix``: ``FLAIR_ONLY_PREFIX`` for the FLAIR view's sweep)."""
    return re.compile(rf"^{prefix}{SWEEP_PREFIX}(\d+\.\d+)(?:_keep_([0-9.]+))?(?:_grow_([0-9.]+))?$")


def threshold_key(threshold: float) -> str:
    """How a swept threshold is written in column names and summary keys: ``0.3``, ``0.25``."""
    text = f"{threshold:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def sweep_column(threshold: float, keep_ratio: float | None = None, grow_threshold: float | None = None) -> str:
    """``dice_at_0.3``: at the configured keep_ratio and grow_threshold; ``dice_at_0.3_keep_0.5``,
    ``dice_at_0.3_grow_0.1``, ``dice_at_0.3_keep_0.5_grow_0.1``: at other ones."""
    keep = "" if keep_ratio is None else f"_keep_{keep_ratio:g}"
    grow = "" if grow_threshold is None else f"_grow_{grow_threshold:g}"
    return f"{SWEEP_PREFIX}{threshold_key(threshold)}{keep}{grow}"


def threshold_sweep(
    prob: np.ndarray,
    truth: np.ndarray,
    options: EvalOptions,
    view_prob: np.ndarray | None = None,
    flair: np.ndarray | None = None,
) -> dict[str, float]:
    """Patient Dice at each of ``options.sweep_thresholds`` (and each of ``options.swept_keep_ratios()`` and
    ``options.swept_grow_thresholds()``), every other postprocess setting unchanged."""
    out = {}
    for ratio in [None, *options.swept_keep_ratios()]:
        for grow in [None, *options.swept_grow_thresholds()]:
            changed = options if ratio is None else replace(options, keep_ratio=ratio)
            changed = changed if grow is None else replace(changed, grow_threshold=grow)
            for t in options.sweep_thresholds:
                dice = patient_metrics(binarise(prob, replace(changed, threshold=t), view_prob, flair), truth)["dice"]
                out[sweep_column(t, ratio, grow)] = float(dice)
    return out


def sweep_summary(
    patients: pd.DataFrame, keep_ratio: float = 1.0, grow_threshold: float = 0.0, prefix: str = ""
) -> dict[str, Any]:
    """Mean and median patient Dice per swept threshold (at the configured ``keep_ratio`` and
    ``grow_threshold``), and the threshold with the best mean; where other keep_ratio or grow_threshold
    values were swept, every combination in ``grid`` and the best (ties: the configured keep_ratio, then
    the configured grow_threshold, then the threshold nearest 0.5) in ``best_mean``, ``best_keep_ratio``
    and (where grow_threshold was swept) ``best_grow_threshold``. ``prefix``: the columns of another
    sweep (``FLAIR_ONLY_PREFIX``)."""
    grid = []
    pattern = _sweep_pattern(prefix)
    for c in patients.columns:
        match = pattern.match(c)
        if match:
            ratio = float(match.group(2)) if match.group(2) else float(keep_ratio)
            grow = float(match.group(3)) if match.group(3) else float(grow_threshold)
            grid.append({"threshold": float(match.group(1)), "keep_ratio": ratio, "grow_threshold": grow,
                         "mean": float(patients[c].mean()), "median": float(patients[c].median())})  # fmt: skip
    if not grid:
        return {}
    configured = [g for g in grid if g["keep_ratio"] == keep_ratio and g["grow_threshold"] == grow_threshold]
    table = {threshold_key(g["threshold"]): {"mean": g["mean"], "median": g["median"]} for g in configured}
    best = max(grid, key=lambda g: (g["mean"], g["keep_ratio"] == keep_ratio, g["grow_threshold"] == grow_threshold,
                                    -abs(g["threshold"] - 0.5)))  # fmt: skip
    out: dict[str, Any] = {"thresholds": table, "best_mean": best["threshold"]}
    if len(configured) < len(grid):
        out.update(grid=grid, best_keep_ratio=best["keep_ratio"], best_dice_mean=best["mean"])
        if any(g["grow_threshold"] != grow_threshold for g in grid):  # swept: chosen with the rest
            out["best_grow_threshold"] = best["grow_threshold"]
    return out


def summarise_patients(
    patients: pd.DataFrame, n_slices: int, options: EvalOptions, bootstrap_samples: int, seed: int = BOOTSTRAP_SEED
) -> dict[str, Any]:
    """Aggregate statistics over patients (NaNs excluded and counted) plus the options used."""
    summary: dict[str, Any] = {"n_patients": int(len(patients)), "n_slices": int(n_slices)}
    for name in SUMMARY_METRICS:
        values = patients[name].to_numpy(dtype=float) if name in patients else np.array([])
        summary.update(describe(values, name, bootstrap_samples, seed))
    summary["options"] = asdict(options)
    summary["threshold_sweep"] = sweep_summary(patients, options.keep_ratio, options.grow_threshold)
    flair_only = sweep_summary(patients, options.keep_ratio, options.grow_threshold, FLAIR_ONLY_PREFIX)
    if flair_only:
        summary["flair_only_sweep"] = flair_only
    summary["bootstrap"] = {"samples": int(bootstrap_samples), "seed": int(seed), "level": 0.95}
    summary["conventions"] = CONVENTIONS
    return summary


CaseSink = Callable[[PatientCase, np.ndarray, list[dict[str, Any]]], None]  # (case, binary prediction, slice rows)


def evaluate_cases(
    cases: Iterable[PatientCase],
    options: EvalOptions,
    eval_cfg: EvalConfig,
    split: str = "test",
    on_case: CaseSink | None = None,
) -> EvalResult:
    """Evaluate patients one at a time (probabilities are not kept) and summarise them.

    ``on_case`` sees each patient while its volume is in memory (the patient pages'
    slice pictures are drawn there).
    """
    start = time.perf_counter()
    rows, slice_rows, montage = [], [], {}
    for case in cases:
        row, srows, kept = evaluate_case(case, options, eval_cfg.montage_slices, eval_cfg.review.threshold)
        if on_case is not None:
            on_case(case, binarise(case.prob, options, case.view_prob, case.flair), srows)
        rows.append(row)
        slice_rows.extend(srows)
        if kept:
            montage[case.patient_id] = kept
    if not rows:
        raise ValueError(f"no patients to evaluate in split '{split}'")
    patients = pd.DataFrame(rows)
    slices = pd.DataFrame(slice_rows)
    summary = {"split": split, **summarise_patients(patients, len(slices), options, eval_cfg.bootstrap_samples)}
    summary["review"] = review_summary(patients["uncertainty"], patients["dice"], eval_cfg.review.threshold)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return EvalResult(split, patients, slices, summary, montage)


def cluster_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice and mean true tumour volume per value of each genomic cluster column present."""
    rows = []
    for column in CLUSTER_COLUMNS:
        if column not in patients.columns:
            continue
        for value, group in patients.dropna(subset=[column]).groupby(column, sort=True):
            rows.append(
                {
                    "cluster": column,
                    "value": value.item() if hasattr(value, "item") else value,
                    "n_patients": int(len(group)),
                    "dice_mean": float(group["dice"].mean()),
                    "true_volume_mean": float(group["true_volume"].mean()),
                }
            )
    return pd.DataFrame(rows, columns=["cluster", "value", "n_patients", "dice_mean", "true_volume_mean"])


def ranked_patients(patients: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, patient_id) for the best, median and worst patient by Dice (duplicates dropped)."""
    ordered = patients.sort_values(["dice", "patient_id"], ascending=[False, True], kind="stable")
    ids = list(ordered["patient_id"])
    if not ids:
        return []
    picks = [("best", ids[0]), ("median", ids[len(ids) // 2]), ("worst", ids[-1])]
    seen: set[str] = set()
    out = []
    for label, pid in picks:
        if pid not in seen:
            seen.add(pid)
            out.append((label, pid))
    return out


def apply_review_budget(result: EvalResult, budget: float) -> float:
    """Flag the ``budget`` fraction of ``result``'s most uncertain patients (cv: the threshold is then
    stored with the deliverable); rewrites ``review_flag`` and the summary's ``review``; the threshold."""
    patients = result.patients
    threshold = budget_threshold(patients["uncertainty"].to_numpy(), budget)
    patients["review_flag"] = patients["uncertainty"] > threshold
    review = review_summary(patients["uncertainty"].to_numpy(), patients["dice"].to_numpy(), threshold)
    result.summary["review"] = {**review, "budget": float(budget), "chosen_on": "out-of-fold uncertainty (cv)"}
    return threshold
