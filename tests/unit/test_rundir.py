"""RunDir: every path of a run directory named in one place, and the writers agree with it."""

from __future__ import annotations

from pathlib import Path

from mri_seg.config import Config, save_resolved_config
from mri_seg.data import manifest
from mri_seg.rundir import RunDir, TrainingDir, checkpoint_file, fold_folders
from mri_seg.training.resume import supersede
from mri_seg.utils.lock import folder_lock


def test_layout_of_a_run_directory(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run == RunDir(tmp_path) and hash(run) == hash(RunDir(tmp_path))  # frozen: a value
    assert (run.manifest, run.patients, run.splits, run.prepare_report) == (
        tmp_path / "manifest.csv", tmp_path / "patients.csv", tmp_path / "splits.csv", tmp_path / "prepare_report.json")
    assert run.config("evaluate") == tmp_path / "config_evaluate.yaml"
    assert (run.last_checkpoint, run.best_checkpoint) == (tmp_path / "checkpoints" / "last.pt",
                                                         tmp_path / "checkpoints" / "best.pt")  # fmt: skip
    assert run.train_log == tmp_path / "train_log.csv"
    assert run.postprocess_choice == tmp_path / "checkpoints" / "postprocess.json"
    assert run.eval_dir("test_flair_only") == tmp_path / "eval" / "test_flair_only"
    assert run.stage_record("train") == tmp_path / "stages" / "train.json"
    assert run.superseded == tmp_path / "superseded" and run.predictions == tmp_path / "predictions"
    assert checkpoint_file(run.checkpoints, "best") == run.best_checkpoint


def test_training_dirs_of_the_run_and_of_a_fold(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    own = run.training()
    assert own == TrainingDir(tmp_path, tmp_path / "checkpoints", None)
    assert (own.train_log, own.curves, own.tensorboard, own.config) == (
        tmp_path / "train_log.csv", tmp_path / "learning_curves.png", tmp_path / "tensorboard",
        tmp_path / "config_train.yaml")  # fmt: skip
    fold = run.training(2)
    assert fold.fold == 2 and fold.log_dir == fold.checkpoint_dir == tmp_path / "checkpoints" / "fold2"
    assert (fold.last, fold.best, fold.train_log, fold.config) == tuple(
        tmp_path / "checkpoints" / "fold2" / n for n in ("last.pt", "best.pt", "train_log.csv", "config_train.yaml"))


def test_fold_dirs_in_fold_order_and_only_fold_folders(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.fold_dirs() == []
    for name in ("fold10", "fold2", "fold_old", "foldx"):
        (run.checkpoints / name).mkdir(parents=True)
    (run.checkpoints / "fold3").write_text("a file, not a fold")
    assert run.fold_dirs() == [run.fold_dir(2), run.fold_dir(10)]
    assert fold_folders(run.checkpoints) == [(2, run.fold_dir(2)), (10, run.fold_dir(10))]


def test_the_writers_use_the_same_names(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert save_resolved_config(Config(), tmp_path, "split") == run.config("split")
    assert (manifest.MANIFEST_FILE, manifest.SPLITS_FILE, manifest.PATIENTS_FILE, manifest.REPORT_FILE) == (
        run.manifest.name, run.splits.name, run.patients.name, run.prepare_report.name)
    with folder_lock(tmp_path, "test"):
        assert run.lock.is_file()


def test_supersede_moves_exactly_the_train_outputs(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert supersede(tmp_path) is None and not run.superseded.exists()
    for path in (run.fold_dir(0) / "last.pt", run.train_log, run.training().config, run.manifest, run.splits):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(path.name)
    moved = supersede(tmp_path)
    assert moved is not None and moved.parent == run.superseded
    assert sorted(p.name for p in moved.iterdir()) == ["checkpoints", "config_train.yaml", "train_log.csv"]
    assert (moved / "checkpoints" / "fold0" / "last.pt").is_file()
    assert run.manifest.is_file() and run.splits.is_file() and not run.checkpoints.exists()
    assert [p.name for p in run.train_outputs()] == [
        "checkpoints", "train_log.csv", "learning_curves.png", "config_train.yaml", "tensorboard"]
