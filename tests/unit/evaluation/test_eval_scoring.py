"""Scoring patients on hand-made probability volumes (no model): options act only through their mechanism."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mri_seg.config import EvalConfig, load_config
from mri_seg.evaluation.scoring import (
    EvalOptions,
    PatientCase,
    cluster_table,
    evaluate_case,
    evaluate_cases,
    ranked_patients,
)
from mri_seg.evaluation.threshold_choice import write_choice

EVAL = EvalConfig(bootstrap_samples=300, montage_slices=3)


def _case(pid: str = "P1", depth: int = 4, size: int = 48) -> PatientCase:
    """Truth: a 12x12 square on slices 1-2; probability 0.9 on it, 0.05 elsewhere."""
    truth = np.zeros((depth, size, size), bool)
    truth[1:3, 10:22, 10:22] = True
    prob = np.where(truth, 0.9, 0.05).astype(np.float32)
    flair = np.full((depth, size, size), 80, np.uint8)
    return PatientCase(pid, list(range(10, 10 + depth)), prob, truth, flair, case_id=pid)


def test_perfect_prediction():
    row, slices, montage = evaluate_case(_case(), EvalOptions(), montage_slices=3)
    assert row["dice"] == 1.0 and row["iou"] == 1.0 and row["hd95"] == 0.0 and row["asd"] == 0.0
    assert row["true_volume"] == row["pred_volume"] == 288
    assert row["true_tumour_slices"] == 2 and row["fp_slices"] == 0 and row["fn_slices"] == 0
    assert [s["slice_index"] for s in slices] == [10, 11, 12, 13]
    assert [s["true_pixels"] for s in slices] == [0, 144, 144, 0]
    assert [m.slice_index for m in montage] == [11, 12]  # only slices with tumour, in slice order


def test_small_spurious_blob_removed_by_min_component():
    case = _case()
    case.prob[3, 30:33, 30:33] = 0.95  # 9-pixel false positive on a tumour-free slice
    plain, _, _ = evaluate_case(case, EvalOptions(min_component_pixels=0))
    cleaned, _, _ = evaluate_case(case, EvalOptions(min_component_pixels=20))
    assert plain["fp_slices"] == 1 and plain["pred_volume"] == 288 + 9
    assert plain["dice"] < 1.0 and plain["precision"] < 1.0
    assert cleaned["fp_slices"] == 0 and cleaned["dice"] == 1.0 and cleaned["pred_volume"] == 288
    # a threshold alone cannot separate them (same probability level)
    assert evaluate_case(case, EvalOptions(threshold=0.8))[0]["pred_volume"] == 288 + 9


def test_threshold_moves_the_boundary():
    size = 64
    rr, cc = np.mgrid[:size, :size]
    dist = np.hypot(rr - 32, cc - 32)
    prob2d = np.clip(1.0 - dist / 30.0, 0, 1).astype(np.float32)  # 0.5 at radius 15
    truth2d = dist <= 15
    case = PatientCase("P", [0], prob2d[None], truth2d[None])
    rows = {t: evaluate_case(case, EvalOptions(threshold=t))[0] for t in (0.3, 0.5, 0.7)}
    volumes = [rows[t]["pred_volume"] for t in (0.3, 0.5, 0.7)]
    assert volumes[0] > volumes[1] > volumes[2]  # higher threshold -> smaller prediction
    assert rows[0.5]["pred_volume"] == truth2d.sum() and rows[0.5]["dice"] == 1.0
    assert rows[0.3]["sensitivity"] == 1.0 and rows[0.3]["precision"] < 1.0  # too big: over-segments
    assert rows[0.7]["precision"] == 1.0 and rows[0.7]["sensitivity"] < 1.0  # too small: under-segments
    assert rows[0.7]["volume_rel_error"] < 0 < rows[0.3]["volume_rel_error"]


def test_evaluate_cases_tables_and_summary():
    good = _case("A")
    missed = _case("B")
    missed.prob[:] = 0.0  # empty prediction -> hd95/asd undefined
    shifted = _case("C")
    shifted.prob = np.roll(shifted.prob, 3, axis=2)
    result = evaluate_cases([good, missed, shifted], EvalOptions(threshold=0.5, tta_flip=True), EVAL, "val")
    p = result.patients.set_index("patient_id")
    assert list(p.index) == ["A", "B", "C"]
    assert p.loc["B", "dice"] == 0.0 and math.isnan(p.loc["B", "hd95"]) and p.loc["B", "fn_slices"] == 2
    assert p.loc["C", "hd95"] == pytest.approx(3.0)
    assert {"true_solidity", "pred_solidity", "true_bbox_rows", "pred_irregularity"} <= set(p.columns)
    assert len(result.slices) == 12 and set(result.slices.columns) >= {"dice", "iou", "true_pixels", "pred_pixels"}
    s = result.summary
    assert s["split"] == "val" and s["n_patients"] == 3 and s["n_slices"] == 12
    assert s["dice_mean"] == pytest.approx(p["dice"].mean())
    assert s["dice_median"] == pytest.approx(p["dice"].median())
    assert s["dice_min"] == 0.0 and s["dice_max"] == 1.0
    assert s["hd95_n_undefined"] == 1 and s["hd95_mean"] == pytest.approx((0.0 + 3.0) / 2)
    lo, hi = s["dice_ci95"]
    assert lo <= s["dice_mean"] <= hi
    assert s["options"] == {"threshold": 0.5, "min_component_pixels": 0, "tta_flip": True,
                            "min_component_voxels": 0, "largest_only": False,
                            "component_rule": "size", "keep_ratio": 1.0, "sweep_keep_ratios": (),
                            "grow_threshold": 0.0, "sweep_grow_thresholds": (), "fill_holes": False,
                            "flair_view_threshold": 0.0, "flair_view_min_ratio": 1.5,
                            "sweep_thresholds": (0.3, 0.4, 0.5, 0.6, 0.7), "flair_only_threshold": 0.0,
                            "flair_only_keep_ratio": 0.0, "bright_quantile": 0.75, "tta_rotations": (),
                            "close_radius": 0.0}
    assert "both empty" in s["conventions"] and s["bootstrap"]["samples"] == 300
    for metric in ("iou", "hd95", "asd", "precision", "sensitivity"):
        assert {f"{metric}_{k}" for k in ("mean", "median", "std", "min", "max", "ci95")} <= set(s)
    # deterministic: same inputs, same CI
    again = evaluate_cases([_case("A"), missed, shifted], EvalOptions(threshold=0.5, tta_flip=True), EVAL, "val")
    assert again.summary["dice_ci95"] == s["dice_ci95"]
    assert ranked_patients(result.patients) == [("best", "A"), ("median", "C"), ("worst", "B")]


def test_errors_and_empty():
    bad = _case()
    bad.prob = bad.prob[:, :-1]
    with pytest.raises(ValueError, match="patient P1"):
        evaluate_case(bad, EvalOptions())
    with pytest.raises(ValueError, match="no patients"):
        evaluate_cases([], EvalOptions(), EVAL)
    with pytest.raises(ValueError, match="threshold"):
        EvalOptions(threshold=1.5)


def test_cluster_table():
    patients = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c", "d"],
            "dice": [0.8, 0.6, 0.4, 0.9],
            "true_volume": [100, 300, 50, 10],
            "RNASeqCluster": [1.0, 1.0, 2.0, np.nan],
            "COCCluster": [3, 3, 3, 3],
        }
    )
    table = cluster_table(patients)
    rna = table[table["cluster"] == "RNASeqCluster"].set_index("value")
    assert list(rna.index) == [1.0, 2.0]  # blank cluster values skipped
    assert rna.loc[1.0, "dice_mean"] == pytest.approx(0.7) and rna.loc[1.0, "true_volume_mean"] == 200
    assert rna.loc[1.0, "n_patients"] == 2
    coc = table[table["cluster"] == "COCCluster"]
    assert len(coc) == 1 and coc["n_patients"].iloc[0] == 4


def test_threshold_sweep_scores_each_threshold_and_names_the_best():
    """Probability 0.65 on the tumour, 0.45 on a ring around it: only thresholds 0.5 and 0.6 are exact."""
    size = 48
    truth = np.zeros((2, size, size), bool)
    truth[:, 10:22, 10:22] = True
    ring = np.zeros_like(truth)
    ring[:, 8:24, 8:24] = True
    prob = np.where(truth, 0.65, np.where(ring, 0.45, 0.02)).astype(np.float32)
    case = PatientCase("P", [0, 1], prob, truth)
    row, _, _ = evaluate_case(case, EvalOptions(threshold=0.5))
    assert row["dice_at_0.5"] == row["dice"] == 1.0 and row["dice_at_0.6"] == 1.0
    assert row["dice_at_0.3"] == row["dice_at_0.4"] < 1.0  # the ring is included
    assert row["dice_at_0.7"] == 0.0  # nothing left
    result = evaluate_cases([case], EvalOptions(), EVAL, split="val")
    sweep = result.summary["threshold_sweep"]
    assert list(sweep["thresholds"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
    assert sweep["thresholds"]["0.7"]["mean"] == 0.0
    assert sweep["best_mean"] == 0.5  # ties broken towards 0.5



def test_configured_sweep_thresholds_are_scored_named_and_chosen_from(tmp_path):
    """Probability 0.25 on the tumour (a model that under-calls it): only a threshold at or below 0.25 finds it,
    and the sweep scores, names and chooses the thresholds it is given, not the default five."""
    truth = np.zeros((2, 32, 32), bool)
    truth[:, 8:16, 8:16] = True
    case = PatientCase("P", [0, 1], np.where(truth, 0.25, 0.01).astype(np.float32), truth)
    config = load_config(None, ["eval.postprocess.sweep_thresholds=[0.2, 0.25, 0.3, 0.5]"])
    options = EvalOptions.from_config(config.eval.postprocess)
    assert options.sweep_thresholds == (0.2, 0.25, 0.3, 0.5)
    row, _, _ = evaluate_case(case, options)
    assert row["dice_at_0.2"] == row["dice_at_0.25"] == 1.0
    assert row["dice_at_0.3"] == row["dice_at_0.5"] == 0.0 and "dice_at_0.4" not in row
    sweep = evaluate_cases([case], options, EVAL, split="val").summary["threshold_sweep"]
    assert list(sweep["thresholds"]) == ["0.2", "0.25", "0.3", "0.5"]
    assert sweep["best_mean"] == 0.25  # tie with 0.2, broken towards 0.5
    summary = {"n_patients": 1, "threshold_sweep": sweep, "options": {}}
    stored = json.loads(write_choice(tmp_path, summary, [{"sha256": "a"}]).read_text())
    assert stored["threshold"] == 0.25 and stored["oof_dice_mean"] == 1.0


@pytest.mark.parametrize("thresholds", [(), (0.0, 0.5), (0.5, 1.0)])
def test_sweep_thresholds_must_be_inside_zero_one(thresholds):
    with pytest.raises(ValueError, match="sweep_thresholds"):
        EvalOptions(sweep_thresholds=thresholds)

def _small_tumour_and_a_larger_false_blob(name: str, false_side: int) -> PatientCase:
    """A true 4x4x2 tumour predicted at 0.9, and a false blob (``false_side``^2 x 2) at 0.8 elsewhere."""
    truth = np.zeros((2, 48, 48), bool)
    truth[:, 5:9, 5:9] = True
    prob = np.where(truth, 0.9, 0.02).astype(np.float32)
    prob[:, 30 : 30 + false_side, 30 : 30 + false_side] = 0.8
    return PatientCase(name, [0, 1], prob, truth)


def test_keep_ratio_sweep_scores_each_pair_and_the_best_pair_wins():
    """With largest_only the larger false blob deletes the small tumour; keep_ratio 0.5 keeps both."""
    options = EvalOptions(threshold=0.5, largest_only=True, sweep_keep_ratios=(1.0, 0.5, 0.1))
    assert options.swept_keep_ratios() == [0.5, 0.1]  # the configured 1.0 is the plain columns
    assert EvalOptions(sweep_keep_ratios=(0.5,)).swept_keep_ratios() == []  # only with largest_only
    row, _, _ = evaluate_case(_small_tumour_and_a_larger_false_blob("P", 5), options)
    assert row["dice_at_0.5"] == row["dice"] == 0.0  # the false blob (50 voxels) beat the tumour (32)
    assert row["dice_at_0.5_keep_0.5"] == pytest.approx(2 * 32 / (32 + 32 + 50))  # both kept
    assert row["dice_at_0.5_keep_0.1"] == row["dice_at_0.5_keep_0.5"]
    assert row["dice_at_0.7_keep_0.5"] == pytest.approx(2 * 32 / (32 + 32 + 50))  # 0.8 and 0.9 are above 0.7
    result = evaluate_cases([_small_tumour_and_a_larger_false_blob("P", 5)], options, EVAL, split="val")
    sweep = result.summary["threshold_sweep"]
    assert sweep["thresholds"]["0.5"]["mean"] == 0.0  # the table: the configured keep_ratio
    assert len(sweep["grid"]) == 15 and sweep["best_keep_ratio"] == 0.5  # ties between 0.5 and 0.1: the larger
    assert "best_grow_threshold" not in sweep  # not swept: cv does not choose (or store) it
    assert sweep["best_mean"] == 0.5 and sweep["best_dice_mean"] == pytest.approx(64 / 114)
    # a false blob smaller than the tumour: every keep_ratio ties, the configured one is kept
    tie = evaluate_cases([_small_tumour_and_a_larger_false_blob("Q", 2)], options, EVAL, split="val")
    assert tie.summary["threshold_sweep"]["best_keep_ratio"] == 1.0
    plain = evaluate_cases([_small_tumour_and_a_larger_false_blob("P", 5)], EvalOptions(largest_only=True), EVAL, "val")
    assert "grid" not in plain.summary["threshold_sweep"] and "best_keep_ratio" not in plain.summary["threshold_sweep"]
    with pytest.raises(ValueError, match=r"keep_ratio must be in \(0, 1\], got 0.0"):
        EvalOptions(sweep_keep_ratios=(0.0,))


def _tumour_found_in_part(name: str) -> PatientCase:
    """A 2 x 12 x 12 tumour whose centre (2 x 4 x 4) scores 0.9 and rest 0.15, and a doubtful
    (0.15) blob apart from it: hysteresis at 0.1 finds the whole tumour and not the blob."""
    truth = np.zeros((2, 48, 48), bool)
    truth[:, 4:16, 4:16] = True
    prob = np.where(truth, 0.15, 0.02).astype(np.float32)
    prob[:, 8:12, 8:12] = 0.9
    prob[:, 30:40, 30:40] = 0.15
    return PatientCase(name, [0, 1], prob, truth)


def test_grow_threshold_sweep_scores_each_combination_and_the_best_wins():
    options = EvalOptions(threshold=0.5, largest_only=True, sweep_keep_ratios=(1.0, 0.5), sweep_grow_thresholds=(0.0, 0.1))
    assert options.swept_grow_thresholds() == [0.1]  # the configured 0 is the plain columns
    row, _, _ = evaluate_case(_tumour_found_in_part("P"), options)
    assert row["dice_at_0.5"] == pytest.approx(2 * 32 / (32 + 288))  # the centre only
    assert row["dice_at_0.5_grow_0.1"] == 1.0 == row["dice_at_0.5_keep_0.5_grow_0.1"]  # the whole tumour, no blob
    assert row["dice_at_0.5_keep_0.5"] == row["dice_at_0.5"]
    result = evaluate_cases([_tumour_found_in_part("P")], options, EVAL, split="val")
    sweep = result.summary["threshold_sweep"]
    assert len(sweep["grid"]) == 5 * 2 * 2 and {g["grow_threshold"] for g in sweep["grid"]} == {0.0, 0.1}
    assert sweep["thresholds"]["0.5"]["mean"] == row["dice_at_0.5"]  # the table: the configured settings
    # every threshold from 0.3 to 0.7 seeds the centre and grows to 1.0: ties go to the configured keep_ratio
    assert (sweep["best_mean"], sweep["best_keep_ratio"], sweep["best_grow_threshold"]) == (0.5, 1.0, 0.1)
    assert sweep["best_dice_mean"] == 1.0
    # configured grow: the plain columns are grown, 0 is the swept one
    grown = EvalOptions(threshold=0.5, largest_only=True, grow_threshold=0.1, sweep_grow_thresholds=(0.0,))
    row, _, _ = evaluate_case(_tumour_found_in_part("P"), grown)
    assert row["dice"] == row["dice_at_0.5"] == 1.0 and row["dice_at_0.5_grow_0"] < 0.5
    with pytest.raises(ValueError, match="grow_threshold must be in"):
        EvalOptions(sweep_grow_thresholds=(1.2,))
