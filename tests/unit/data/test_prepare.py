"""The prepare stage: tables, ordering, determinism, folder forms, CLI behaviour, real data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mri_seg.config import load_config
from mri_seg.data.kaggle_lgg import DatasetError, find_patients_root, prepare_dataset
from mri_seg.data.manifest import MANIFEST_COLUMNS, read_manifest
from mri_seg.data.synthetic import DATA_CSV_COLUMNS, generate_dataset
from mri_seg.io.images import read_mask, read_slice

REPO = Path(__file__).resolve().parents[3]
OUTPUTS = ("manifest.csv", "patients.csv", "prepare_report.json")


def prepare(data: Path, run: Path, *overrides: str):
    return prepare_dataset(data, run, load_config(None, ["prepare.workers=2", *overrides]), progress=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [sys.executable, "-m", "mri_seg.pipelines.prepare", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120, env=env)


def test_manifest_schema_order_and_patient_table(synthetic_dir, tmp_path):
    run = tmp_path / "run"
    result = prepare(synthetic_dir, run)
    manifest = read_manifest(run)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["patient_id"].tolist() == sorted(manifest["patient_id"])  # patients in name order
    for _, part in manifest.groupby("patient_id"):
        idx = part["slice_index"].tolist()
        assert idx == list(range(1, len(idx) + 1))  # numeric: 2 before 10
        assert len(idx) >= 12
    assert set(manifest["has_tumour"].map(type)) == {bool}
    assert (manifest["has_tumour"] == (manifest["tumour_pixels"] > 0)).all()
    assert manifest["image_path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()
    assert manifest["mask_path"].str.endswith("_mask.tif").all()
    assert (manifest[["height", "width", "channels"]] == [128, 128, 3]).all().all()
    text = (run / "manifest.csv").read_text().splitlines()
    assert text[1].endswith(",True") or text[1].endswith(",False")

    patients = pd.read_csv(run / "patients.csv", dtype=str, keep_default_na=False)
    assert list(patients.columns) == [
        "patient_id", "case_id", "institution", "n_slices", "n_tumour_slices", "tumour_pixels_total",
    ] + DATA_CSV_COLUMNS  # fmt: skip
    assert len(patients) == 8 and (patients["Patient"] == patients["case_id"]).all()
    totals = manifest.groupby("patient_id")["tumour_pixels"].sum()
    assert (patients.set_index("patient_id")["tumour_pixels_total"].astype(int) == totals).all()
    assert (patients.set_index("patient_id")["n_slices"].astype(int) == manifest.groupby("patient_id").size()).all()
    assert result.counts["slices"] == len(manifest) and result.counts["patients"] == 8


def test_slice_readers(synthetic_dir, tmp_path):
    row = prepare(synthetic_dir, tmp_path / "run").manifest.query("has_tumour").iloc[0]
    image, mask = read_slice(row["image_path"]), read_mask(row["mask_path"])
    assert image.shape == (128, 128, 3) and image.dtype.name == "uint8"
    assert mask.shape == (128, 128) and mask.dtype == bool and mask.sum() == row["tumour_pixels"]
    with pytest.raises(ValueError, match="mask"):
        read_slice(row["mask_path"])  # one channel: not an image slice
    with pytest.raises(ValueError, match="unreadable"):
        read_mask(tmp_path / "absent.tif")


def test_byte_identical_outputs_across_runs_and_worker_counts(synthetic_dir, tmp_path):
    prepare(synthetic_dir, tmp_path / "a")
    prepare(synthetic_dir, tmp_path / "b", "prepare.workers=1")
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert "seconds" not in (tmp_path / "a" / "prepare_report.json").read_text()


def test_three_folder_forms_give_the_same_manifest(tmp_path):
    download = tmp_path / "lgg-mri-segmentation"
    generate_dataset(download / "kaggle_3m", 3, seed=2, min_slices=4, max_slices=5, size=32)
    (download / "lgg-mri-segmentation").mkdir()  # the real download nests a copy one level deeper
    flat = Path(shutil.copytree(download / "kaggle_3m", tmp_path / "flat"))
    manifests = []
    for i, folder in enumerate([download, download / "kaggle_3m", flat]):
        result = prepare(folder, tmp_path / f"run{i}")
        assert result.counts["folders_without_data_csv_row"] == 0 and not result.problems
        names = {c: result.manifest[c].map(lambda p: Path(p).name) for c in ("image_path", "mask_path")}
        manifests.append(result.manifest.assign(**names))
    assert find_patients_root(download) == download / "kaggle_3m"
    pd.testing.assert_frame_equal(manifests[0], manifests[2])
    pd.testing.assert_frame_equal(manifests[1], manifests[2])


def test_data_csv_is_found_beside_the_patients_or_in_data_dir(tmp_path):
    download = tmp_path / "dl"
    generate_dataset(download / "kaggle_3m", 2, seed=2, min_slices=4, max_slices=4, size=32)
    shutil.move(download / "kaggle_3m" / "data.csv", download / "data.csv")
    result = prepare(download, tmp_path / "run")
    assert result.data_csv == download / "data.csv" and result.counts["data_csv_rows"] == 2


def test_missing_or_empty_folder_raises(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        prepare(tmp_path / "nope", tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no usable slices"):
        prepare(tmp_path / "empty", tmp_path / "run")


def test_cli_missing_and_empty_dir_exit_nonzero_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, words in ((tmp_path / "missing", "not found"), (tmp_path / "empty", "no usable slices")):
        proc = run_cli("--data-dir", str(folder), "--run-dir", str(tmp_path / "run"))
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_cli_default_lists_defects_then_strict_fails(synthetic_dir, tmp_path):
    data = Path(shutil.copytree(synthetic_dir, tmp_path / "data"))
    patient = sorted(p for p in data.iterdir() if p.is_dir())[0]
    (patient / f"{patient.name}_3_mask.tif").unlink()
    run = tmp_path / "run"
    proc = run_cli("--data-dir", str(data), "--run-dir", str(run), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"[image_without_mask] {patient / (patient.name + '_3.tif')}" in proc.stderr
    n = len(read_manifest(run))
    tumour = int(read_manifest(run)["has_tumour"].sum())
    expected = f"prepare: 8 patients, {n} slices ({tumour} with tumour), 1 excluded, 1 problems -> {run}"
    assert proc.stdout.strip() == expected
    resolved = yaml.safe_load((run / "config_prepare.yaml").read_text())
    assert resolved["prepare"]["workers"] == 1 and resolved["prepare"]["strict"] is False

    strict_run = tmp_path / "strict"
    proc = run_cli("--data-dir", str(data), "--run-dir", str(strict_run), "--strict")
    assert proc.returncode == 2
    assert "[image_without_mask]" in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert json.loads((strict_run / "prepare_report.json").read_text())["status"] == "failed_strict"
    assert not (strict_run / "manifest.csv").exists()


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_lgg_dev_counts_and_clinical_columns(lgg_dev_dir, tmp_path):
    run = tmp_path / "run"
    result = prepare(lgg_dev_dir.parent, run)  # the folder holding kaggle_3m/
    manifest = read_manifest(run)
    assert len(manifest) == 1409 and manifest["patient_id"].nunique() == 40
    assert int(manifest["has_tumour"].sum()) == 498
    assert [p for p in result.problems if p.severity != "info"] == []
    assert result.counts["data_csv_rows"] == 110 and result.counts["data_csv_patients_without_folder"] == 70
    assert result.counts["folders_without_data_csv_row"] == 0
    patients = pd.read_csv(run / "patients.csv", dtype=str, keep_default_na=False)
    assert len(patients) == 40 and (patients["Patient"] == patients["case_id"]).all()
    source = {line.split(",", 1)[0]: line for line in (lgg_dev_dir / "data.csv").read_text().splitlines()[1:]}
    for _, row in patients.iterrows():  # clinical values written back exactly as in data.csv
        assert ",".join(row[DATA_CSV_COLUMNS]) == source[row["case_id"]]
    one = manifest[manifest["patient_id"] == "TCGA_CS_4942_19970222"]["slice_index"].tolist()
    assert one[:11] == list(range(1, 12))


@pytest.mark.realdata
def test_defects_in_a_copy_of_real_patients(lgg_dev_dir, tmp_path):
    data = tmp_path / "real"
    data.mkdir()
    folders = sorted(p for p in lgg_dev_dir.iterdir() if p.is_dir())[:2]
    for folder in folders:
        shutil.copytree(folder, data / folder.name)
    shutil.copy(lgg_dev_dir / "data.csv", data / "data.csv")
    a, b = (data / f.name for f in folders)
    truncated = a / f"{a.name}_10.tif"
    truncated.write_bytes(truncated.read_bytes()[:50_000])
    (b / f"{b.name}_2_mask.tif").unlink()
    n_images = sum(1 for p in data.glob("*/*.tif") if not p.name.endswith("_mask.tif"))
    result = prepare(data, tmp_path / "run")
    errors = {(p.kind, Path(p.file).name) for p in result.problems if p.severity == "error"}
    assert errors == {("unreadable_image", truncated.name), ("image_without_mask", f"{b.name}_2.tif")}
    assert result.counts["slices"] == n_images - 2 and result.counts["excluded_slices"] == 2
    assert result.counts["data_csv_patients_without_folder"] == 108


def test_archive_unpack_is_cached_and_reused(tmp_path, monkeypatch):
    import tarfile

    from conftest import cache_root, unpack_lgg_dev

    src = tmp_path / "src" / "kaggle_3m"
    src.mkdir(parents=True)
    (src / "data.csv").write_text("Patient\n")
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="kaggle_3m")
    monkeypatch.setenv("MRI_SEG_CACHE", str(tmp_path / "cache"))
    dest_root = cache_root() / "lgg-dev"
    assert dest_root == tmp_path / "cache" / "lgg-dev"
    first = unpack_lgg_dev(archive, dest_root)
    assert first == dest_root / "kaggle_3m" and (first / "data.csv").read_text() == "Patient\n"
    (first / "marker-of-first-unpack").touch()
    assert unpack_lgg_dev(archive, dest_root) == first and (first / "marker-of-first-unpack").exists()
    assert sorted(p.name for p in dest_root.iterdir()) == [".kaggle_3m.complete", "kaggle_3m"]  # no temp left
