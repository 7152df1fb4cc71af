"""Every defect the prepare stage detects, each on a temporary copy of a small synthetic dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from mri_seg.config import load_config
from mri_seg.data.kaggle_lgg import DATA_CSV_COLUMNS, StrictPrepareError, prepare_dataset
from mri_seg.data.synthetic import generate_dataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("pristine") / "data", n_patients=3, seed=5,
                            min_slices=6, max_slices=8, size=32)  # fmt: skip


@pytest.fixture()
def data(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "data"))


def patients(data: Path) -> list[Path]:
    return sorted(p for p in data.iterdir() if p.is_dir())


def img(patient: Path, n: int, mask: bool = False) -> Path:
    return patient / f"{patient.name}_{n}{'_mask' if mask else ''}.tif"


def prepare(data: Path, run: Path, strict: bool = False, workers: int = 2):
    cfg = load_config(None, [f"prepare.workers={workers}", f"prepare.strict={'true' if strict else 'false'}"])
    return prepare_dataset(data, run, cfg, progress=False)


def total_slices(data: Path) -> int:
    return sum(1 for p in data.glob("TCGA_*/TCGA_*.tif") if not p.name.endswith("_mask.tif"))


def only_problem(result, kind: str):
    found = [p for p in result.problems if p.kind == kind]
    assert len(found) == 1, [p.kind for p in result.problems]
    return found[0]


def slice_indices(result, patient: Path) -> list[int]:
    return result.manifest.loc[result.manifest["patient_id"] == patient.name, "slice_index"].tolist()


def test_clean_copy_has_no_problems(data, tmp_path):
    result = prepare(data, tmp_path / "run", strict=True)
    assert [p.severity for p in result.problems] == []
    assert result.counts["slices"] == total_slices(data) and result.counts["excluded_slices"] == 0


def test_image_without_mask(data, tmp_path):
    p = patients(data)[0]
    img(p, 3, mask=True).unlink()
    result = prepare(data, tmp_path / "run")
    problem = only_problem(result, "image_without_mask")
    assert problem.file == str(img(p, 3)) and problem.severity == "error" and problem.patient_id == p.name
    assert 3 not in slice_indices(result, p) and 2 in slice_indices(result, p)
    assert result.counts["excluded_slices"] == 1 and result.counts["slices"] == total_slices(data) - 1


def test_mask_without_image(data, tmp_path):
    p = patients(data)[1]
    img(p, 2).unlink()
    result = prepare(data, tmp_path / "run")
    assert only_problem(result, "mask_without_image").file == str(img(p, 2, mask=True))
    assert 2 not in slice_indices(result, p) and result.counts["excluded_slices"] == 1


@pytest.mark.parametrize("target", ["image", "mask"])
@pytest.mark.parametrize("keep", [0.5, 0.98, 10])
def test_truncated_or_corrupt_tiff(data, tmp_path, target, keep):
    p = patients(data)[0]
    path = img(p, 4, mask=target == "mask")
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)] if keep < 1 else raw[:keep])
    result = prepare(data, tmp_path / "run", workers=1)
    problem = only_problem(result, f"unreadable_{target}")
    assert problem.file == str(path) and "truncated" in problem.reason
    assert 4 not in slice_indices(result, p)


def test_garbage_bytes_named_tif(data, tmp_path):
    p = patients(data)[2]
    img(p, 1).write_bytes(b"this is not a tiff")
    result = prepare(data, tmp_path / "run")
    assert only_problem(result, "unreadable_image").file == str(img(p, 1))


def test_image_and_mask_of_different_size(data, tmp_path):
    p = patients(data)[0]
    cv2.imwrite(str(img(p, 2, mask=True)), np.zeros((30, 32), np.uint8))
    result = prepare(data, tmp_path / "run")
    problem = only_problem(result, "size_mismatch")
    assert "30x32" in problem.reason and "32x32" in problem.reason
    assert 2 not in slice_indices(result, p)


def test_mask_values_other_than_binary(data, tmp_path):
    p = patients(data)[0]
    mask = np.zeros((32, 32), np.uint8)
    mask[4:8, 4:8] = 128
    mask[10:12, 10:12] = 255
    cv2.imwrite(str(img(p, 3, mask=True)), mask)
    result = prepare(data, tmp_path / "run")
    problem = only_problem(result, "mask_values")
    assert "128" in problem.reason and 3 not in slice_indices(result, p)


def test_mask_with_values_0_1_is_accepted(data, tmp_path):
    p = patients(data)[0]
    mask = np.zeros((32, 32), np.uint8)
    mask[4:9, 4:8] = 1
    cv2.imwrite(str(img(p, 3, mask=True)), mask)
    result = prepare(data, tmp_path / "run", strict=True)
    row = result.manifest[(result.manifest["patient_id"] == p.name) & (result.manifest["slice_index"] == 3)]
    assert row["tumour_pixels"].item() == 20 and bool(row["has_tumour"].item())


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_image_with_wrong_channel_count(data, tmp_path, channels):
    p = patients(data)[1]
    array = np.full((32, 32, channels), 90, np.uint8)
    if channels == 2:  # a real 2-sample TIFF (OpenCV alone would silently read it as 1 channel)
        tifffile.imwrite(img(p, 2), array, photometric="minisblack", planarconfig="contig")
    else:
        tifffile.imwrite(img(p, 2), array[..., 0] if channels == 1 else array)
    result = prepare(data, tmp_path / "run")
    problem = only_problem(result, "image_channels")
    assert f"{channels} channel" in problem.reason and 2 not in slice_indices(result, p)


def test_mask_with_three_channels(data, tmp_path):
    p = patients(data)[1]
    cv2.imwrite(str(img(p, 2, mask=True)), np.zeros((32, 32, 3), np.uint8))
    result = prepare(data, tmp_path / "run")
    assert "3 channels" in only_problem(result, "mask_channels").reason


def test_sixteen_bit_image(data, tmp_path):
    p = patients(data)[1]
    tifffile.imwrite(img(p, 1), np.full((32, 32, 3), 1000, np.uint16))
    result = prepare(data, tmp_path / "run")
    assert "uint16" in only_problem(result, "image_dtype").reason


def test_duplicate_slice_numbers_exclude_all_copies(data, tmp_path):
    p = patients(data)[0]
    shutil.copy(img(p, 5), p / f"{p.name}_05.tif")
    result = prepare(data, tmp_path / "run")
    dups = [x for x in result.problems if x.kind == "duplicate_slice"]
    assert sorted(Path(x.file).name for x in dups) == sorted(
        [f"{p.name}_05.tif", f"{p.name}_5.tif", f"{p.name}_5_mask.tif"]
    )
    assert all("slice number 5" in x.reason for x in dups)
    assert 5 not in slice_indices(result, p) and result.counts["excluded_slices"] == 2


def test_empty_patient_folder(data, tmp_path):
    (data / "TCGA_CS_0001_20000101").mkdir()
    result = prepare(data, tmp_path / "run")
    problem = only_problem(result, "empty_patient_folder")
    assert problem.patient_id == "TCGA_CS_0001_20000101" and problem.severity == "error"
    assert "TCGA_CS_0001_20000101" not in set(result.patients["patient_id"])
    assert result.counts["patients"] == 3


def test_badly_named_patient_folder_is_skipped(data, tmp_path):
    src = patients(data)[0]
    shutil.copytree(src, data / "patient_12")
    result = prepare(data, tmp_path / "run")
    problem = only_problem(result, "bad_patient_folder_name")
    assert problem.file == str(data / "patient_12") and "skipped" in problem.reason
    assert result.counts["patients"] == 3
    assert not result.manifest["image_path"].str.contains("patient_12").any()


def test_unparseable_slice_names(data, tmp_path):
    p = patients(data)[2]
    shutil.copy(img(p, 1), p / f"{p.name}_first.tif")
    shutil.copy(img(p, 1), p / "TCGA_CS_0000_19990101_1.tif")  # another patient's name
    result = prepare(data, tmp_path / "run")
    bad = sorted(Path(x.file).name for x in result.problems if x.kind == "bad_slice_name")
    assert bad == ["TCGA_CS_0000_19990101_1.tif", f"{p.name}_first.tif"]
    assert result.counts["slices"] == total_slices(data) - 2


def test_patient_whose_every_slice_is_bad_is_dropped(data, tmp_path):
    p = patients(data)[0]
    for mask in p.glob("*_mask.tif"):
        mask.unlink()
    result = prepare(data, tmp_path / "run")
    assert only_problem(result, "no_valid_slices").patient_id == p.name
    assert p.name not in set(result.patients["patient_id"]) and result.counts["patients"] == 2


def test_stray_files_are_ignored_silently(data, tmp_path):
    p = patients(data)[0]
    for name in (".DS_Store", "README.md", "Thumbs.db", "notes.txt", f"._{p.name}_1.tif"):
        (p / name).write_bytes(b"junk")
        (data / name).write_bytes(b"junk")
    (data / ".hidden_dir").mkdir()
    result = prepare(data, tmp_path / "run", strict=True)
    assert result.problems == [] and result.counts["slices"] == total_slices(data)


def test_missing_data_csv_warns_and_writes_empty_clinical_columns(data, tmp_path):
    (data / "data.csv").unlink()
    run = tmp_path / "run"
    result = prepare(data, run)
    problem = only_problem(result, "data_csv_missing")
    assert problem.severity == "warning" and problem.file == str(data / "data.csv")
    table = pd.read_csv(run / "patients.csv", dtype=str, keep_default_na=False)
    assert list(table.columns)[6:] == DATA_CSV_COLUMNS and len(table) == 3
    assert (table[DATA_CSV_COLUMNS] == "").all().all()
    assert result.counts["folders_without_data_csv_row"] == 3
    with pytest.raises(StrictPrepareError, match="1 warning"):
        prepare(data, tmp_path / "strict", strict=True)


def test_data_csv_rows_without_folder_are_info_not_failure(data, tmp_path):
    with open(data / "data.csv", "a") as fh:
        fh.write("TCGA_HT_9999," + ",".join(["1"] * 17) + "\n")
    result = prepare(data, tmp_path / "run", strict=True)  # must not raise
    problem = only_problem(result, "data_csv_row_without_folder")
    assert problem.severity == "info" and problem.patient_id == "TCGA_HT_9999"
    assert result.counts["data_csv_patients_without_folder"] == 1 and result.counts["data_csv_rows"] == 4


def test_folder_without_data_csv_row(data, tmp_path):
    p = patients(data)[1]
    table = pd.read_csv(data / "data.csv", dtype=str, keep_default_na=False)
    case_id = p.name.rsplit("_", 1)[0]
    table[table["Patient"] != case_id].to_csv(data / "data.csv", index=False)
    run = tmp_path / "run"
    result = prepare(data, run)
    problem = only_problem(result, "no_data_csv_row")
    assert problem.patient_id == p.name and problem.severity == "warning"
    row = pd.read_csv(run / "patients.csv", dtype=str, keep_default_na=False).set_index("patient_id").loc[p.name]
    assert row["Patient"] == "" and row["n_slices"] != ""
    assert result.counts["folders_without_data_csv_row"] == 1


def test_data_csv_values_are_written_back_exactly(data, tmp_path):
    table = pd.read_csv(data / "data.csv", dtype=str, keep_default_na=False)
    table.loc[0, "RNASeqCluster"] = "02"
    table.loc[0, "age_at_initial_pathologic"] = ""
    table.loc[1, "gender"] = "NA"
    table.to_csv(data / "data.csv", index=False)
    run = tmp_path / "run"
    prepare(data, run)
    text = (run / "patients.csv").read_text()
    written = pd.read_csv(run / "patients.csv", dtype=str, keep_default_na=False).set_index("Patient")
    assert written.loc[table.loc[0, "Patient"], "RNASeqCluster"] == "02"
    assert written.loc[table.loc[0, "Patient"], "age_at_initial_pathologic"] == ""
    assert written.loc[table.loc[1, "Patient"], "gender"] == "NA"
    assert ".0," not in text and ".0\n" not in text


def test_data_csv_without_patient_column(data, tmp_path):
    (data / "data.csv").write_text("Name,Age\nx,1\n")
    result = prepare(data, tmp_path / "run")
    assert "Patient" in only_problem(result, "data_csv_invalid").reason


def test_strict_failure_lists_everything_writes_report_and_no_manifest(data, tmp_path):
    run = tmp_path / "run"
    prepare(data, run)  # an earlier good run leaves a manifest
    assert (run / "manifest.csv").is_file()
    p0, p1 = patients(data)[:2]
    img(p0, 1, mask=True).unlink()
    img(p1, 2).write_bytes(b"broken")
    with pytest.raises(StrictPrepareError, match="2 error") as info:
        prepare(data, run, strict=True)
    assert {p.kind for p in info.value.result.problems} == {"image_without_mask", "unreadable_image"}
    report = json.loads((run / "prepare_report.json").read_text())
    assert report["status"] == "failed_strict" and len(report["problems"]) == 2
    assert not (run / "manifest.csv").exists() and not (run / "patients.csv").exists()


def test_tiff_suffix_is_read_by_prepare_and_infer_alike(data, tmp_path):
    """One file-name pattern and one slice reader: a patient stored as .tiff is prepared and inferred."""
    from mri_seg.io.images import read_slice
    from mri_seg.io.registry import discover, read_source

    p = patients(data)[0]
    n = len(list(p.glob("*_mask.tif")))
    for f in sorted(p.iterdir()):
        f.rename(f.with_suffix(".tiff"))
    result = prepare(data, tmp_path / "run", strict=True)
    rows = result.manifest[result.manifest["patient_id"] == p.name]
    assert len(rows) == n and rows["image_path"].str.endswith(".tiff").all()
    assert rows["mask_path"].str.endswith("_mask.tiff").all()
    (source,) = [s for s in discover(data).sources if s.path == p]
    assert source.format == "kaggle" and len(source.members) == n
    scan = read_source(source)
    for k, path in enumerate(rows.sort_values("slice_index")["image_path"]):
        assert np.array_equal(scan.array[k], read_slice(path))
