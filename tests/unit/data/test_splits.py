"""Patient-level stratified splits: sizes, disjointness, determinism, folds, stratification, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mri_seg.config import ConfigError, SplitConfig, load_config
from mri_seg.data.manifest import read_manifest, read_splits
from mri_seg.data.splits import make_splits, split_run_dir, split_sizes
from mri_seg.pipelines import split as split_stage


def cohort(n: int, seed: int = 0, institutions=("CS", "DU", "FG", "HT")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "patient_id": [f"TCGA_{institutions[i % len(institutions)]}_{1000 + i}_20000101" for i in range(n)],
        "institution": [institutions[i % len(institutions)] for i in range(n)],
        "tumour_pixels_total": rng.lognormal(9, 1.2, n).astype(int),
    })  # fmt: skip


def test_every_patient_in_exactly_one_split():
    patients = cohort(40)
    splits = make_splits(patients, SplitConfig())
    assert list(splits.columns) == ["patient_id", "split"]
    assert sorted(splits["patient_id"]) == sorted(patients["patient_id"]) and splits["patient_id"].is_unique
    assert set(splits["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("n", [1, 3, 6, 8, 17, 40, 110])
@pytest.mark.parametrize("fractions", [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.9, 0.1, 0.0)])
def test_sizes_within_one_patient_of_the_fractions(n, fractions):
    cfg = SplitConfig(train=fractions[0], val=fractions[1], test=fractions[2])
    counts = make_splits(cohort(n), cfg)["split"].value_counts()
    for name, frac in zip(("train", "val", "test"), fractions):
        assert abs(counts.get(name, 0) - n * frac) <= 1, (name, dict(counts))
    assert counts.get("train", 0) >= 1
    assert dict(split_sizes(n, cfg)) == {k: int(counts.get(k, 0)) for k in ("train", "val", "test")}


def test_same_seed_identical_and_different_seed_different():
    patients = cohort(40)
    a = make_splits(patients, SplitConfig(seed=1))
    b = make_splits(patients.sample(frac=1.0, random_state=3), SplitConfig(seed=1))  # input order irrelevant
    c = make_splits(patients, SplitConfig(seed=2))
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_each_split_has_tumour_heavy_and_light_patients(seed):
    patients = cohort(40, seed=seed)
    splits = make_splits(patients, SplitConfig(seed=seed)).merge(patients, on="patient_id")
    low, high = patients["tumour_pixels_total"].quantile([1 / 3, 2 / 3])
    for name, part in splits.groupby("split"):
        assert (part["tumour_pixels_total"] <= low).any() and (part["tumour_pixels_total"] >= high).any(), name
        assert part["institution"].nunique() >= 3, name  # institutions spread too


def test_rare_institution_and_tied_burdens_are_handled():
    patients = cohort(12, institutions=("CS", "DU", "HT"))
    patients.loc[0, "institution"] = "EZ"  # a single patient from one site
    patients.loc[:5, "tumour_pixels_total"] = 0  # many ties at zero
    splits = make_splits(patients, SplitConfig(tumour_bins=4))
    assert splits["split"].value_counts().to_dict() == {"train": 8, "val": 2, "test": 2}


def test_folds_cover_train_and_val_only():
    splits = make_splits(cohort(40), SplitConfig(n_folds=5, seed=4))
    assert list(splits.columns) == ["patient_id", "split", "fold"]
    test = splits[splits["split"] == "test"]
    rest = splits[splits["split"] != "test"]
    assert (test["fold"] == -1).all()
    sizes = rest["fold"].value_counts().sort_index()
    assert sizes.index.tolist() == [0, 1, 2, 3, 4] and sizes.max() - sizes.min() <= 2
    again = make_splits(cohort(40), SplitConfig(n_folds=5, seed=4))
    pd.testing.assert_frame_equal(splits, again)


@pytest.mark.parametrize(
    "kwargs, key",
    [({"train": 0.8}, "sum to 1"), ({"test": -0.1, "train": 0.95}, "split.test"),
     ({"n_folds": 1}, "split.n_folds"), ({"tumour_bins": 0}, "split.tumour_bins"),
     ({"train": 0.0, "val": 0.5, "test": 0.5}, "split.train")],
)  # fmt: skip
def test_invalid_config_is_rejected(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_splits(cohort(10), SplitConfig(**kwargs))


def test_too_few_patients_for_folds():
    with pytest.raises(ConfigError, match="n_folds=5"):
        make_splits(cohort(4), SplitConfig(n_folds=5))


def fresh(run: Path, dst: Path, names=("manifest.csv", "patients.csv")) -> Path:
    dst.mkdir(parents=True)
    for name in names:
        shutil.copy(run / name, dst / name)
    return dst


def test_split_run_dir_writes_splits_matching_make_splits(synthetic_run, tmp_path):
    run = fresh(synthetic_run, tmp_path / "run")
    cfg = load_config(None, ["split.seed=7"])
    returned = split_run_dir(run, cfg)
    written = read_splits(run)
    pd.testing.assert_frame_equal(written, returned)
    assert set(written["patient_id"]) == set(read_manifest(run)["patient_id"])
    # without patients.csv the per-patient totals come from the manifest: same split
    run2 = fresh(synthetic_run, tmp_path / "run2", names=("manifest.csv",))
    pd.testing.assert_frame_equal(split_run_dir(run2, cfg), returned)


def test_cli_writes_splits_resolved_config_and_table(synthetic_run, tmp_path, capsys):
    run = fresh(synthetic_run, tmp_path / "run")
    assert split_stage.main(["--run-dir", str(run), "--seed", "11", "--set", "split.n_folds=2"]) == 0
    out = capsys.readouterr().out
    assert "split: seed 11, 2 folds" in out
    for word in ("patients", "slices", "tumour_slices", "median_tumour_px", "institutions", "train", "val", "test"):
        assert word in out
    resolved = yaml.safe_load((run / "config_split.yaml").read_text())
    assert resolved["split"]["seed"] == 11 and resolved["split"]["n_folds"] == 2
    splits = read_splits(run)
    assert "fold" in splits.columns and len(splits) == 8
    first = (run / "splits.csv").read_bytes()
    split_stage.main(["--run-dir", str(run), "--seed", "11", "--set", "split.n_folds=2"])
    assert (run / "splits.csv").read_bytes() == first


def test_cli_without_manifest_fails_cleanly(tmp_path):
    from mri_seg.pipelines._cli import run_main

    with pytest.raises(SystemExit) as exc:
        run_main(split_stage.main, ["--run-dir", str(tmp_path)])
    assert exc.value.code == 2


def with_second_studies(patients: pd.DataFrame, every: int = 3) -> pd.DataFrame:
    """``patients`` (with case_id) plus a second dated folder for every ``every``-th patient."""
    patients = patients.assign(case_id=patients["patient_id"].str.rsplit("_", n=1).str[0])
    extra = patients.iloc[::every].assign(patient_id=lambda f: f["case_id"] + "_20050505", tumour_pixels_total=7)
    return pd.concat([patients, extra], ignore_index=True)


@pytest.mark.parametrize("seed", range(8))
def test_dated_folders_of_one_patient_share_split_and_fold(seed):
    patients = with_second_studies(cohort(30, seed=seed))
    splits = make_splits(patients, SplitConfig(seed=seed, n_folds=4)).merge(patients, on="patient_id")
    assert len(splits) == len(patients) == 40 and splits["patient_id"].is_unique
    per_case = splits.groupby("case_id")
    assert (per_case["split"].nunique() == 1).all() and (per_case["fold"].nunique() == 1).all()
    assert splits.groupby("case_id").size().max() == 2
    # sizes are counted in patients (cases), not folders: within one of the fractions of 30
    cases = splits.drop_duplicates("case_id")["split"].value_counts()
    for name, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert abs(cases[name] - 30 * frac) <= 1, dict(cases)


def test_prepared_dataset_with_two_dated_folders_of_one_patient(tmp_path):
    from mri_seg.data.kaggle_lgg import prepare_dataset
    from mri_seg.data.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "kaggle_3m", n_patients=7, seed=4, min_slices=4, max_slices=5, size=32)
    first = sorted(p for p in data.iterdir() if p.is_dir())[0]
    case = first.name.rsplit("_", 1)[0]
    second = data / f"{case}_20111111"  # a later study of the same patient
    second.mkdir()
    for f in first.iterdir():
        shutil.copy(f, second / f.name.replace(first.name, second.name))
    cfg = load_config(None, ["prepare.workers=1", "split.n_folds=2"])
    run = tmp_path / "run"
    prepare_dataset(data, run, cfg, progress=False)
    manifest = read_manifest(run)
    assert set(manifest.loc[manifest["case_id"] == case, "patient_id"]) == {first.name, second.name}
    for seed in range(6):
        cfg.split.seed = seed
        splits = split_run_dir(run, cfg).set_index("patient_id")
        assert splits.loc[first.name, "split"] == splits.loc[second.name, "split"], seed
        assert splits.loc[first.name, "fold"] == splits.loc[second.name, "fold"], seed
