"""Inference report rendering: safe unique page names, volume units, 1,000-row index stays light."""

from __future__ import annotations

import re

import numpy as np

from mri_seg.reports.inference_report import (
    ASSETS_DIR,
    render_index,
    scan_key,
    volume_text,
    write_inference_report,
    write_scan_page,
)


def test_scan_key_is_safe_and_unique():
    keys = {scan_key(p) for p in ("a/b.nii.gz", "a__b.nii.gz", "a b.nii.gz", "../x.png", "TCGA_1/")}
    assert len(keys) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", k) for k in keys)
    assert scan_key("a/b.nii.gz").startswith("a__b.nii.gz-")
    assert scan_key("x" * 500).__len__() < 100


def test_volume_text_prefers_mm3():
    assert volume_text({"tumour_volume_mm3": "1234.5", "tumour_pixels": "99"}) == ("1,234 mm³", 1234.5)
    assert volume_text({"tumour_volume_mm3": "", "tumour_pixels": "12000"}) == ("12,000 px", 12000.0)
    assert volume_text({"status": "error"}) == ("", None)


def test_scan_page_and_index(tmp_path):
    slices = np.random.default_rng(0).integers(0, 4000, (4, 600, 300, 1)).astype(np.uint16)  # tall, 16-bit
    mask = np.zeros((4, 600, 300), bool)
    mask[2, 100:200, 50:150] = True
    row = {"path": "scans/vol.nii.gz", "status": "ok", "tumour_pixels": 10000, "tumour_volume_mm3": 12500.0,
           "slices_with_tumour": 1, "uncertainty": 0.42, "review_flag": True, "message": "1 channel replicated"}
    page = write_scan_page(tmp_path, row, slices, mask)
    folder = tmp_path / ASSETS_DIR / scan_key("scans/vol.nii.gz")
    assert page == tmp_path / ASSETS_DIR / f"{folder.name}.html"
    assert len(list(folder.glob("slice_*.jpg"))) == 4 and len(list(folder.glob("slice_*_overlay.png"))) == 4
    import cv2

    picture = cv2.imread(str(folder / "slice_0002.jpg"), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (512, 256)  # longer side capped at 512, aspect kept
    assert cv2.imread(str(folder / "thumb.jpg")).shape[:2] == (128, 64)
    text = page.read_text()
    assert 'data-start="2"' in text  # opens on the slice with the most tumour
    assert "Flagged for review" in text and "12,500 mm³" in text and "1 channel replicated" in text
    rows = [row, {"path": "bad<x>.png", "status": "error", "message": "bad<x>.png: not a readable image"}]
    index = write_inference_report(tmp_path, rows).read_text()
    assert "bad&lt;x&gt;.png: not a readable image" in index  # messages shown, escaped
    assert index.count('loading="lazy"') == 1  # a thumbnail for the ok scan only
    assert "1 flagged for review" in re.sub("<[^>]+>", "", index)


def test_index_of_1000_scans_stays_small(tmp_path):
    rows = [{"path": f"batch/scan_{i:04d}.nii.gz", "status": "ok", "tumour_pixels": i * 10,
             "tumour_volume_mm3": i * 12.5, "slices_with_tumour": i % 30, "uncertainty": (i % 50) / 100,
             "review_flag": i % 50 > 30, "message": ""} for i in range(1000)]
    for row in rows[:3]:  # pages exist for a few; the rest link nowhere (no page written)
        write_scan_page(tmp_path, row, np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 64, 64), bool))
    text = render_index(rows, tmp_path)
    assert text.count("<tr>") == 1001
    assert len(text.encode()) < 700_000  # ~0.7 KB per row: no pictures inlined in the index
    assert "data:image" not in text and text.count('loading="lazy"') == 3
