"""inference.plan: what a folder inference reads and writes; every refusal happens before anything is written."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mri_seg.inference.plan import InferError, plan_folder


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 16, 3), 50, np.uint8))
    return path


def test_plan_lists_scans_and_their_outputs(tmp_path):
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "sub" / "b.png")
    plan = plan_folder(tmp_path / "in", tmp_path / "out")
    assert [str(s.rel) for s, _ in plan.scans] == ["a.png", "sub/b.png"]
    _, paths = plan.scans[1]
    assert paths.masks == [tmp_path / "out" / "sub" / "b_mask.png"]
    assert paths.overlay == tmp_path / "out" / "sub" / "b_overlay.png"
    assert plan.input_root == tmp_path / "in"
    assert not (tmp_path / "out").exists()  # planning writes nothing


def test_input_file_root_is_its_folder(tmp_path):
    scan = _png(tmp_path / "in" / "a.png")
    assert plan_folder(scan, tmp_path / "out").input_root == tmp_path / "in"


def test_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="input not found"):
        plan_folder(tmp_path / "absent", tmp_path / "out")


def test_output_is_the_input_folder(tmp_path):
    _png(tmp_path / "in" / "a.png")
    with pytest.raises(InferError, match="is the input folder"):
        plan_folder(tmp_path / "in", tmp_path / "in")


def test_output_is_a_file(tmp_path):
    _png(tmp_path / "in" / "a.png")
    (tmp_path / "out").write_text("x")
    with pytest.raises(InferError, match="exists and is not a folder"):
        plan_folder(tmp_path / "in", tmp_path / "out")


def test_no_scans(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    with pytest.raises(InferError, match="no scans found"):
        plan_folder(tmp_path / "in", tmp_path / "out")


def test_output_inside_the_input_is_not_searched(tmp_path):
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "out" / "a_overlay.png")  # an earlier run's output
    plan = plan_folder(tmp_path / "in", tmp_path / "in" / "out")
    assert [str(s.rel) for s, _ in plan.scans] == ["a.png"]


def test_output_that_would_overwrite_an_input(tmp_path):
    scan = _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "a_mask.png")  # the reference mask is where a's mask would go
    with pytest.raises(InferError, match="would overwrite the input file"):
        plan_folder(scan, tmp_path / "in")


def test_input_named_like_the_run_table(tmp_path):
    scan = _png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "predictions.csv").write_text("path\n")
    with pytest.raises(InferError, match="named like the batch outputs"):
        plan_folder(scan, tmp_path / "in")


def test_two_scans_with_the_same_outputs(tmp_path, monkeypatch):
    # discovery gives scans distinct output names; the plan still checks (a file type whose naming could clash)
    from mri_seg.inference import plan as plan_module
    from mri_seg.io.registry import OutputPaths

    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "b.png")
    same = OutputPaths([tmp_path / "out" / "m.png"], [tmp_path / "out" / "p.png"], tmp_path / "out" / "o.png")
    monkeypatch.setattr(plan_module, "output_paths", lambda source, out_dir: same)
    with pytest.raises(InferError, match="output .*m.png of b.png collides with the output of a.png"):
        plan_folder(tmp_path / "in", tmp_path / "out")
