"""Out-of-fold evaluation: each patient is predicted only by the fold model that never trained on it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mri_seg.config import load_config
from mri_seg.data.splits import make_splits, patients_from_run
from mri_seg.evaluation.cross_validation import FoldModel, OutOfFoldError, evaluate_out_of_fold
from mri_seg.io.images import read_slice
from mri_seg.io.sequences import FLAIR_CHANNEL
from mri_seg.pipelines._cli import run_main
from mri_seg.pipelines.cv import main as cv_main

N_FOLDS = 3


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def folded_run(synthetic_run, tmp_path_factory) -> Path:
    """The synthetic run split again with 3 folds (8 patients: 1 test, 7 in folds)."""
    run = tmp_path_factory.mktemp("folded") / "run"
    run.mkdir()
    for name in ("manifest.csv", "patients.csv"):
        shutil.copy(synthetic_run / name, run / name)
    cfg = load_config(None, [f"split.n_folds={N_FOLDS}"])
    make_splits(patients_from_run(run), cfg.split).to_csv(run / "splits.csv", index=False)
    return run


@pytest.fixture(scope="module")
def slice_owner(folded_run) -> dict[str, str]:
    """Image bytes digest -> patient id, for every slice of the run (all slices are distinct)."""
    manifest = pd.read_csv(folded_run / "manifest.csv")
    owners = {digest(read_slice(Path(p))): pid for p, pid in zip(manifest["image_path"], manifest["patient_id"])}
    assert len(owners) == len(manifest)
    return owners


class RecordingModel:
    """A fake fold model: records every image it is given, predicts an empty mask."""

    def __init__(self):
        self.images: list[np.ndarray] = []

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        self.images += [np.array(img) for img in images]
        return [np.zeros(img.shape[:2], np.float32) for img in images]


def fold_models(splits: pd.DataFrame) -> dict[int, FoldModel]:
    trainval = splits[splits["split"] != "test"]
    return {
        k: FoldModel(k, RecordingModel(), set(trainval.loc[trainval["fold"] != k, "patient_id"]), f"fake{k}")
        for k in range(N_FOLDS)
    }


def test_every_trainval_patient_is_predicted_once_by_the_fold_model_that_never_saw_it(folded_run, slice_owner):
    splits = pd.read_csv(folded_run / "splits.csv")
    models = fold_models(splits)
    result = evaluate_out_of_fold(folded_run, models, load_config(), progress=False)

    manifest = pd.read_csv(folded_run / "manifest.csv")
    slices_of = manifest.groupby("patient_id").size()
    trainval = splits[splits["split"] != "test"]
    for k, model in models.items():
        seen = [slice_owner[digest(img)] for img in model.predictor.images]
        expected = set(trainval.loc[trainval["fold"] == k, "patient_id"])
        assert set(seen) == expected  # its own fold's patients, no test patient
        assert not set(seen) & model.train_patients  # none it trained on
        assert len(seen) == int(slices_of[list(expected)].sum())  # each slice once
    assert result.split == "cv" and result.summary["split"] == "cv"
    assert list(result.patients.columns[:2]) == ["patient_id", "fold"]
    assert dict(zip(result.patients["patient_id"], result.patients["fold"])) == dict(
        zip(trainval["patient_id"], trainval["fold"]))  # fmt: skip
    assert result.summary["n_patients"] == len(trainval)
    assert [f["fold"] for f in result.summary["folds"]] == list(range(N_FOLDS))
    assert sum(f["n_patients"] for f in result.summary["folds"]) == len(trainval)


def test_a_model_that_trained_on_a_held_out_patient_or_a_missing_fold_is_refused(folded_run):
    splits = pd.read_csv(folded_run / "splits.csv")
    models = fold_models(splits)
    leaked = sorted(splits.loc[splits["fold"] == 2, "patient_id"])[0]
    models[2].train_patients.add(leaked)
    with pytest.raises(OutOfFoldError) as info:
        evaluate_out_of_fold(folded_run, models, load_config(), progress=False)
    assert str(info.value) == (
        f"patient {leaked} is in fold 2, but the fold-2 model fake2 was trained on it: not an out-of-fold "
        "prediction (was splits.csv re-made after training?)"
    )
    assert models[0].predictor.images == []  # refused before predicting anything

    models = fold_models(splits)
    del models[1]
    with pytest.raises(OutOfFoldError, match=r"no model for fold\(s\) \[1\]"):
        evaluate_out_of_fold(folded_run, models, load_config(), progress=False)


def test_flair_only_input_copies_flair_into_every_channel(folded_run):
    models = fold_models(pd.read_csv(folded_run / "splits.csv"))
    cfg = load_config(None, ["eval.input_sequences=flair_only"])
    result = evaluate_out_of_fold(folded_run, models, cfg, progress=False)
    assert result.summary["input_sequences"] == "flair_only"
    images = [img for m in models.values() for img in m.predictor.images]
    assert images and all(img.ndim == 3 and img.shape[-1] == 3 for img in images)
    for img in images:
        for c in range(3):
            np.testing.assert_array_equal(img[..., c], img[..., FLAIR_CHANNEL])
    assert any(img[..., FLAIR_CHANNEL].any() for img in images)

    with pytest.raises(ValueError, match="config key 'eval.input_sequences' is 't1'; allowed: one of all, flair_only"):
        evaluate_out_of_fold(folded_run, models, load_config(None, ["eval.input_sequences=t1"]), progress=False)


def cli(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        run_main(cv_main, argv)
    return info.value.code, capsys.readouterr().err


def test_cli_errors_are_one_line_exit_2(folded_run, synthetic_run, capsys):
    code, err = cli(["--run-dir", str(synthetic_run)], capsys)  # no folds
    assert code == 2
    assert err == (f"error: {synthetic_run / 'splits.csv'} has no folds: run the split stage with "
                   "--set split.n_folds=5 (or any k >= 2)\n")  # fmt: skip
    code, err = cli(["--run-dir", str(folded_run)], capsys)  # folds, but no fold models
    assert code == 2
    assert err == (f"error: fold 0 has no model: {folded_run / 'checkpoints' / 'fold0'} not found "
                   "(train --fold 0, or --all-folds)\n")  # fmt: skip
