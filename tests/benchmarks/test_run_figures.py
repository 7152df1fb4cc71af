"""benchmarks/run_figures.py: a run's figures at cv's chosen pair, and paired against a base run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def rf(load_benchmark):
    return load_benchmark("run_figures")


PATIENTS = ["TCGA_CS_5396_1", "TCGA_DU_7299_2", "P3", "P4", "P5", "P6"]
VOLUMES = [30000, 5000, 100, 200, 9000, 7000]


def write_run(root: Path, dice_at_pair: list[float], flair_at_pair: list[float], test: bool = True) -> Path:
    """A run whose cv chose 0.6 / keep 0.5 (3 sequences) and 0.4 / keep 1 (FLAIR-only, the configured ratio)."""
    cv = root / "eval" / "cv"
    cv.mkdir(parents=True)
    table = pd.DataFrame(
        {
            "patient_id": PATIENTS,
            "true_volume": VOLUMES,
            "dice": [0.0] * 6,  # the configured threshold's column: not what the figures read
            "dice_at_0.6": [0.1] * 6,  # cv chose keep 0.5, not the configured 1
            "dice_at_0.6_keep_0.5": dice_at_pair,
            "flair_only_dice_at_0.4": flair_at_pair,
            "flair_only_dice_at_0.6_keep_0.5": [0.2] * 6,
        }
    )
    table.to_csv(cv / "patients.csv", index=False)
    summary = {
        "options": {"keep_ratio": 1.0},
        "threshold_sweep": {"best_mean": 0.6, "best_keep_ratio": 0.5},
        "flair_only_sweep": {"best_mean": 0.4, "best_keep_ratio": 1.0},
    }
    (cv / "summary.json").write_text(json.dumps(summary))
    if test:
        (root / "eval" / "test").mkdir(parents=True)
        (root / "eval" / "test" / "summary.json").write_text(json.dumps({"dice_mean": 0.81, "dice_median": 0.86}))
    return root


def test_figures_are_read_at_cvs_chosen_pairs(tmp_path, rf):
    run = write_run(tmp_path / "r1", [0.4, 0.6, 0.9, 0.7, 0.8, 1.0], [0.2, 0.6, 0.9, 0.5, 0.8, 1.0])
    scores = rf.load_run(run)
    assert (scores.threshold, scores.keep_ratio, scores.flair_pair) == (0.6, 0.5, (0.4, 1.0))
    row = rf.figures(scores)
    assert row["n"] == 6 and row["mean"] == pytest.approx(4.4 / 6) and row["median"] == pytest.approx(0.75)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert row["below_half"] == {"TCGA_CS_5396_1": 0.4}
    assert row["hard"] == {"TCGA_CS_5396_1": 0.4, "TCGA_DU_7299_2": 0.6} and row["hard_mean"] == pytest.approx(0.5)
    assert row["small_n"] == 2 and row["small_mean"] == pytest.approx((0.9 + 0.7) / 2)  # P3, P4: the 2 smallest
    assert row["flair_mean"] == pytest.approx(4.0 / 6) and row["flair_gap"] == pytest.approx(0.4 / 6)
    assert (row["test_mean"], row["test_median"]) == (0.81, 0.86)
    assert rf.figures(scores, hard=("P5",), n_small=1)["hard_mean"] == pytest.approx(0.8)
    assert rf.figures(scores, n_small=1)["small_mean"] == pytest.approx(0.9)


def test_paired_against_a_base_at_each_runs_own_pair(tmp_path, rf, capsys):
    base = write_run(tmp_path / "base", [0.5] * 6, [0.5] * 6, test=False)
    run = write_run(tmp_path / "r1", [0.5, 0.7, 0.5, 0.45, 0.5, 0.5], [0.5] * 6)
    paired = rf.paired_against(rf.load_run(run), rf.load_run(base), tolerance=0.01)
    assert paired["dice"]["diff_mean"] == pytest.approx(0.15 / 6)
    assert (paired["dice"]["better"], paired["dice"]["worse"]) == (1, 1)
    assert paired["flair_only"]["diff_mean"] == 0.0 and paired["flair_only"]["same"] == 6
    # the hard patients (TCGA_CS_5396 +0, TCGA_DU_7299 +0.2) and the 2 smallest tumours (P3 +0, P4 -0.05)
    assert paired["hard"]["n"] == 2 and paired["hard"]["diff_mean"] == pytest.approx(0.1)
    assert paired["small"]["n"] == 2 and paired["small"]["diff_mean"] == pytest.approx(-0.025)
    assert list(paired) == ["dice", "hard", "small", "flair_only"]
    only_p5 = rf.paired_against(rf.load_run(run), rf.load_run(base), 0.01, hard=("P5",), n_small=1)
    assert only_p5["hard"]["n"] == 1 and only_p5["small"]["n"] == 1 and only_p5["small"]["diff_mean"] == 0.0
    assert "hard" not in rf.paired_against(rf.load_run(run), rf.load_run(base), 0.01, hard=("NOBODY",))
    out_csv = tmp_path / "figures.csv"
    assert rf.main([str(run), "--base", str(base), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "r1: cv's pair 0.6 / keep 0.5, 6 patients out of fold" in out
    assert "vs base (3 sequences, 6 patients): +0.025" in out and "1 better / 1 worse by > 0.01" in out
    assert "vs base (hard patients, 2 patients): +0.100" in out and "vs base (small tumours, 2 patients): -0.025" in out
    assert "test split (ensemble): 0.810 / 0.860" in out
    table = pd.read_csv(out_csv)
    assert list(table["run"]) == ["r1"] and table.loc[0, "dice_vs_base"] == pytest.approx(0.025)
    assert rf.main([str(base)]) == 0 and "test split" not in capsys.readouterr().out  # no test evaluated


def test_a_run_without_cv_is_a_clear_error(tmp_path, rf, capsys):
    (tmp_path / "r0").mkdir()
    assert rf.main([str(tmp_path / "r0")]) == 1
    err = capsys.readouterr().err
    assert "r0/eval/cv/summary.json: missing" in err and "mri_seg.pipelines.cv" in err


def test_the_chosen_column_exists_or_the_error_names_it(tmp_path, rf):
    run = write_run(tmp_path / "r1", [0.5] * 6, [0.5] * 6)
    patients = pd.read_csv(run / "eval" / "cv" / "patients.csv").drop(columns=["dice_at_0.6_keep_0.5"])
    patients.to_csv(run / "eval" / "cv" / "patients.csv", index=False)
    with pytest.raises(ValueError, match="no column 'dice_at_0.6_keep_0.5'"):
        rf.load_run(run)


def test_pairs_of_seeds_are_pooled_patient_by_patient(tmp_path, rf, capsys):
    base0 = write_run(tmp_path / "base0", [0.5] * 6, [0.5] * 6)
    run0 = write_run(tmp_path / "run0", [0.6] * 6, [0.5] * 6)  # +0.1 for every patient
    base1 = write_run(tmp_path / "base1", [0.5] * 6, [0.5] * 6)
    run1 = write_run(tmp_path / "run1", [0.5, 0.5, 0.5, 0.5, 0.5, 0.2], [0.4] * 6)  # -0.3 for one
    pairs = [(rf.load_run(base0), rf.load_run(run0)), (rf.load_run(base1), rf.load_run(run1))]
    pooled = rf.pooled(pairs, tolerance=0.01)
    assert pooled["dice"]["n"] == 12 and pooled["dice"]["diff_mean"] == pytest.approx((0.6 - 0.3) / 12)
    assert (pooled["dice"]["better"], pooled["dice"]["worse"], pooled["dice"]["same"]) == (6, 1, 5)
    assert pooled["flair_only"]["diff_mean"] == pytest.approx(-0.05)
    # P6 (-0.3 in run1) is neither hard nor small: those rows pool run0's +0.1 with run1's 0
    assert pooled["hard"]["n"] == 4 and pooled["hard"]["diff_mean"] == pytest.approx(0.05)
    assert pooled["small"]["n"] == 4 and pooled["small"]["diff_mean"] == pytest.approx(0.05)
    args = ["--pair", str(base0), str(run0), "--pair", str(base1), str(run1)]
    assert rf.main(args) == 0
    out = capsys.readouterr().out
    assert "run0 vs its base:" in out and "pooled over 2 pairs:" in out
    assert "vs each base (3 sequences, 12 patients): +0.025" in out
    with pytest.raises(SystemExit):
        rf.main([])  # neither a run nor a pair


def test_plot_of_the_per_patient_differences(tmp_path, rf, capsys):
    base = write_run(tmp_path / "base", [0.5] * 6, [0.5] * 6)
    run = write_run(tmp_path / "r1", [0.5, 0.7, 0.5, 0.45, 0.5, 0.5], [0.5] * 6)
    table = rf.differences_table([(rf.load_run(base), rf.load_run(run))])
    assert list(table["pair"].unique()) == ["r1 vs base"] and len(table) == 6
    row = table.set_index("patient_id").loc["TCGA_DU_7299_2"]
    assert row["diff"] == pytest.approx(0.2) and row["true_volume"] == 5000 and bool(row["hard"])
    assert not table.set_index("patient_id").loc["P4", "hard"]
    # the 2 smallest are 100 and 200 pixels, the next 5000: the line between them
    assert rf.small_boundary(rf.load_run(base)) == pytest.approx((200 * 5000) ** 0.5)
    png = tmp_path / "diff.png"
    assert rf.main([str(run), "--base", str(base), "--plot", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG") and f"-> {png}" in capsys.readouterr().out
    assert rf.main([str(run), "--plot", str(tmp_path / "none.png")]) == 1  # nothing to compare
    assert "--plot needs --base or --pair" in capsys.readouterr().err and not (tmp_path / "none.png").exists()
