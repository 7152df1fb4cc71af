"""inference.folder: the runner (plan -> scans -> journal -> merged table), with a stand-in predictor."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from mri_seg.config import InferConfig
from mri_seg.inference.folder import Report, run_folder
from mri_seg.inference.journal import PREDICTIONS, REUSED, Journal, part_path, status_counts
from mri_seg.inference.plan import plan_folder


class ConstantPredictor:
    checkpoint_paths = ["m.pt"]
    checkpoint_sha256 = ["abc"]

    def __init__(self):
        self.calls = 0

    def predict_volume(self, volume):
        self.calls += 1
        return np.full(volume.shape[:3], 0.9, np.float32)


def _scans(tmp_path, names=("a.png", "b.png", "c.png")):
    (tmp_path / "in").mkdir()
    for name in names:
        cv2.imwrite(str(tmp_path / "in" / name), np.full((6, 7, 3), 40, np.uint8))
    return tmp_path / "in"


def test_run_then_rerun_keeps_unchanged_scans(tmp_path):
    folder = _scans(tmp_path)
    predictor = ConstantPredictor()
    rows = run_folder(predictor, plan_folder(folder, tmp_path / "out"), InferConfig(report=False), progress=False)
    assert status_counts(rows) == {"ok": 3, "error": 0, "reused": 0} and predictor.calls == 3
    table = pd.read_csv(tmp_path / "out" / PREDICTIONS, dtype=str, keep_default_na=False)
    assert list(table["path"]) == ["a.png", "b.png", "c.png"] and set(table["checkpoint_sha256"]) == {"abc"}
    assert not list((tmp_path / "out").glob(".predictions.part-*"))  # journals merged and removed
    rows = run_folder(predictor, plan_folder(folder, tmp_path / "out"), InferConfig(report=False), progress=False)
    assert status_counts(rows) == {"ok": 3, "error": 0, "reused": 3} and predictor.calls == 3
    cfg = InferConfig(report=False)
    cfg.postprocess.threshold = 0.95  # another mask-shaping setting: everything is redone
    rows = run_folder(predictor, plan_folder(folder, tmp_path / "out"), cfg, progress=False)
    assert status_counts(rows)["reused"] == 0 and predictor.calls == 6


def test_resume_from_the_journal_of_a_killed_run(tmp_path):
    folder = _scans(tmp_path)
    predictor = ConstantPredictor()
    run_folder(predictor, plan_folder(folder, tmp_path / "first"), InferConfig(report=False), progress=False)
    first = pd.read_csv(tmp_path / "first" / PREDICTIONS, dtype=str, keep_default_na=False)
    out = tmp_path / "out"
    out.mkdir()
    plan = plan_folder(folder, out)
    # a killed run over `out` had finished a.png: its outputs and its journal line exist
    for name in ("a_mask.png", "a_overlay.png"):
        (out / name).write_bytes((tmp_path / "first" / name).read_bytes())
    journal = Journal(part_path(out, 0))
    journal.append(first.iloc[0].to_dict())
    journal.close()
    predictor = ConstantPredictor()
    rows = run_folder(predictor, plan, InferConfig(report=False), progress=False)
    assert predictor.calls == 2 and [r["path"] for r in rows if r.get(REUSED)] == ["a.png"]


def test_report_pages_and_index_come_from_the_callers_report(tmp_path):
    folder = _scans(tmp_path, ("a.png",))
    written = []
    report = Report(
        page_path=lambda out, rel: out / "pages" / f"{rel}.html",
        write_page=lambda out, row, slices, mask, names: written.append(("page", row["path"])),
        write_index=lambda out, rows: written.append(("index", len(rows))),
    )
    run_folder(ConstantPredictor(), plan_folder(folder, tmp_path / "out"), InferConfig(), progress=False, report=report)
    assert written == [("page", "a.png"), ("index", 1)]
    written.clear()  # the page file is missing (the stand-in writes none): the scan is redone
    run_folder(ConstantPredictor(), plan_folder(folder, tmp_path / "out"), InferConfig(), progress=False, report=report)
    assert written == [("page", "a.png"), ("index", 1)]
    written.clear()
    run_folder(ConstantPredictor(), plan_folder(folder, tmp_path / "out"), InferConfig(report=False), progress=False,
               report=report)  # fmt: skip
    assert written == []
