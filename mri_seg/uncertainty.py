"""Review flags: how much a prediction's own passes disagree, as one score per scan or patient.

Inference already computes several probability maps per slice and averages them: the
flip-TTA passes and, with an ensemble, every member x flip. Where they agree and are
confident the mean map is near 0 or 1; where the model is unsure it is near 0.5 or the
passes segment different amounts of tumour. Two measures over a volume's passes
``P x D x H x W``:

- ``entropy``: mean binary entropy (bits, 0..1) of the mean map over the *region*, the
  pixels that any pass, or the mean, calls tumour (``>= threshold``). Confident, agreeing
  passes give sharp edges and a low value; soft or disagreeing maps a high one. A scan
  where no pass predicts tumour has an empty region and entropy 0.
- ``volume_spread``: (largest - smallest) / mean of the passes' tumour volumes (pixels
  ``>= threshold``), 0 with one pass or when no pass predicts tumour, capped at 1.

``score`` = mean of the two (0..1); a scan is flagged for review when ``score`` exceeds
the configured threshold (``eval.review.threshold`` / ``infer.review.threshold``).

An ensemble's passes are scored member by member (``passes_per_member``: each member's own
flip passes) and the members' scores averaged, so the score has the scale of one model's
whatever the number of members: a threshold chosen on out-of-fold predictions (one fold
model per patient, :func:`budget_threshold`) means the same for the 5-member deliverable.
Pooling all members' passes instead made the ensemble's spread and entropy larger and
flagged most patients at a threshold chosen for one model (issue 19).

Scores are accumulated slice by slice (:class:`UncertaintyAccumulator`), so a large
volume never needs all its passes in memory at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_EPS = 1e-7
COLUMNS = ("uncertainty", "uncertainty_entropy", "uncertainty_volume_spread", "review_flag")


@dataclass(frozen=True)
class Uncertainty:
    """Uncertainty of one scan or patient (see the module docstring)."""

    score: float
    entropy: float
    volume_spread: float
    region_pixels: int
    n_passes: int

    def columns(self, flag_threshold: float) -> dict[str, float | bool]:
        """The table columns: ``uncertainty``, its two parts, ``review_flag``."""
        return {
            "uncertainty": round(self.score, 6),
            "uncertainty_entropy": round(self.entropy, 6),
            "uncertainty_volume_spread": round(self.volume_spread, 6),
            "review_flag": review_flag(self.score, flag_threshold),
        }

    def as_dict(self) -> dict:
        return asdict(self)


def binary_entropy(prob: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli(p) per pixel: 0 at p in {0, 1}, 1 at p = 0.5."""
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1.0 - _EPS)
    return -(p * np.log2(p) + (1.0 - p) * np.log2(1.0 - p))


def volume_spread(volumes: np.ndarray) -> float:
    """(max - min) / mean of the passes' volumes, in [0, 1] (capped); 0 when all are empty."""
    volumes = np.asarray(volumes, dtype=np.float64)
    if volumes.size < 2 or volumes.mean() <= 0:
        return 0.0
    return float(min(1.0, (volumes.max() - volumes.min()) / volumes.mean()))


def combine(entropy: float, spread: float) -> float:
    """The review score: the mean of the two measures (each in [0, 1])."""
    return 0.5 * (float(entropy) + float(spread))


def review_flag(score: float, threshold: float) -> bool:
    """Flag for review when the score is strictly above the threshold."""
    return bool(score > threshold)


class _PassGroup:
    """The running sums of one group of passes (one ensemble member's, or all of them)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.entropy_sum = 0.0
        self.region_pixels = 0
        self.volumes: np.ndarray | None = None

    def add(self, passes: np.ndarray) -> None:
        n = passes.shape[0]
        if self.volumes is None:
            self.volumes = np.zeros(n, dtype=np.float64)
        elif len(self.volumes) != n:
            raise ValueError(f"got {n} passes after {len(self.volumes)}")
        above = passes >= self.threshold
        mean = passes.mean(axis=0)
        region = above.any(axis=0) | (mean >= self.threshold)
        self.volumes += above.reshape(n, -1).sum(axis=1)
        self.region_pixels += int(region.sum())
        if region.any():
            self.entropy_sum += float(binary_entropy(mean[region]).sum())

    def result(self) -> Uncertainty:
        volumes = self.volumes if self.volumes is not None else np.zeros(1)
        entropy = self.entropy_sum / self.region_pixels if self.region_pixels else 0.0
        spread = volume_spread(volumes)
        return Uncertainty(combine(entropy, spread), float(entropy), spread, self.region_pixels, len(volumes))


class UncertaintyAccumulator:
    """Adds up a volume's passes one slice (``P x H x W``) or one block (``P x D x H x W``) at a time.

    ``passes_per_member``: the passes come member by member, this many each (2 with flip
    TTA); each member is scored on its own passes and the scores averaged (module docstring).
    """

    def __init__(self, threshold: float = 0.5, passes_per_member: int = 0):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if passes_per_member < 0:
            raise ValueError(f"passes_per_member must be >= 0, got {passes_per_member}")
        self.threshold = float(threshold)
        self.passes_per_member = int(passes_per_member)  # 0: all passes are one group
        self.groups: list[_PassGroup] = []

    def add(self, passes: np.ndarray) -> None:
        passes = np.asarray(passes, dtype=np.float32)
        if passes.ndim < 3:
            raise ValueError(f"passes must be P x H x W or P x D x H x W, got shape {passes.shape}")
        n = passes.shape[0]
        size = self.passes_per_member or n
        if n % size:
            raise ValueError(f"{n} passes are not whole members of {size} passes each")
        if not self.groups:
            self.groups = [_PassGroup(self.threshold) for _ in range(n // size)]
        elif len(self.groups) * size != n:
            raise ValueError(f"got {n} passes after {len(self.groups) * size}")
        for k, group in enumerate(self.groups):
            group.add(passes[k * size : (k + 1) * size])

    def result(self) -> Uncertainty:
        if not self.groups:
            return _PassGroup(self.threshold).result()
        if len(self.groups) == 1:
            return self.groups[0].result()
        parts = [g.result() for g in self.groups]
        return Uncertainty(
            float(np.mean([u.score for u in parts])),
            float(np.mean([u.entropy for u in parts])),
            float(np.mean([u.volume_spread for u in parts])),
            int(round(float(np.mean([u.region_pixels for u in parts])))),
            sum(u.n_passes for u in parts),
        )


def scan_uncertainty(passes: np.ndarray, threshold: float = 0.5, passes_per_member: int = 0) -> Uncertainty:
    """Uncertainty of one volume's passes ``P x D x H x W`` (or one slice's ``P x H x W``); with
    ``passes_per_member`` (> 0) scored member by member and averaged."""
    acc = UncertaintyAccumulator(threshold, passes_per_member)
    acc.add(passes)
    return acc.result()


def budget_threshold(scores: np.ndarray, budget: float) -> float:
    """The review threshold that flags the ``budget`` fraction of the most uncertain of ``scores``
    (flag: score > threshold): the score just below the flagged ones (``budget`` 0: the maximum)."""
    if not 0.0 <= budget <= 1.0:
        raise ValueError(f"budget must be in [0, 1], got {budget}")
    values = np.sort(np.asarray(scores, dtype=float)[np.isfinite(scores)])[::-1]
    if values.size == 0:
        raise ValueError("no scores to choose a review threshold from")
    n_flagged = int(np.floor(budget * values.size + 1e-9))
    if n_flagged >= values.size:
        return float(max(0.0, values[-1] - 1e-6))
    return float(values[n_flagged])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with < 3 pairs or a constant input."""
    import pandas as pd

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    rx, ry = pd.Series(x[keep]).rank().to_numpy(), pd.Series(y[keep]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def review_summary(uncertainty: np.ndarray, dice: np.ndarray, threshold: float, worst_n: int = 5) -> dict:
    """How the flag relates to Dice over patients: how many are flagged, the Spearman
    correlation of uncertainty with Dice (negative is good), and how many of the
    ``worst_n`` lowest-Dice patients are flagged."""
    uncertainty, dice = np.asarray(uncertainty, dtype=float), np.asarray(dice, dtype=float)
    flags = uncertainty > threshold
    worst = np.argsort(dice, kind="stable")[: min(worst_n, len(dice))]
    failed = dice < 0.5
    return {
        "threshold": float(threshold),
        "n": int(len(uncertainty)),
        "n_flagged": int(flags.sum()),
        "spearman_uncertainty_dice": spearman(uncertainty, dice),
        "worst_n": int(len(worst)),
        "worst_flagged": int(flags[worst].sum()),
        "below_half": int(failed.sum()),  # patients with Dice < 0.5, and how many of them the flag catches
        "below_half_flagged": int((flags & failed).sum()),
    }
