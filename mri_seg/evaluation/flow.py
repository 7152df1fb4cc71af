"""The one flow of the evaluate and cv stages: settings, models, prediction, provenance, outputs.

Both stages score trained checkpoints on patients the models never saw and write the same
files; they differ only in which models predict which patients:

* :class:`SplitModels` (evaluate): one checkpoint, or an ensemble, on one split; the
  threshold may be the deliverable's out-of-fold choice (:mod:`.threshold_choice`).
* :class:`OutOfFoldModels` (cv): each fold's model on its own train+val patients
  (:mod:`.cross_validation`); afterwards it may store the deliverable's threshold.

:func:`run_evaluation` is everything else, written once: the checkpoint's config under the
user's ``eval`` settings (the note about ignored ``--set`` keys), the options check before
any model loads, the patient pages' pictures drawn while each volume is in memory, the
provenance, ``RUN/config_<stage>.yaml``, the output files and the summary line.

Evaluation never renders: the stage passes a :class:`ResultWriter`
(:class:`mri_seg.reports.outputs.ReportWriter`) that draws and writes the files.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mri_seg.config import (
    Config,
    InferConfig,
    config_from_dict,
    config_to_dict,
    explicit_values,
    load_config,
    merge_values,
    save_resolved_config,
    set_dotted,
)
from mri_seg.errors import StageError
from mri_seg.evaluation.scoring import CaseSink, EvalOptions, EvalResult, threshold_key
from mri_seg.postprocess import for_flair_only
from mri_seg.rundir import RunDir
from mri_seg.utils.paths import require_dir, require_file, require_writable_dir
from mri_seg.utils.provenance import provenance

USER_SECTIONS = ("eval",)  # the sections --config/--set may change (mri_seg.config.STAGE_PARAMS["evaluate"])
CV_TITLE = "mri_seg cross-validation (out-of-fold)"


# --------------------------------------------------------------------------- settings


def resolve_config(
    checkpoint_cfg: Config,
    config_path: Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    sections: tuple[str, ...] = USER_SECTIONS,
) -> Config:
    """Checkpoint config < --config < --set < flags, for ``sections`` only (evaluate: eval; infer: infer).

    ``flags`` maps dotted keys (``eval.postprocess.threshold``) to values; ``None`` values are skipped.
    """
    overrides = list(overrides or [])
    load_config(config_path, overrides, validate=False)  # keys and types; values are checked after the merge
    values = config_to_dict(checkpoint_cfg)
    explicit = explicit_values(config_path, overrides)
    for section in sections:
        if isinstance(explicit.get(section), dict):
            values[section] = merge_values(values[section], explicit[section])
    for dotted, value in (flags or {}).items():
        if value is not None:
            set_dotted(values, dotted, value)
    return config_from_dict(values)


def eval_infer_config(cfg: Config) -> InferConfig:
    """How evaluate and cv predict: whole slices at the training size (default tiling, not the
    infer stage's ``infer.*``, so a change there never alters an evaluation), flip TTA from
    ``eval.postprocess``, ``eval.batch_size`` slices per forward pass."""
    return InferConfig(tile_batch=cfg.eval.batch_size, postprocess=cfg.eval.postprocess)


def eval_output_dir(run_dir: Path, name: str, input_sequences: str) -> Path:
    """RUN/eval/<name>, or RUN/eval/<name>_flair_only for FLAIR-only input (never mixed up)."""
    return RunDir(run_dir).eval_dir(name if input_sequences == "all" else f"{name}_{input_sequences}")


def checked_options(cfg: Config) -> EvalOptions:
    """The post-processing options of ``cfg``; bad settings are a one-line stage error."""
    try:
        return EvalOptions.from_config(cfg.eval.postprocess)
    except ValueError as exc:
        raise StageError(str(exc)) from exc


def dice_text(summary: dict[str, Any]) -> str:
    """Patients, slices and the patient Dice statistics of a summary, for the stage's last line."""
    lo, hi = summary["dice_ci95"]
    return (
        f"{summary['n_patients']} patients, {summary['n_slices']} slices; patient Dice mean "
        f"{summary['dice_mean']:.4f} (95% CI {lo:.4f}-{hi:.4f}), median {summary['dice_median']:.4f}"
    )


# --------------------------------------------------------------------------- the flow


@dataclass
class EvalRequest:
    """What the command line asks for (the stage module fills it from its arguments)."""

    run_dir: Path
    config_path: Path | None = None
    overrides: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)  # dotted eval key -> value from a flag (None: not given)
    device: str = "auto"
    progress: bool = True
    out_dir: Path | None = None  # default: RUN/eval/<name>[_flair_only]
    start: float = field(default_factory=time.perf_counter)


def check_request(request: EvalRequest) -> None:
    """The user's values and the run directory, checked before any work (and before the lock)."""
    resolve_config(Config(), request.config_path, request.overrides, request.flags)
    require_writable_dir(require_dir(request.run_dir, "run directory"), "run directory")


class ResultWriter(Protocol):
    """Renders an evaluation (implemented in :mod:`mri_seg.reports.outputs`)."""

    def case_sink(self, out_dir: Path) -> CaseSink:
        """Clear earlier patient pages; the returned sink draws each patient's slice pictures."""
        ...

    def write(
        self, result: EvalResult, out_dir: Path, title: str, run_dir: Path, patient_pages: bool
    ) -> dict[str, Path]:
        """Write every output file; returns name -> path (``report.html`` among them)."""
        ...


class EvalModels(Protocol):
    """Which models predict which patients: the part in which evaluate and cv differ."""

    stage: str  # "evaluate" | "cv": RUN/config_<stage>.yaml and messages
    owner: str  # whose settings outside eval are used, for the note about ignored --set keys
    title: str  # the report's title

    def config(self) -> Config:
        """The config stored with the (first) checkpoint: what the models were trained with."""
        ...

    def output_name(self, cfg: Config) -> str:
        """The name of the output folder under RUN/eval/."""
        ...

    def load(self, cfg: Config, device: str) -> Config:
        """Build the predictors; returns ``cfg`` with any setting they decide (the chosen threshold)."""
        ...

    def predict(
        self, run_dir: Path, cfg: Config, options: EvalOptions, progress: bool, on_case: CaseSink | None
    ) -> EvalResult:
        """Predict and score the patients."""
        ...

    def describe(self) -> dict[str, Any]:
        """summary.json entries: the checkpoints used and where the threshold came from."""
        ...

    def finish(self, result: EvalResult, paths: dict[str, Path], cfg: Config) -> None:
        """Print the stage's summary line (and store what the stage stores besides its outputs)."""
        ...


@dataclass
class EvalRun:
    cfg: Config
    result: EvalResult
    out_dir: Path
    paths: dict[str, Path]


def run_evaluation(request: EvalRequest, models: EvalModels, writer: ResultWriter) -> EvalRun:
    """Evaluate ``models`` as ``request`` asks and write the outputs with ``writer``."""
    cfg = resolve_config(models.config(), request.config_path, request.overrides, request.flags)
    ignored = [o for o in request.overrides if o.split(".", 1)[0] not in USER_SECTIONS]
    if ignored:
        print(f"note: {models.stage} uses {models.owner} settings outside eval; ignored: {ignored}", file=sys.stderr)
    checked_options(cfg)  # bad settings stop before the models load
    cfg = models.load(cfg, request.device)
    options = checked_options(cfg)
    if cfg.eval.input_sequences == "flair_only":  # every scan FLAIR-only: their own threshold, where set
        options = for_flair_only(options)
    run_dir = request.run_dir
    out_dir = request.out_dir or eval_output_dir(run_dir, models.output_name(cfg), cfg.eval.input_sequences)
    on_case = writer.case_sink(out_dir) if cfg.eval.patient_pages else None
    try:
        result = models.predict(run_dir, cfg, options, request.progress, on_case)
    except ValueError as exc:  # OutOfFoldError included
        raise StageError(str(exc)) from exc
    result.summary.update(models.describe())
    result.summary["device"] = request.device
    result.summary["provenance"] = provenance()
    save_resolved_config(cfg, run_dir, models.stage)
    result.summary["seconds"] = round(time.perf_counter() - request.start, 2)
    paths = writer.write(result, out_dir, models.title, run_dir, cfg.eval.patient_pages)
    models.finish(result, paths, cfg)
    return EvalRun(cfg, result, out_dir, paths)


# --------------------------------------------------------------------------- evaluate: one split


class SplitModels:
    """evaluate's models: a checkpoint, or an ensemble of several, on ``eval.split``."""

    stage = "evaluate"
    owner = "the checkpoint's"
    title = "mri_seg evaluation"

    def __init__(self, checkpoints: list[Path], given: list[Path]):
        self.checkpoints = checkpoints
        self.given = given  # as named on the command line: a checkpoints folder may hold the chosen threshold
        self.state: dict[str, Any] = {}
        self.predictor: Any = None
        self.threshold_source = "config"

    @classmethod
    def resolve(cls, given: list[Path], name: str | None) -> "SplitModels":
        """The checkpoint files that ``--checkpoint`` paths (files or folders) and ``--checkpoint-name`` mean."""
        from mri_seg.training.checkpoint import CheckpointError, resolve_checkpoints

        try:
            checkpoints = resolve_checkpoints(list(given), name)
        except FileNotFoundError as exc:
            raise StageError(f"{exc} (train first, or pass --checkpoint)") from exc
        except CheckpointError as exc:
            raise StageError(str(exc)) from exc
        for path in checkpoints:
            require_file(path, "checkpoint")
        return cls(checkpoints, list(given))

    def config(self) -> Config:
        from mri_seg.training.checkpoint import CheckpointError, checkpoint_config, load_checkpoint

        try:
            self.state = load_checkpoint(self.checkpoints[0])
            cfg = checkpoint_config(self.state)
        except CheckpointError as exc:
            raise StageError(str(exc)) from exc
        self.state.pop("model", None)  # the predictor loads the weights itself
        return cfg

    def output_name(self, cfg: Config) -> str:
        return cfg.eval.split

    def load(self, cfg: Config, device: str) -> Config:
        from mri_seg.evaluation.threshold_choice import (
            report_review,
            report_threshold,
            resolve_review,
            resolve_threshold,
        )
        from mri_seg.inference.predictor import Predictor

        try:
            self.predictor = Predictor.from_checkpoints(self.checkpoints, device=device, infer_cfg=eval_infer_config(cfg))
        except ValueError as exc:  # unusable device or inference settings, members that disagree
            raise StageError(str(exc)) from exc
        cfg.eval.postprocess, threshold = resolve_threshold(cfg.eval.postprocess, self.given, self.predictor.members)
        report_threshold(threshold)
        cfg.eval.review, review = resolve_review(cfg.eval.review, self.given, self.predictor.members)
        report_review(review)
        self.threshold_source = threshold.source
        return cfg

    def predict(
        self, run_dir: Path, cfg: Config, options: EvalOptions, progress: bool, on_case: CaseSink | None
    ) -> EvalResult:
        from mri_seg.evaluation.prediction import evaluate_run

        return evaluate_run(run_dir, cfg.eval.split, self.predictor, cfg, options, progress=progress, on_case=on_case)

    def describe(self) -> dict[str, Any]:
        return {
            "checkpoint": {
                "path": str(self.checkpoints[0].resolve()),
                "epoch": self.state.get("epoch"),
                "best_metric": self.state.get("best_metric"),
            },
            "checkpoints": self.predictor.members,  # every member: path, sha256, epoch, fold
            "threshold_source": self.threshold_source,
        }

    def finish(self, result: EvalResult, paths: dict[str, Path], cfg: Config) -> None:
        s = result.summary
        n = len(self.checkpoints)
        ensemble = f", ensemble of {n} checkpoints" if n > 1 else ""
        print(f"{cfg.eval.split}: {dice_text(s)}; {s['seconds']:.1f} s{ensemble} -> {paths['report.html']}")


# --------------------------------------------------------------------------- cv: every patient out-of-fold


def sweep_lines(sweep: dict[str, Any], label: str) -> list[str]:
    """cv's lines for one threshold sweep (``summary["threshold_sweep"]`` or ``["flair_only_sweep"]``): the
    mean per threshold and, where keep_ratio (and grow_threshold) were swept too, every combination."""
    if not sweep:
        return []
    table = " ".join(f"{t}:{v['mean']:.3f}" for t, v in sweep["thresholds"].items())
    lines = [f"{label} sweep (out-of-fold mean patient Dice): {table}; best {sweep['best_mean']}"]
    if "best_keep_ratio" in sweep:
        grows = len({g["grow_threshold"] for g in sweep["grid"]}) > 1  # grow_threshold swept too

        def key(g: dict[str, Any]) -> str:
            return f"{threshold_key(g['threshold'])}/{g['keep_ratio']:g}" + (f"/{g['grow_threshold']:g}" if grows else "")

        pairs = " ".join(f"{key(g)}:{g['mean']:.3f}" for g in sweep["grid"])
        best = {"threshold": sweep["best_mean"], "keep_ratio": sweep["best_keep_ratio"],
                "grow_threshold": sweep.get("best_grow_threshold", 0.0)}  # fmt: skip
        names = label + "/keep_ratio" + ("/grow_threshold" if grows else "")
        lines.append(f"{names} sweep: {pairs}; best {key(best)}")
    return lines


class OutOfFoldModels:
    """cv's models: each fold's checkpoint predicts the train+val patients of its fold."""

    stage = "cv"
    owner = "the checkpoints'"
    title = CV_TITLE

    def __init__(self, run_dir: Path, checkpoint_name: str | None = None, default_out_dir: bool = True):
        self.run_dir = run_dir
        self.checkpoint_name = checkpoint_name  # None: each fold's shipped checkpoint
        self.default_out_dir = default_out_dir
        self.paths: dict[int, Path] = {}
        self.states: dict[int, dict[str, Any]] = {}
        self.models: dict[int, Any] = {}

    def config(self) -> Config:
        from mri_seg.data.manifest import FoldError
        from mri_seg.evaluation.cross_validation import OutOfFoldError, fold_checkpoints
        from mri_seg.training.checkpoint import CheckpointError, checkpoint_config, load_checkpoint

        try:
            self.paths = fold_checkpoints(self.run_dir, self.checkpoint_name)
            self.states = {fold: load_checkpoint(path) for fold, path in self.paths.items()}
        except (FoldError, OutOfFoldError, CheckpointError) as exc:
            raise StageError(str(exc)) from exc
        for fold, state in self.states.items():
            if state.get("fold") != fold or "train_patients" not in state:
                raise StageError(f"{self.paths[fold]} is not a fold-{fold} checkpoint (its fold: {state.get('fold')})")
        cfg = checkpoint_config(next(iter(self.states.values())))
        for state in self.states.values():
            state.pop("model", None)  # each predictor loads its weights itself
        return cfg

    def output_name(self, cfg: Config) -> str:
        from mri_seg.evaluation.cross_validation import SPLIT_NAME

        return SPLIT_NAME

    def load(self, cfg: Config, device: str) -> Config:
        from mri_seg.evaluation.cross_validation import FoldModel
        from mri_seg.inference.predictor import Predictor

        infer_cfg = eval_infer_config(cfg)
        try:
            self.models = {
                fold: FoldModel(
                    fold,
                    Predictor.from_checkpoint(path, device=device, infer_cfg=infer_cfg),
                    set(self.states[fold]["train_patients"]),
                    str(path),
                )
                for fold, path in self.paths.items()
            }
        except ValueError as exc:  # unusable device or inference settings
            raise StageError(str(exc)) from exc
        return cfg

    def predict(
        self, run_dir: Path, cfg: Config, options: EvalOptions, progress: bool, on_case: CaseSink | None
    ) -> EvalResult:
        from mri_seg.evaluation.cross_validation import evaluate_out_of_fold
        from mri_seg.evaluation.scoring import apply_review_budget

        result = evaluate_out_of_fold(run_dir, self.models, cfg, options, progress=progress, on_case=on_case)
        if cfg.eval.review.budget > 0:
            apply_review_budget(result, cfg.eval.review.budget)
        return result

    def describe(self) -> dict[str, Any]:
        # each fold's predictor describes its checkpoint as an ensemble member: path, sha256, epoch, fold, best_metric
        checkpoints = [self.models[fold].predictor.members[0] for fold in self.paths]
        return {"checkpoints": checkpoints, "threshold_source": "config"}

    def stores_choice(self, cfg: Config) -> bool:
        """Only the recipe's own out-of-fold run chooses the deliverable's threshold: the shipped fold
        checkpoints, all sequences, the default output folder, no --threshold (eval.postprocess.threshold_from_cv)."""
        return bool(
            cfg.eval.postprocess.threshold_from_cv
            and cfg.eval.input_sequences == "all"
            and self.checkpoint_name is None
            and self.default_out_dir
        )

    def finish(self, result: EvalResult, paths: dict[str, Path], cfg: Config) -> None:
        s = result.summary
        folds = " ".join(f"{f['fold']}:{f['dice_mean']:.3f}" for f in s["folds"])
        print(
            f"cv ({len(self.paths)} folds, out-of-fold): {dice_text(s)}; per fold {folds}; "
            f"{s['seconds']:.1f} s -> {paths['report.html']}"
        )
        sweep = s.get("threshold_sweep") or {}
        for line in sweep_lines(sweep, "threshold"):
            print(line)
        flair_only = s.get("flair_only_sweep") or {}
        for line in sweep_lines(flair_only, "the FLAIR view's (a FLAIR-only scan's prediction) threshold"):
            print(line)
        if self.stores_choice(cfg):
            from mri_seg.evaluation.threshold_choice import write_choice

            folder = RunDir(self.run_dir).checkpoints
            path = write_choice(folder, s, s["checkpoints"])
            if path is not None:
                ratio = f", keep_ratio {sweep['best_keep_ratio']:g}" if "best_keep_ratio" in sweep else ""
                ratio += f", grow_threshold {sweep['best_grow_threshold']:g}" if "best_grow_threshold" in sweep else ""
                print(f"the deliverable's threshold: {sweep['best_mean']}{ratio} -> {path} (evaluate/infer --checkpoint "
                      f"{folder} use it; eval.postprocess.threshold_from_cv)")  # fmt: skip
                if flair_only:
                    keep = f", keep_ratio {flair_only['best_keep_ratio']:g}" if "best_keep_ratio" in flair_only else ""
                    print(f"the deliverable's threshold for FLAIR-only scans: {flair_only['best_mean']}{keep} -> {path}")
            review = s.get("review") or {}
            if path is not None and "budget" in review:
                print(f"the deliverable's review threshold: {review['threshold']:.4f} flags {review['n_flagged']} of "
                      f"{review['n']} out-of-fold patients (budget {review['budget']}), {review['below_half_flagged']} "
                      f"of the {review['below_half']} below Dice 0.5 -> {path}")  # fmt: skip
