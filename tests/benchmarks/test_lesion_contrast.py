"""benchmarks/lesion_contrast.py: how visible each tumour is on each sequence."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def contrast(load_benchmark):
    return load_benchmark("lesion_contrast")


def write_patient(folder: Path, tumour: dict[str, int], radii: list[int]) -> list[dict]:
    """Kaggle-layout slices (tissue 100 in every sequence, a disc of ``tumour`` values per
    sequence) and their manifest rows, as prepare writes them."""
    folder.mkdir(parents=True)
    rows = []
    for n, radius in enumerate(radii, start=1):
        image = np.zeros((64, 64, 3), np.uint8)
        cv2.circle(image, (32, 32), 28, (100, 100, 100), -1)  # the head
        mask = np.zeros((64, 64), np.uint8)
        if radius:
            cv2.circle(mask, (32, 32), radius, 255, -1)
            for c, name in enumerate(("post", "flair", "pre")):  # OpenCV's B, G, R = post, FLAIR, pre
                image[..., c][mask > 0] = tumour[name]
        image_path, mask_path = folder / f"{folder.name}_{n}.tif", folder / f"{folder.name}_{n}_mask.tif"
        cv2.imwrite(str(image_path), image)
        cv2.imwrite(str(mask_path), mask)
        pixels = int((mask > 0).sum())
        rows.append({"patient_id": folder.name, "case_id": folder.name, "institution": "XX", "slice_index": n,
                     "image_path": str(image_path), "mask_path": str(mask_path), "height": 64, "width": 64,
                     "channels": 3, "tumour_pixels": pixels, "has_tumour": pixels > 0})  # fmt: skip
    return rows


def write_run(run_dir: Path, rows: list[dict]) -> Path:
    from mri_seg.data.manifest import MANIFEST_COLUMNS, write_table

    run_dir.mkdir(parents=True, exist_ok=True)
    write_table(run_dir / "manifest.csv", pd.DataFrame(rows, columns=MANIFEST_COLUMNS))
    return run_dir


def test_ratios_per_sequence_over_tumour_slices_only(tmp_path, contrast):
    rows = write_patient(tmp_path / "P_BRIGHT", {"pre": 100, "flair": 200, "post": 50}, [0, 10, 12, 2])
    rows += write_patient(tmp_path / "P_ISO", {"pre": 60, "flair": 110, "post": 60}, [10])
    rows += write_patient(tmp_path / "P_NONE", {"pre": 0, "flair": 0, "post": 0}, [0, 0])
    table = contrast.contrast_table(write_run(tmp_path / "run", rows), ring=3, min_pixels=50)
    assert list(table["patient_id"]) == ["P_BRIGHT", "P_ISO"]  # no tumour: no row; the 2-pixel disc is left out
    bright = table.set_index("patient_id").loc["P_BRIGHT"]
    assert bright["flair"] == pytest.approx(2.0) and bright["post"] == pytest.approx(0.5)
    assert bright["pre"] == pytest.approx(1.0)
    iso = table.set_index("patient_id").loc["P_ISO"]
    assert iso["flair"] == pytest.approx(1.1) and iso["pre"] == pytest.approx(0.6)


def test_compare_sorts_by_the_flair_only_gap(tmp_path, contrast, capsys):
    rows = write_patient(tmp_path / "data" / "P1", {"pre": 100, "flair": 200, "post": 100}, [10])
    rows += write_patient(tmp_path / "data" / "P2", {"pre": 60, "flair": 110, "post": 60}, [10])
    run = write_run(tmp_path / "run", rows)
    for name, dice in (("all", {"P1": 0.9, "P2": 0.9}), ("flair", {"P1": 0.85, "P2": 0.3})):
        (tmp_path / name).mkdir()
        pd.DataFrame({"patient_id": list(dice), "dice": list(dice.values())}).to_csv(
            tmp_path / name / "patients.csv", index=False
        )
    out = tmp_path / "contrast.csv"
    rc = contrast.main(["--run-dir", str(run), "--ring", "3",
                        "--compare", str(tmp_path / "all"), str(tmp_path / "flair"), "--out", str(out)])  # fmt: skip
    assert rc == 0
    written = pd.read_csv(out)
    assert list(written["patient_id"]) == ["P2", "P1"]  # the FLAIR-iso tumour loses most without T1
    assert written["gap"].tolist() == pytest.approx([0.6, 0.05])
    assert "FLAIR-only gap: mean 0.325" in capsys.readouterr().out


def test_a_run_without_tumours_is_an_error(tmp_path, contrast, capsys):
    run = write_run(tmp_path / "run", write_patient(tmp_path / "P_NONE", {"pre": 0, "flair": 0, "post": 0}, [0]))
    assert contrast.main(["--run-dir", str(run)]) == 1
    assert "no patient with a tumour slice" in capsys.readouterr().err
