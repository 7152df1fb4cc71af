"""The deliverable's threshold: chosen by cv on out-of-fold predictions, stored beside the fold
models, used by evaluate/infer given that folder -- and only while the folder's checkpoints are
the ones it was chosen for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import PostprocessConfig
from mri_seg.evaluation.threshold_choice import (
    CHOICE_FILE,
    choose_threshold,
    read_choice,
    resolve_threshold,
    write_choice,
)
from mri_seg.pipelines import evaluate
from mri_seg.pipelines.infer import main as infer_main
from mri_seg.training.checkpoint import file_sha256, resolve_checkpoints


def _summary(best: float, n: int = 7) -> dict:
    means = {0.3: 0.70, 0.4: 0.72, 0.5: 0.71, 0.6: 0.69, 0.7: 0.65}
    means[best] = 0.80
    table = {f"{t:.1f}": {"mean": m, "median": m} for t, m in means.items()}
    return {"n_patients": n, "threshold_sweep": {"thresholds": table, "best_mean": best}, "options": {"tta_flip": True}}


def _members(*shas: str) -> list[dict]:
    return [{"sha256": s, "path": f"/x/{s}.pt"} for s in shas]


def test_choice_round_trip_and_when_it_applies(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert choose_threshold({}) is None and write_choice(folder, {"n_patients": 3}, _members("a")) is None
    path = write_choice(folder, _summary(0.3), _members("b", "a"))
    assert path == folder / CHOICE_FILE
    stored = json.loads(path.read_text())
    assert stored["threshold"] == 0.3 and stored["oof_dice_mean"] == 0.80 and stored["n_patients"] == 7
    assert stored["members"] == ["a", "b"] and set(stored["sweep"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}
    assert stored["fixed_options"] == {"tta_flip": True}

    choice, note = read_choice([folder], _members("a", "b"))  # member order does not matter
    assert choice["threshold"] == 0.3 and choice["path"] == str(path) and note == ""
    assert read_choice([folder / "a.pt"], _members("a", "b")) == (None, "")  # a file is not the deliverable
    assert read_choice([folder, folder], _members("a", "b")) == (None, "")  # nor are several paths
    choice, note = read_choice([folder], _members("a", "c"))  # a fold retrained since cv
    assert choice is None and "chosen for other checkpoints" in note and "re-run cv" in note

    pp = PostprocessConfig(threshold=0.5, largest_only=True)
    chosen, source = resolve_threshold(pp, [folder], _members("a", "b"))
    assert chosen.threshold == 0.3 and chosen.largest_only and source.source == f"cv: {path}"
    off, source = resolve_threshold(PostprocessConfig(threshold=0.6, threshold_from_cv=False), [folder], _members("a", "b"))
    assert off.threshold == 0.6 and source.source == "config" and source.note == ""

    path.write_text("{not json")
    kept, source = resolve_threshold(pp, [folder], _members("a", "b"))
    assert kept.threshold == 0.5 and source.source == "config" and "unreadable" in source.note
    path.write_text(json.dumps({"threshold": 1.5, "members": ["a", "b"]}))
    assert "outside [0, 1]" in read_choice([folder], _members("a", "b"))[1]


def test_a_chosen_keep_ratio_is_stored_and_applied_with_the_threshold(tmp_path, capsys):
    from mri_seg.evaluation.threshold_choice import report_threshold

    summary = _summary(0.4)
    grid = [{"threshold": 0.4, "keep_ratio": 1.0, "mean": 0.80, "median": 0.8},
            {"threshold": 0.3, "keep_ratio": 0.5, "mean": 0.83, "median": 0.8}]  # fmt: skip
    summary["threshold_sweep"].update(best_mean=0.3, grid=grid, best_keep_ratio=0.5, best_dice_mean=0.83)
    summary["options"] = {"tta_flip": True, "largest_only": True, "keep_ratio": 1.0, "sweep_keep_ratios": [1.0, 0.5]}
    path = write_choice(tmp_path, summary, _members("a"))
    stored = json.loads(path.read_text())
    assert stored["threshold"] == 0.3 and stored["keep_ratio"] == 0.5 and stored["oof_dice_mean"] == 0.83
    assert stored["fixed_options"] == {"tta_flip": True, "largest_only": True} and stored["grid"] == grid

    chosen, source = resolve_threshold(PostprocessConfig(largest_only=True), [tmp_path], _members("a"))
    assert (chosen.threshold, chosen.keep_ratio, source.keep_ratio) == (0.3, 0.5, 0.5)
    report_threshold(source)
    assert "threshold 0.3, keep_ratio 0.5 (chosen on out-of-fold predictions" in capsys.readouterr().err
    every, source = resolve_threshold(PostprocessConfig(largest_only=False), [tmp_path], _members("a"))
    assert (every.threshold, every.keep_ratio, source.keep_ratio) == (0.3, 1.0, None)  # keeps every component anyway

    stored["keep_ratio"] = 0.0
    path.write_text(json.dumps(stored))
    choice, note = read_choice([tmp_path], _members("a"))
    assert choice is None and "keep_ratio 0.0 is outside (0, 1]" in note


def test_a_chosen_grow_threshold_is_stored_applied_and_checked(tmp_path, capsys):
    from mri_seg.evaluation.threshold_choice import report_threshold

    summary = _summary(0.4)
    grid = [{"threshold": 0.4, "keep_ratio": 1.0, "grow_threshold": 0.0, "mean": 0.80, "median": 0.8},
            {"threshold": 0.5, "keep_ratio": 1.0, "grow_threshold": 0.1, "mean": 0.84, "median": 0.8}]  # fmt: skip
    summary["threshold_sweep"].update(best_mean=0.5, grid=grid, best_keep_ratio=1.0, best_grow_threshold=0.1,
                                      best_dice_mean=0.84)  # fmt: skip
    summary["options"] = {"tta_flip": True, "largest_only": True, "keep_ratio": 1.0, "sweep_keep_ratios": [],
                          "grow_threshold": 0.0, "sweep_grow_thresholds": [0.1]}  # fmt: skip
    path = write_choice(tmp_path, summary, _members("a"))
    stored = json.loads(path.read_text())
    assert (stored["threshold"], stored["keep_ratio"], stored["grow_threshold"]) == (0.5, 1.0, 0.1)
    assert stored["fixed_options"] == {"tta_flip": True, "largest_only": True}
    for largest_only in (True, False):  # hysteresis applies with or without largest_only
        chosen, source = resolve_threshold(PostprocessConfig(largest_only=largest_only), [tmp_path], _members("a"))
        assert (chosen.threshold, chosen.grow_threshold, source.grow_threshold) == (0.5, 0.1, 0.1)
    report_threshold(source)
    assert "threshold 0.5, grow_threshold 0.1 (chosen on out-of-fold predictions" in capsys.readouterr().err

    stored["grow_threshold"] = 1.5
    path.write_text(json.dumps(stored))
    choice, note = read_choice([tmp_path], _members("a"))
    assert choice is None and "grow_threshold 1.5 is outside [0, 1]" in note


def _shipping_last():
    cfg = tiny_config(scale=0.5)
    cfg.train.ship_checkpoint = "last"
    return cfg


def _folded_checkpoints(root: Path, folds: int = 2) -> Path:
    for k in range(folds):
        write_untrained_checkpoint(root / f"fold{k}" / "last.pt", _shipping_last(), seed=k)
    return root


def _choose(folder: Path, threshold: float) -> Path:
    members = [{"sha256": file_sha256(p)} for p in resolve_checkpoints(folder)]
    return write_choice(folder, _summary(threshold), members)


@pytest.mark.slow  # four evaluate runs (metrics, plots, report) with untrained tiny models
def test_evaluate_uses_the_folders_choice_unless_told_otherwise(synthetic_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("manifest.csv", "splits.csv", "patients.csv"):
        shutil.copy(synthetic_run / name, run / name)
    folder = _folded_checkpoints(run / "checkpoints")
    choice = _choose(folder, 0.7)
    common = ["--run-dir", str(run), "--split", "test", "--no-progress", "--set", "eval.bootstrap_samples=20",
              "--set", "eval.patient_pages=false"]  # fmt: skip

    def summary() -> dict:
        return json.loads((run / "eval" / "test" / "summary.json").read_text())

    capsys.readouterr()
    assert evaluate.main(common) == 0  # the default: RUN/checkpoints, the deliverable
    s = summary()
    assert s["options"]["threshold"] == 0.7 and s["threshold_source"] == f"cv: {choice}"
    assert "threshold 0.7 (chosen on out-of-fold predictions" in capsys.readouterr().err
    resolved = yaml.safe_load((run / "config_evaluate.yaml").read_text())
    assert resolved["eval"]["postprocess"]["threshold"] == 0.7

    assert evaluate.main([*common, "--threshold", "0.4"]) == 0  # the user's threshold wins
    assert summary()["options"]["threshold"] == 0.4 and summary()["threshold_source"] == "config"
    assert evaluate.main([*common, "--checkpoint", str(folder / "fold0" / "last.pt")]) == 0  # one file
    assert summary()["options"]["threshold"] == 0.5 and summary()["threshold_source"] == "config"

    write_untrained_checkpoint(folder / "fold1" / "last.pt", _shipping_last(), seed=5)  # retrained
    capsys.readouterr()
    assert evaluate.main(common) == 0
    assert summary()["options"]["threshold"] == 0.5
    assert f"note: {choice} was chosen for other checkpoints" in capsys.readouterr().err


def test_infer_uses_the_folders_choice(tmp_path):
    folder = _folded_checkpoints(tmp_path / "run" / "checkpoints")
    _choose(folder, 0.3)
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "scan.png"), np.random.default_rng(0).integers(1, 255, (64, 64, 3), dtype=np.uint8))

    def infer(out: str, *extra: str) -> tuple[float, pd.Series]:
        argv = ["--checkpoint", str(folder), "--input", str(inp), "--output", str(tmp_path / out),
                "--device", "cpu", "--no-progress", *extra]  # fmt: skip
        assert infer_main(argv) == 0
        resolved = yaml.safe_load((tmp_path / out / "config_infer.yaml").read_text())
        return resolved["infer"]["postprocess"]["threshold"], pd.read_csv(tmp_path / out / "predictions.csv").iloc[0]

    chosen, row = infer("chosen")
    given, row_given = infer("given", "--threshold", "0.5")
    assert (chosen, given) == (0.3, 0.5)
    assert row["status"] == row_given["status"] == "ok"
    assert row["settings_hash"] != row_given["settings_hash"]  # the threshold shapes the mask


def test_review_threshold_chosen_for_a_budget_is_stored_and_used_while_the_members_match(tmp_path):
    import pandas as pd

    from mri_seg.config import ReviewConfig
    from mri_seg.evaluation.scoring import EvalResult, apply_review_budget
    from mri_seg.evaluation.threshold_choice import resolve_review

    patients = pd.DataFrame({"patient_id": [f"p{i}" for i in range(10)],
                             "dice": [0.9, 0.2, 0.8, 0.85, 0.3, 0.9, 0.7, 0.88, 0.92, 0.6],
                             "uncertainty": [0.1, 0.9, 0.2, 0.15, 0.8, 0.05, 0.5, 0.12, 0.08, 0.3],
                             "review_flag": [False] * 10})  # fmt: skip
    summary = _summary(0.4, n=10)
    result = EvalResult("cv", patients, pd.DataFrame(), summary, {})
    threshold = apply_review_budget(result, 0.2)
    assert result.patients["review_flag"].sum() == 2 and set(result.patients.loc[result.patients["review_flag"],
                                                                                 "patient_id"]) == {"p1", "p4"}
    review = result.summary["review"]
    assert review["budget"] == 0.2 and review["below_half"] == 2 and review["below_half_flagged"] == 2
    path = write_choice(tmp_path, result.summary, _members("a", "b"))
    stored = json.loads(path.read_text())["review"]
    assert stored["threshold"] == pytest.approx(threshold) and stored["n_flagged"] == 2

    used, source = resolve_review(ReviewConfig(threshold=0.3), [tmp_path], _members("b", "a"))
    assert used.threshold == pytest.approx(threshold) and source.source.startswith("cv: ")
    kept, source = resolve_review(ReviewConfig(threshold=0.3), [tmp_path], _members("a", "c"))  # a retrained fold
    assert kept.threshold == 0.3 and "other checkpoints" in source.note
    off, _ = resolve_review(ReviewConfig(threshold=0.3, threshold_from_cv=False), [tmp_path], _members("a", "b"))
    assert off.threshold == 0.3
    no_budget = write_choice(tmp_path / "x", _summary(0.4), _members("a"))  # cv without a budget stores none
    assert "review" not in json.loads(no_budget.read_text())
    assert resolve_review(ReviewConfig(threshold=0.3), [tmp_path / "x"], _members("a"))[0].threshold == 0.3
