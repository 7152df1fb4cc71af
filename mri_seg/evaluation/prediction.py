"""Predicting patients' volumes for evaluation: a run directory's split (or any set of patients) -> scored cases.

:func:`evaluate_run` feeds :func:`mri_seg.evaluation.scoring.evaluate_cases` from a run
directory and any predictor (an object with ``predict_proba_batch`` or a plain function
``list[image] -> list[prob]``); :func:`iter_cases` feeds any set of patients, each with its
own predictor (out-of-fold evaluation, :mod:`mri_seg.evaluation.cross_validation`).

``input_sequences="flair_only"`` replaces every slice's channels by copies of its FLAIR
channel before prediction -- what inference does with a single-sequence scan -- so the
figure for FLAIR-only input is measured on the same patients. ``flair_view`` also predicts each
patient that way beside its 3-sequence input (``PatientCase.view_prob``: the FLAIR view that
``postprocess.flair_view_threshold`` uses, mri_seg.postprocess).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mri_seg.config import Config
from mri_seg.data.manifest import PATIENTS_FILE, manifest_for_split
from mri_seg.evaluation import INPUT_SEQUENCES
from mri_seg.evaluation.scoring import CaseSink, EvalOptions, EvalResult, PatientCase, cluster_table, evaluate_cases
from mri_seg.io.images import read_mask, read_slice
from mri_seg.io.sequences import flair_in_every_channel, flair_of, is_flair_only

ProbFn = Callable[[list[np.ndarray]], list[np.ndarray]]
VolumeFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # D x H x W x C -> (mean, P x D x H x W passes)


def as_prob_fn(predictor_or_prob_fn: Any) -> ProbFn:
    """Accept a Predictor (``predict_proba_batch``) or a function ``list[image] -> list[prob]``."""
    if hasattr(predictor_or_prob_fn, "predict_proba_batch"):
        return predictor_or_prob_fn.predict_proba_batch
    if callable(predictor_or_prob_fn):
        return predictor_or_prob_fn
    raise TypeError("expected a Predictor (with predict_proba_batch) or a callable list[image] -> list[prob]")


def predict_volume(prob_fn: ProbFn, images: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Probabilities of a patient's slices, predicted in batches, stacked ``D x H x W``."""
    probs: list[np.ndarray] = []
    for start in range(0, len(images), max(1, batch_size)):
        probs.extend(prob_fn(images[start : start + batch_size]))
    return np.stack([np.asarray(p, dtype=np.float32) for p in probs])


def as_volume_fn(predictor_or_prob_fn: Any, batch_size: int) -> VolumeFn:
    """A Predictor's ``predict_volume(..., return_passes=True)``; a slice function gives one pass."""
    if hasattr(predictor_or_prob_fn, "predict_volume"):
        return lambda volume: predictor_or_prob_fn.predict_volume(volume, return_passes=True)
    prob_fn = as_prob_fn(predictor_or_prob_fn)

    def volume_fn(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prob = predict_volume(prob_fn, list(volume), batch_size)
        return prob, prob[None]

    return volume_fn


def model_input(image: np.ndarray, input_sequences: str) -> np.ndarray:
    """The slice the model is given: as read, or (``flair_only``) FLAIR copied into every channel."""
    if input_sequences == "all" or image.ndim == 2:
        return image
    if input_sequences == "flair_only":
        return flair_in_every_channel(image)
    raise ValueError(f"eval.input_sequences must be one of {', '.join(INPUT_SEQUENCES)}, got '{input_sequences}'")


def iter_cases(
    manifest: pd.DataFrame,
    volume_fn_for: Callable[[str], VolumeFn],
    progress: bool = True,
    desc: str = "evaluate",
    input_sequences: str = "all",
    flair_view: bool = False,
) -> Iterator[PatientCase]:
    """Read each patient of ``manifest`` (patient order, slice order), predict its volume with
    ``volume_fn_for(patient_id)``, yield a :class:`PatientCase`; ``flair_view``: also its FLAIR view
    (none for FLAIR-only input or a volume whose channels are all FLAIR: its prediction is its own FLAIR view)."""
    model_input(np.zeros((1, 1, 3), np.uint8), input_sequences)  # unknown value: fail before reading
    manifest = manifest.sort_values(["patient_id", "slice_index"], kind="stable")
    groups = list(manifest.groupby("patient_id", sort=True))
    for patient_id, frame in tqdm(groups, desc=desc, unit="patient", disable=not progress):
        images = [read_slice(Path(p)) for p in frame["image_path"]]
        masks = [read_mask(Path(p)) for p in frame["mask_path"]]
        shapes = {m.shape for m in masks}
        if len(shapes) != 1:
            raise ValueError(f"patient {patient_id}: slices have different sizes {sorted(shapes)}")
        volume = np.stack([model_input(img, input_sequences) for img in images])
        volume_fn = volume_fn_for(str(patient_id))
        prob, passes = volume_fn(volume)
        view_prob = None
        if flair_view and input_sequences == "all" and volume.ndim == 4 and not is_flair_only(volume):  # as infer
            view_prob, _ = volume_fn(model_input(volume, "flair_only"))
        flair = flair_of(np.stack(images))
        yield PatientCase(
            patient_id=str(patient_id),
            slice_indices=[int(i) for i in frame["slice_index"]],
            prob=prob,
            truth=np.stack(masks).astype(bool),
            flair=flair,
            case_id=str(frame["case_id"].iloc[0]),
            passes=passes,
            view_prob=view_prob,
        )


def iter_run_cases(
    run_dir: Path,
    split: str,
    volume_fn: VolumeFn,
    progress: bool = True,
    input_sequences: str = "all",
    flair_view: bool = False,
) -> Iterator[PatientCase]:
    """Read each patient of ``split`` (slice order), predict it, yield a :class:`PatientCase`."""
    manifest = manifest_for_split(run_dir, split)
    if manifest.empty:
        raise ValueError(f"split '{split}' of {run_dir} has no slices (check splits.csv)")
    return iter_cases(manifest, lambda _: volume_fn, progress, f"evaluate {split}", input_sequences, flair_view)


def attach_clinical(patients: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Join the patient's clinical/genomic columns from RUN/patients.csv (left join, metrics first)."""
    path = Path(run_dir) / PATIENTS_FILE
    if not path.is_file():
        return patients
    clinical = pd.read_csv(path)
    if "patient_id" in clinical.columns:
        key = "patient_id"
    elif "case_id" in clinical.columns and "case_id" in patients.columns:
        key = "case_id"
    elif "Patient" in clinical.columns and "case_id" in patients.columns:
        clinical = clinical.rename(columns={"Patient": "case_id"})
        key = "case_id"
    else:
        return patients
    extra = [c for c in clinical.columns if c == key or c not in patients.columns]
    clinical = clinical[extra].drop_duplicates(subset=key)
    return patients.merge(clinical, on=key, how="left")


def evaluate_run(
    run_dir: str | Path,
    split: str,
    predictor_or_prob_fn: Any,
    cfg: Config,
    options: EvalOptions | None = None,
    progress: bool = True,
    on_case: CaseSink | None = None,
) -> EvalResult:
    """Predict every slice of ``split``, compute the tables, join clinical columns."""
    run_dir = Path(run_dir)
    options = options or EvalOptions.from_config(cfg.eval.postprocess)
    volume_fn = as_volume_fn(predictor_or_prob_fn, cfg.eval.batch_size)
    cases = iter_run_cases(run_dir, split, volume_fn, progress, cfg.eval.input_sequences, options.uses_flair_view)
    result = evaluate_cases(cases, options, cfg.eval, split, on_case)
    return finish_result(result, run_dir, cfg)


def finish_result(result: EvalResult, run_dir: Path, cfg: Config) -> EvalResult:
    """Join clinical columns, add the per-cluster table and the input the model was given."""
    result.patients = attach_clinical(result.patients, run_dir)
    result.summary["by_cluster"] = cluster_table(result.patients).to_dict(orient="records")
    result.summary["input_sequences"] = cfg.eval.input_sequences
    return result
