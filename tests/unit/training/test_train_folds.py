"""Cross-validation fold training: per-fold outputs, the patients each fold trains and validates on, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from mri_seg.config import load_config
from mri_seg.data.dataset import SliceDataset
from mri_seg.data.splits import make_splits, patients_from_run
from mri_seg.pipelines.train import main as train_main
from mri_seg.training.runlog import LOG_COLUMNS

N_FOLDS = 3


def tiny(run_dir: Path, epochs: int = 1) -> list[str]:
    """Overrides for a seconds-long run: 32x32 slices, a 3-level UNet with 4..16 channels."""
    height = int(pd.read_csv(run_dir / "manifest.csv")["height"].max())
    return [
        f"data.scale={32 / height}", "model.channels=[4,8,16]", "model.strides=[2,2]", "model.num_res_units=0",
        "data.num_workers=0", "train.batch_size=8", f"train.epochs={epochs}", "train.warmup_epochs=0",
        "augment.elastic.p=0.0",
    ]  # fmt: skip


def as_args(run: Path, *extra: str, epochs: int = 1) -> list[str]:
    args = ["--run-dir", str(run), "--device", "cpu", *extra]
    for item in tiny(run, epochs):
        args += ["--set", item]
    return args


def folded_copy(src: Path, dst: Path, n_folds: int = N_FOLDS) -> Path:
    """A writable copy of a prepared run dir, split again with ``n_folds`` CV folds."""
    dst.mkdir(parents=True)
    for name in ("manifest.csv", "patients.csv"):
        shutil.copy(src / name, dst / name)
    cfg = load_config(None, [f"split.n_folds={n_folds}"])
    make_splits(patients_from_run(dst), cfg.split).to_csv(dst / "splits.csv", index=False)
    return dst


@pytest.fixture
def seen_in_training(monkeypatch) -> list[str]:
    """Patient ids of every slice served by an augmented (training) dataset."""
    seen: list[str] = []
    real = SliceDataset.__getitem__

    def recording(self, i):
        item = real(self, i)
        if self.augment is not None:
            seen.append(item["patient_id"])
        return item

    monkeypatch.setattr(SliceDataset, "__getitem__", recording)
    return seen


@pytest.mark.slow
def test_fold_trains_on_other_folds_validates_on_its_own_and_writes_its_folder(
    synthetic_run, tmp_path, seen_in_training, capsys
):
    run = folded_copy(synthetic_run, tmp_path / "run")
    splits = pd.read_csv(run / "splits.csv")
    test_ids = set(splits.loc[splits["split"] == "test", "patient_id"])
    held_out = set(splits.loc[splits["fold"] == 1, "patient_id"])
    training = set(splits.loc[(splits["split"] != "test") & (splits["fold"] != 1), "patient_id"])
    assert test_ids and held_out and training

    assert train_main(as_args(run, "--fold", "1")) == 0
    assert "train fold 1 done: 1 epochs" in capsys.readouterr().out
    folder = run / "checkpoints" / "fold1"
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        "best.pt", "config_train.yaml", "last.pt", "learning_curves.png", "train_log.csv"]  # fmt: skip
    assert not (run / "checkpoints" / "last.pt").exists() and not (run / "train_log.csv").exists()
    log = pd.read_csv(folder / "train_log.csv")
    assert list(log.columns) == LOG_COLUMNS and log["epoch"].tolist() == [1]

    # trained only on the other folds' train+val patients, every one of them; never on fold 1 or test
    assert set(seen_in_training) == training
    for name in ("best.pt", "last.pt"):
        state = torch.load(folder / name, map_location="cpu", weights_only=True)
        assert state["fold"] == 1
        assert state["train_patients"] == sorted(training)
        assert set(state["metrics"]["patient_dice"]) == held_out  # validated on fold 1 only


@pytest.mark.slow
def test_fold_resumes_in_its_own_folder_and_all_folds_trains_each(synthetic_run, tmp_path, seen_in_training, capsys):
    run = folded_copy(synthetic_run, tmp_path / "run")
    assert train_main(as_args(run, "--fold", "0")) == 0
    before = (run / "checkpoints" / "fold0" / "last.pt").read_bytes()
    # --all-folds --resume: fold 0 is complete (nothing retrained), folds 1 and 2 are trained
    seen_in_training.clear()
    assert train_main(as_args(run, "--all-folds", "--resume")) == 0
    assert (run / "checkpoints" / "fold0" / "last.pt").read_bytes() == before
    splits = pd.read_csv(run / "splits.csv")
    trainval = splits[splits["split"] != "test"]
    assert set(seen_in_training) == set(trainval["patient_id"])  # folds 1 and 2 together see every one
    for k in range(N_FOLDS):
        state = torch.load(run / "checkpoints" / f"fold{k}" / "last.pt", map_location="cpu", weights_only=True)
        assert state["fold"] == k and state["epoch"] == 1
        assert set(state["train_patients"]) == set(trainval.loc[trainval["fold"] != k, "patient_id"])
    assert (run / "config_train.yaml").is_file()
    # without --resume an existing fold is refused, not overwritten
    capsys.readouterr()
    code, err = run_cli(as_args(run, "--fold", "0"), capsys)
    assert code == 2 and "fold0/last.pt already exists: pass --resume" in err
    assert (run / "checkpoints" / "fold0" / "last.pt").read_bytes() == before


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    from mri_seg.pipelines._cli import run_main

    with pytest.raises(SystemExit) as info:
        run_main(train_main, argv)
    return info.value.code, capsys.readouterr().err


def test_fold_errors_are_one_line_exit_2(synthetic_run, tmp_path, capsys):
    run = folded_copy(synthetic_run, tmp_path / "run")
    code, err = run_cli(as_args(run, "--fold", "3"), capsys)
    assert code == 2
    assert err == f"error: fold 3 is out of range: {run / 'splits.csv'} has folds 0..2\n"
    code, err = run_cli(as_args(run, "--fold", "-1"), capsys)
    assert code == 2 and "fold -1 is out of range" in err

    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("manifest.csv", "patients.csv", "splits.csv"):
        shutil.copy(synthetic_run / name, plain / name)
    for flag in (["--fold", "0"], ["--all-folds"]):
        code, err = run_cli(as_args(plain, *flag), capsys)
        assert code == 2
        assert err == (f"error: {plain / 'splits.csv'} has no folds: run the split stage with "
                       "--set split.n_folds=5 (or any k >= 2)\n")  # fmt: skip
    assert not (plain / "checkpoints").exists() and not (run / "checkpoints").exists()
