"""benchmarks/oof_components.py: out-of-fold probabilities averaged over runs, and scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def oof(load_benchmark):
    return load_benchmark("oof_components")


def _cache(folder: Path, probs: dict[str, np.ndarray], truth: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for patient, prob in probs.items():
        np.savez_compressed(folder / f"{patient}.npz", prob=prob.astype(np.float16), truth=truth, fold=0)
    return folder


def test_runs_averaged_per_patient_then_scored(tmp_path, oof):
    truth = np.zeros((3, 8, 8), bool)
    truth[:, 2:6, 2:6] = True  # 48 voxels
    half = np.where(truth, 0.9, 0.0)
    half[:, :, 4:] = 0.0  # run a finds the left half of the tumour (Dice 2/3), run b the right half
    a = _cache(tmp_path / "a", {"P1": half, "P2": np.where(truth, 0.8, 0.1)}, truth)
    b = _cache(tmp_path / "b", {"P1": half[:, :, ::-1], "P2": np.where(truth, 0.6, 0.3)}, truth)
    avg = oof.average_caches([a, b], tmp_path / "avg")
    p1 = np.load(avg / "P1.npz")
    assert np.array_equal(p1["truth"], truth)
    np.testing.assert_allclose(p1["prob"].astype(np.float32)[truth], 0.45, atol=1e-3)  # every tumour voxel: (0.9 + 0) / 2
    np.testing.assert_allclose(np.load(avg / "P2.npz")["prob"].astype(np.float32)[~truth], 0.2, atol=1e-3)

    rows = {}
    for name, cache in (("a", a), ("avg", avg)):
        csv = tmp_path / f"{name}.csv"
        oof.score(cache, [0.4], [0.0], per_patient=csv)
        table = pd.read_csv(csv)
        rows[name] = table[(table["rule"] == "size") & (table["keep_ratio"] == 1.0)].set_index("patient_id")["dice"]
    assert rows["a"]["P1"] == pytest.approx(2 / 3)  # half the tumour
    assert rows["avg"]["P1"] == pytest.approx(1.0)  # the two halves together, each at 0.45 >= 0.4
    assert rows["a"]["P2"] == pytest.approx(1.0) and rows["avg"]["P2"] == pytest.approx(1.0)


def test_runs_with_other_patients_are_refused(tmp_path, oof):
    truth = np.ones((1, 4, 4), bool)
    a = _cache(tmp_path / "a", {"P1": np.ones((1, 4, 4))}, truth)
    b = _cache(tmp_path / "b", {"P2": np.ones((1, 4, 4))}, truth)
    with pytest.raises(SystemExit, match="splits differ"):
        oof.average_caches([a, b], tmp_path / "avg")


def test_rules_restrict_what_is_scored(tmp_path, oof):
    truth = np.zeros((2, 8, 8), bool)
    truth[:, 1:4, 1:4] = True  # the tumour (18 voxels)
    prob = np.where(truth, 0.9, 0.0)
    prob[:, 5:8, 5:8] = 0.8  # a false blob of the same size, less confident
    cache = _cache(tmp_path / "c", {"P1": prob}, truth)
    csv = tmp_path / "rules.csv"
    oof.score(cache, [0.5], [0.0], per_patient=csv, rules=[("mass", 1.0), ("none", 1.0)])
    table = pd.read_csv(csv)
    assert sorted(zip(table["rule"], table["keep_ratio"])) == [("mass", 1.0), ("none", 1.0)]
    dice = table.set_index("rule")["dice"]
    assert dice["mass"] == pytest.approx(1.0)  # the more probable component kept, the blob dropped
    assert dice["none"] == pytest.approx(2 / 3)  # both kept: 2 x 18 / (36 predicted + 18 true)


def test_unknown_rule_is_refused(tmp_path, oof, capsys):
    with pytest.raises(SystemExit):
        oof.main(["--run-dir", str(tmp_path), "--rules", "biggest:1"])
    assert "unknown component rule" in capsys.readouterr().err


def test_close_scores_each_rule_also_with_the_closing(tmp_path, oof):
    truth = np.zeros((2, 20, 20), bool)
    truth[:, 4:14, 4:16] = True  # 240 voxels
    prob = np.where(truth, 0.9, 0.0)
    prob[:, 4:14, 9:11] = 0.1  # a dark band the model scores as background: two fragments (200 voxels)
    cache = _cache(tmp_path / "c", {"P1": prob}, truth)
    csv = tmp_path / "close.csv"
    oof.score(cache, [0.5], [0.0], per_patient=csv, rules=[("none", 1.0)], closes=[2 / 20])
    dice = pd.read_csv(csv).set_index("close_radius")["dice"]
    assert sorted(dice.index) == [0.0, 0.1]
    assert dice[0.0] == pytest.approx(2 * 200 / 440)
    assert dice[0.1] > 0.95  # the band bridged (a disc leaves the band's ends at the rim a few pixels short)
