"""Every path of a run directory, named in one place.

Stages, the pipeline runner, training and the reports ask a :class:`RunDir` for a path
instead of joining file names themselves::

    RUN/
      manifest.csv  patients.csv  prepare_report.json   prepare
      splits.csv                                         split
      config_<stage>.yaml                                the config each stage ran with
      train_log.csv  learning_curves.png  tensorboard/   train (the run's own model)
      checkpoints/last.pt  checkpoints/best.pt           train
      checkpoints/fold<K>/                               train --fold K: last.pt, best.pt, train_log.csv,
                                                           learning_curves.png, config_train.yaml, tensorboard/
      checkpoints/postprocess.json                       cv: the deliverable's threshold choice
      eval/<name>/                                       evaluate (eval/<split>), cv (eval/cv)
      predictions/                                       infer, in the shipped pipelines
      stages/<stage>.json                                the pipeline runner's per-stage records
      superseded/train-<UTC time>/                       earlier training runs, moved aside
      .mri_seg.lock                                      held while a stage writes
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mri_seg.utils.lock import LOCK_NAME

MANIFEST_FILE = "manifest.csv"
PATIENTS_FILE = "patients.csv"
SPLITS_FILE = "splits.csv"
PREPARE_REPORT_FILE = "prepare_report.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
TRAIN_LOG_FILE = "train_log.csv"
CURVES_FILE = "learning_curves.png"
TENSORBOARD_DIR = "tensorboard"
POSTPROCESS_FILE = "postprocess.json"
EVAL_DIR = "eval"
PREDICTIONS_DIR = "predictions"
STAGES_DIR = "stages"
SUPERSEDED_DIR = "superseded"
_FOLD_DIR = re.compile(r"fold(\d+)")


def config_file(stage: str) -> str:
    """``config_<stage>.yaml``: the resolved config a stage ran with."""
    return f"config_{stage}.yaml"


def checkpoint_file(folder: str | Path, name: str) -> Path:
    """``folder/<name>.pt`` for a checkpoint name (``best``, ``last``)."""
    return Path(folder) / f"{name}.pt"


def fold_dir_name(fold: int) -> str:
    return f"fold{fold}"


def fold_folders(folder: str | Path) -> list[tuple[int, Path]]:
    """``(K, folder/fold<K>)`` for every fold folder of a checkpoints folder, in fold order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _FOLD_DIR.fullmatch(p.name))]
    return sorted(found)


@dataclass(frozen=True)
class TrainingDir:
    """Where one training run writes: the run's own (log and config in RUN, checkpoints in
    RUN/checkpoints) or one cross-validation fold's (everything in RUN/checkpoints/fold<K>)."""

    log_dir: Path
    checkpoint_dir: Path
    fold: int | None = None

    @property
    def last(self) -> Path:
        return self.checkpoint_dir / LAST_CHECKPOINT

    @property
    def best(self) -> Path:
        return self.checkpoint_dir / BEST_CHECKPOINT

    @property
    def train_log(self) -> Path:
        return self.log_dir / TRAIN_LOG_FILE

    @property
    def curves(self) -> Path:
        return self.log_dir / CURVES_FILE

    @property
    def tensorboard(self) -> Path:
        return self.log_dir / TENSORBOARD_DIR

    @property
    def config(self) -> Path:
        return self.log_dir / config_file("train")


@dataclass(frozen=True)
class RunDir:
    """A run directory (see the module docstring for its layout)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # prepare and split
    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def patients(self) -> Path:
        return self.root / PATIENTS_FILE

    @property
    def prepare_report(self) -> Path:
        return self.root / PREPARE_REPORT_FILE

    @property
    def splits(self) -> Path:
        return self.root / SPLITS_FILE

    def config(self, stage: str) -> Path:
        return self.root / config_file(stage)

    # training
    @property
    def checkpoints(self) -> Path:
        """The run's deliverable: its shipped checkpoint, or its fold models' ensemble."""
        return self.root / CHECKPOINT_DIR

    def fold_dir(self, fold: int) -> Path:
        return self.checkpoints / fold_dir_name(fold)

    def fold_dirs(self) -> list[Path]:
        """The existing ``checkpoints/fold<K>`` folders, in fold order."""
        return [path for _, path in fold_folders(self.checkpoints)]

    def training(self, fold: int | None = None) -> TrainingDir:
        """Where the run's own training (``fold=None``) or fold K's writes."""
        if fold is None:
            return TrainingDir(self.root, self.checkpoints)
        return TrainingDir(self.fold_dir(fold), self.fold_dir(fold), fold)

    @property
    def train_log(self) -> Path:
        return self.training().train_log

    @property
    def last_checkpoint(self) -> Path:
        return self.training().last

    @property
    def best_checkpoint(self) -> Path:
        return self.training().best

    def train_outputs(self) -> list[Path]:
        """Everything one training run writes into the run dir (moved aside together by a restart)."""
        own = self.training()
        return [self.checkpoints, own.train_log, own.curves, own.config, own.tensorboard]

    @property
    def postprocess_choice(self) -> Path:
        """cv's threshold choice for the deliverable, beside the fold models."""
        return self.checkpoints / POSTPROCESS_FILE

    # evaluation and inference
    def eval_dir(self, name: str) -> Path:
        """``eval/<name>``: one evaluation's outputs (a split, ``cv``, ``test_flair_only``, ...)."""
        return self.root / EVAL_DIR / name

    @property
    def predictions(self) -> Path:
        return self.root / PREDICTIONS_DIR

    # bookkeeping
    def stage_record(self, stage: str) -> Path:
        return self.root / STAGES_DIR / f"{stage}.json"

    @property
    def superseded(self) -> Path:
        return self.root / SUPERSEDED_DIR

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME
