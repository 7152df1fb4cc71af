"""benchmarks/compare_evals.py: paired comparison of two evaluations of the same patients."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def compare(load_benchmark):
    return load_benchmark("compare_evals")


def write_eval(folder: Path, dice: dict[str, float]) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame({"patient_id": list(dice), "dice": list(dice.values())}).to_csv(folder / "patients.csv", index=False)
    return folder


def test_pairs_by_patient_and_counts_better_worse_same(tmp_path, compare, capsys):
    a = write_eval(tmp_path / "a", {"P1": 0.50, "P2": 0.80, "P3": 0.70, "P4": 0.90})
    b = write_eval(tmp_path / "b", {"P3": 0.702, "P2": 0.60, "P1": 0.90, "P5": 0.10})
    both, only_one = compare.paired(a, b)
    assert only_one == ["P4", "P5"]
    assert list(both.index) == ["P1", "P2", "P3"]
    c = compare.comparison(both, tolerance=0.005)
    assert (c["better"], c["worse"], c["same"]) == (1, 1, 1)
    assert c["diff_mean"] == pytest.approx((0.40 - 0.20 + 0.002) / 3)
    assert c["a_mean"] == pytest.approx(2.0 / 3) and c["b_median"] == pytest.approx(0.702)
    assert c["diff_ci_low"] <= c["diff_mean"] <= c["diff_ci_high"]
    assert compare.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "3 patients in both (left out, in one only: P4, P5)" in out
    assert "B better for 1, worse for 1, same (within 0.005) for 1" in out


def test_identical_evaluations_differ_by_zero(tmp_path, compare):
    scores = {"P1": 0.3, "P2": 0.9}
    both, _ = compare.paired(write_eval(tmp_path / "a", scores), write_eval(tmp_path / "b", scores))
    c = compare.comparison(both, tolerance=0.0)
    assert c["diff_mean"] == 0.0 and (c["diff_ci_low"], c["diff_ci_high"]) == (0.0, 0.0)
    assert (c["better"], c["worse"], c["same"]) == (0, 0, 2)


def test_no_shared_patient_is_an_error(tmp_path, compare, capsys):
    a = write_eval(tmp_path / "a", {"P1": 0.5})
    b = write_eval(tmp_path / "b", {"P2": 0.5})
    assert compare.main([str(a), str(b)]) == 1
    assert "no patient is in both" in capsys.readouterr().err
