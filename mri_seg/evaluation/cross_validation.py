"""Out-of-fold evaluation: every train+val patient predicted by the fold model that never saw it.

With ``split.n_folds = k`` each train+val patient belongs to one fold; the model of fold K
(``train --fold K``) trained on the other folds only. Predicting each patient with its own
fold's model gives one honest figure over all train+val patients -- the figure to tune a
recipe on, leaving the test patients untouched.

Two guards make "never saw it" a checked fact rather than a convention: every fold of
splits.csv needs its model, and a model whose recorded ``train_patients`` include a patient
it is asked to predict is refused (e.g. a checkpoint trained on another split of the data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd

from mri_seg.config import Config
from mri_seg.data.manifest import SPLITS_FILE, fold_ids, manifest_for_patients, read_splits
from mri_seg.evaluation.prediction import as_volume_fn, finish_result, iter_cases
from mri_seg.evaluation.scoring import CaseSink, EvalOptions, EvalResult, evaluate_cases
from mri_seg.rundir import RunDir
from mri_seg.training.checkpoint import shipped_checkpoint

SPLIT_NAME = "cv"  # the ``split`` of an out-of-fold summary (RUN/eval/cv/)


class OutOfFoldError(ValueError):
    """A fold has no model, or a model would predict a patient it was trained on."""


@dataclass
class FoldModel:
    """A fold's predictor (a Predictor or a ``list[image] -> list[prob]`` function) and what it trained on."""

    fold: int
    predictor: Any
    train_patients: set[str] = field(default_factory=set)
    name: str = ""  # shown in errors, e.g. the checkpoint path


def fold_checkpoints(run_dir: Path, name: str | None = None) -> dict[int, Path]:
    """Fold -> its checkpoint file (``name``: best or last; default the shipped one), for every
    fold of splits.csv; a fold without its model folder is an :class:`OutOfFoldError`."""
    folds = fold_ids(read_splits(run_dir), Path(run_dir) / SPLITS_FILE)
    out = {}
    for fold in folds:
        folder = RunDir(Path(run_dir)).fold_dir(fold)
        if not folder.is_dir():
            raise OutOfFoldError(f"fold {fold} has no model: {folder} not found (train --fold {fold}, or --all-folds)")
        out[fold] = shipped_checkpoint(folder, name)
    return out


def fold_assignment(run_dir: str | Path) -> dict[str, int]:
    """``patient_id -> fold`` for every train+val patient (test patients are left out)."""
    splits = read_splits(run_dir)
    fold_ids(splits, Path(run_dir) / SPLITS_FILE)  # no folds: FoldError naming splits.csv
    trainval = splits[splits["split"].isin(("train", "val"))]
    return {str(p): int(f) for p, f in zip(trainval["patient_id"], trainval["fold"])}


def check_out_of_fold(assignment: dict[str, int], models: dict[int, FoldModel]) -> None:
    """Every fold has a model, and no model is asked to predict a patient it trained on."""
    missing = sorted(set(assignment.values()) - set(models))
    if missing:
        raise OutOfFoldError(f"no model for fold(s) {missing}: train them with train --fold K (or --all-folds)")
    for patient, fold in sorted(assignment.items()):
        model = models[fold]
        if patient in model.train_patients:
            raise OutOfFoldError(
                f"patient {patient} is in fold {fold}, but the fold-{fold} model {model.name or ''} was trained on it: "
                f"not an out-of-fold prediction (was {SPLITS_FILE} re-made after training?)"
            )


def evaluate_out_of_fold(
    run_dir: str | Path,
    models: dict[int, FoldModel],
    cfg: Config,
    options: EvalOptions | None = None,
    progress: bool = True,
    on_case: CaseSink | None = None,
) -> EvalResult:
    """Predict every train+val patient with its fold's model and score them all together.

    The result is that of :func:`mri_seg.evaluation.prediction.evaluate_run` with split ``cv`` and
    a ``fold`` column after ``patient_id``.
    """
    run_dir = Path(run_dir)
    options = options or EvalOptions.from_config(cfg.eval.postprocess)
    assignment = fold_assignment(run_dir)
    check_out_of_fold(assignment, models)
    volume_fns = {fold: as_volume_fn(model.predictor, cfg.eval.batch_size) for fold, model in models.items()}
    manifest = manifest_for_patients(run_dir, sorted(assignment))
    if manifest.empty:
        raise ValueError(f"no train/val slices in {run_dir} to evaluate out-of-fold")
    cases = iter_cases(
        manifest,
        lambda patient: volume_fns[assignment[patient]],
        progress,
        desc="out-of-fold",
        input_sequences=cfg.eval.input_sequences,
        flair_view=options.uses_flair_view,
    )
    result = evaluate_cases(cases, options, cfg.eval, SPLIT_NAME, on_case)
    result.patients.insert(1, "fold", result.patients["patient_id"].map(assignment).astype(int))
    result = finish_result(result, run_dir, cfg)
    result.summary["folds"] = per_fold_table(result.patients).to_dict(orient="records")
    return result


def per_fold_table(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients, mean and median Dice of each fold (how much the folds disagree)."""
    rows = [
        {"fold": int(cast(int, fold)), "n_patients": int(len(group)), "dice_mean": float(group["dice"].mean()),
         "dice_median": float(group["dice"].median())}
        for fold, group in patients.groupby("fold", sort=True)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["fold", "n_patients", "dice_mean", "dice_median"])
