"""benchmarks/run_spread.py: spread of several evaluations of the same patients, best-of-runs ceiling."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def run_spread(load_benchmark):
    return load_benchmark("run_spread")


def write_run(root: Path, run: str, dice: dict[str, float]) -> Path:
    folder = root / run / "eval" / "cv"
    folder.mkdir(parents=True)
    pd.DataFrame({"patient_id": list(dice), "dice": list(dice.values())}).to_csv(folder / "patients.csv", index=False)
    return folder


def test_best_of_runs_hard_patients_and_what_the_others_need(tmp_path, run_spread, capsys):
    a = write_run(tmp_path, "a", {"P1": 0.9, "P2": 0.8, "H1": 0.1, "H2": 0.6, "X": 0.5})
    b = write_run(tmp_path, "b", {"P1": 0.7, "P2": 0.9, "H1": 0.3, "H2": 0.4})
    scores = run_spread.load([a, b])
    assert list(scores.columns) == ["a", "b"]
    assert list(scores.index) == ["H1", "H2", "P1", "P2"]  # X is not in every run
    s = run_spread.spread(scores, hard_below=0.7, target=0.84)
    assert s["best_of_runs_mean"] == pytest.approx((0.9 + 0.9 + 0.3 + 0.6) / 4)
    assert s["hard"] == pytest.approx({"H1": 0.3, "H2": 0.6})
    assert s["others_mean_range"] == pytest.approx((0.8, 0.85))
    # 4 patients at 0.84 = 3.36; the hard ones at their best give 0.9, so P1 and P2 need 2.46 / 2
    assert s["others_needed"] == pytest.approx(1.23)
    assert run_spread.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "4 patients in all 2 runs" in out
    assert "best-of-runs mean (each patient at its best run): 0.675" in out
    assert "H1: 0.100 .. 0.300" in out
    assert "a mean of 0.84 needs them at 1.230" in out


def test_no_hard_patient_needs_the_target_itself(tmp_path, run_spread):
    a = write_run(tmp_path, "a", {"P1": 0.9, "P2": 0.8})
    b = write_run(tmp_path, "b", {"P1": 0.8, "P2": 0.9})
    s = run_spread.spread(run_spread.load([a, b]), hard_below=0.7, target=0.84)
    assert s["hard"] == {} and s["others_needed"] == pytest.approx(0.84)
    assert s["best_of_runs_mean"] == pytest.approx(0.9)


def test_one_folder_is_refused(tmp_path, run_spread):
    a = write_run(tmp_path, "a", {"P1": 0.9})
    with pytest.raises(SystemExit):
        run_spread.main([str(a)])
