"""A FLAIR-only scan's own threshold: swept by cv on the out-of-fold FLAIR view (the same passes a
FLAIR-only scan gets), stored with the deliverable beside the 3-sequence threshold, and applied by
evaluate (--input-sequences flair_only) and infer wherever the scan is FLAIR-only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import InferConfig, PostprocessConfig
from mri_seg.evaluation.scoring import EvalOptions, PatientCase, evaluate_case, summarise_patients
from mri_seg.evaluation.threshold_choice import read_choice, report_threshold, resolve_threshold, write_choice
from mri_seg.inference.segment import segment_scan
from mri_seg.io.registry import discover, output_paths
from mri_seg.pipelines import evaluate
from mri_seg.postprocess import for_flair_only
from mri_seg.training.checkpoint import file_sha256, resolve_checkpoints


def test_for_flair_only_swaps_threshold_and_keep_ratio_where_set():
    pp = PostprocessConfig(threshold=0.6, keep_ratio=1.0, largest_only=True)
    assert for_flair_only(pp) is pp  # 0: the scan is thresholded like any other
    pp.flair_only_threshold, pp.flair_only_keep_ratio = 0.4, 0.5
    flair = for_flair_only(pp)
    assert (flair.threshold, flair.keep_ratio, flair.largest_only) == (0.4, 0.5, True)
    assert (pp.threshold, pp.keep_ratio) == (0.6, 1.0)  # the configured settings are not changed
    options = EvalOptions.from_config(PostprocessConfig(threshold=0.6, flair_only_threshold=0.3))
    assert (for_flair_only(options).threshold, for_flair_only(options).keep_ratio) == (0.3, 1.0)
    with pytest.raises(ValueError, match="flair_only_threshold must be in"):
        EvalOptions(flair_only_threshold=1.5)


def _case(view: np.ndarray | None) -> PatientCase:
    truth = np.zeros((2, 8, 8), bool)
    truth[:, 2:6, 2:6] = True  # 32 voxels
    prob = np.where(truth, 0.9, 0.0).astype(np.float32)  # the 3-sequence prediction: right at any threshold
    return PatientCase("p1", [0, 1], prob, truth, view_prob=view)


def test_the_flair_view_is_swept_as_a_flair_only_scan_and_summarised():
    view = np.zeros((2, 8, 8), np.float32)
    view[:, 2:6, 2:6] = 0.45  # FLAIR alone: the whole tumour, less sure
    view[:, 2:6, 6:8] = 0.35  # and doubtful tissue beside it
    options = EvalOptions(largest_only=True, flair_view_threshold=0.7)
    row, _, _ = evaluate_case(_case(view), options)
    assert row["dice_at_0.5"] == row["dice_at_0.3"] == pytest.approx(1.0)
    assert row["flair_only_dice_at_0.3"] == pytest.approx(2 * 32 / (32 + 48))  # the doubtful tissue too
    assert row["flair_only_dice_at_0.4"] == pytest.approx(1.0)
    assert row["flair_only_dice_at_0.5"] == 0.0 and row["flair_only_dice_at_0.7"] == 0.0  # the tumour is lost
    import pandas as pd

    summary = summarise_patients(pd.DataFrame([row]), 2, options, bootstrap_samples=10)
    assert summary["flair_only_sweep"]["best_mean"] == 0.4
    assert summary["threshold_sweep"]["best_mean"] == 0.5  # ties: the threshold nearest 0.5
    no_view, _, _ = evaluate_case(_case(None), options)
    assert not any(c.startswith("flair_only_") for c in no_view)
    assert "flair_only_sweep" not in summarise_patients(pd.DataFrame([no_view]), 2, options, bootstrap_samples=10)


def _summary_with_flair_only(tmp_path: Path) -> dict:
    table = {t: {"mean": m, "median": m} for t, m in {"0.3": 0.7, "0.4": 0.72, "0.5": 0.75, "0.6": 0.8}.items()}
    flair = {t: {"mean": m, "median": m} for t, m in {"0.3": 0.71, "0.4": 0.74, "0.5": 0.73, "0.6": 0.7}.items()}
    grid = [{"threshold": 0.4, "keep_ratio": 1.0, "grow_threshold": 0.0, "mean": 0.74, "median": 0.74},
            {"threshold": 0.3, "keep_ratio": 0.5, "grow_threshold": 0.0, "mean": 0.76, "median": 0.76}]  # fmt: skip
    return {"n_patients": 5, "options": {"largest_only": True},
            "threshold_sweep": {"thresholds": table, "best_mean": 0.6},
            "flair_only_sweep": {"thresholds": flair, "best_mean": 0.3, "grid": grid, "best_keep_ratio": 0.5,
                                 "best_dice_mean": 0.76}}  # fmt: skip


def test_cvs_flair_only_choice_is_stored_read_checked_and_resolved(tmp_path, capsys):
    members = [{"sha256": "a"}]
    path = write_choice(tmp_path, _summary_with_flair_only(tmp_path), members)
    stored = json.loads(path.read_text())
    assert stored["threshold"] == 0.6
    assert stored["flair_only"]["threshold"] == 0.3 and stored["flair_only"]["keep_ratio"] == 0.5
    assert stored["flair_only"]["oof_dice_mean"] == 0.76 and "FLAIR view" in stored["flair_only"]["chosen_on"]

    pp, source = resolve_threshold(PostprocessConfig(largest_only=True), [tmp_path], members)
    assert (pp.threshold, pp.flair_only_threshold, pp.flair_only_keep_ratio) == (0.6, 0.3, 0.5)
    assert (for_flair_only(pp).threshold, for_flair_only(pp).keep_ratio) == (0.3, 0.5)
    report_threshold(source)
    assert "threshold 0.6; FLAIR-only scans 0.3, keep_ratio 0.5 (chosen on out-of-fold" in capsys.readouterr().err
    every, _ = resolve_threshold(PostprocessConfig(largest_only=False), [tmp_path], members)
    assert (every.flair_only_threshold, every.flair_only_keep_ratio) == (0.3, 0.0)  # every component kept anyway

    without = {k: v for k, v in _summary_with_flair_only(tmp_path).items() if k != "flair_only_sweep"}
    assert "flair_only" not in json.loads(write_choice(tmp_path, without, members).read_text())
    pp, _ = resolve_threshold(PostprocessConfig(largest_only=True), [tmp_path], members)
    assert pp.flair_only_threshold == 0.0 and for_flair_only(pp) is pp

    stored["flair_only"]["threshold"] = 2.0
    path.write_text(json.dumps(stored))
    choice, note = read_choice([tmp_path], members)
    assert choice is None and "flair_only" in note and "not a threshold in [0, 1]" in note


class GradientPredictor:
    """Probability = the first channel / 255 (no passes)."""

    checkpoint_paths = [Path("a.pt")]
    checkpoint_sha256 = ["aa"]

    def predict_volume(self, volume: np.ndarray) -> np.ndarray:
        return (volume[..., 0] / 255.0).astype(np.float32)


def _png(folder: Path, image: np.ndarray):
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), image)
    (source,) = discover(folder).sources
    return source


def test_infer_thresholds_a_flair_only_scan_with_its_own_threshold(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    image[2:6, 2:6] = 200  # p 0.78
    image[2:6, 6:10] = 110  # p 0.43: tumour at the FLAIR-only threshold, not at the 3-sequence one
    cfg = InferConfig()
    cfg.postprocess.threshold, cfg.postprocess.flair_only_threshold = 0.6, 0.4
    flair_only = _png(tmp_path / "flair", image)  # every channel the same: a FLAIR-only scan
    row = segment_scan(GradientPredictor(), flair_only, output_paths(flair_only, tmp_path / "o1"), cfg)
    assert row["status"] == "ok" and row["tumour_pixels"] == 32
    assert "FLAIR-only scan: threshold 0.4" in row["message"]
    three = image.copy()
    three[..., 1] = 0  # FLAIR differs from the other channels: three sequences
    source = _png(tmp_path / "three", three)
    row = segment_scan(GradientPredictor(), source, output_paths(source, tmp_path / "o2"), cfg)
    assert row["status"] == "ok" and row["tumour_pixels"] == 16 and "FLAIR-only" not in row["message"]
    cfg.postprocess.flair_only_threshold = 0.0  # not chosen: the scan's threshold is the threshold
    row = segment_scan(GradientPredictor(), flair_only, output_paths(flair_only, tmp_path / "o3"), cfg)
    assert row["tumour_pixels"] == 16 and row["message"] == ""


@pytest.mark.slow  # two evaluate runs (metrics, plots) with untrained tiny models
def test_evaluate_flair_only_input_uses_the_flair_only_choice(synthetic_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("manifest.csv", "splits.csv", "patients.csv"):
        shutil.copy(synthetic_run / name, run / name)
    cfg = tiny_config(scale=0.5)
    cfg.train.ship_checkpoint = "last"
    for k in range(2):
        write_untrained_checkpoint(run / "checkpoints" / f"fold{k}" / "last.pt", cfg, seed=k)
    members = [{"sha256": file_sha256(p)} for p in resolve_checkpoints(run / "checkpoints")]
    write_choice(run / "checkpoints", _summary_with_flair_only(tmp_path), members)
    common = ["--run-dir", str(run), "--split", "test", "--no-progress", "--set", "eval.bootstrap_samples=20",
              "--set", "eval.patient_pages=false", "--set", "eval.postprocess.largest_only=true"]  # fmt: skip

    assert evaluate.main([*common, "--input-sequences", "flair_only"]) == 0
    flair = json.loads((run / "eval" / "test_flair_only" / "summary.json").read_text())
    assert (flair["options"]["threshold"], flair["options"]["keep_ratio"]) == (0.3, 0.5)
    assert evaluate.main(common) == 0
    three = json.loads((run / "eval" / "test" / "summary.json").read_text())
    assert (three["options"]["threshold"], three["options"]["keep_ratio"]) == (0.6, 1.0)
