"""The evaluate stage: its errors, and a run on synthetic data producing every output."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from mri_seg.pipelines import evaluate
from mri_seg.pipelines._cli import StageError
from mri_seg.reports.outputs import OUTPUT_FILES


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match="checkpoint not found"):
        evaluate.main(["--run-dir", str(tmp_path)])


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.rows, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "tr" and a.get("id", "").startswith("patient-"):
            self.rows.append(a["id"][8:])
        if tag == "a":
            self.links.append(a["href"])


def _checkpoint(run_dir: Path) -> Path:
    from untrained import tiny_config, write_untrained_checkpoint

    cfg = tiny_config(scale=0.5)
    cfg.eval.bootstrap_samples = 100
    cfg.eval.montage_slices = 4
    return write_untrained_checkpoint(run_dir / "checkpoints" / "best.pt", cfg)


def test_evaluate_stage_on_synthetic_run(synthetic_run, tmp_path, monkeypatch):
    run_dir = synthetic_run
    _checkpoint(run_dir)
    # a mostly-empty prediction from an untrained net is fine: this test is about the files
    assert evaluate.main(["--run-dir", str(run_dir), "--split", "test", "--threshold", "0.5", "--no-progress"]) == 0
    out = run_dir / "eval" / "test"
    assert sorted(p.name for p in out.iterdir()) == sorted((*OUTPUT_FILES, "patients"))  # + patient pages
    assert (run_dir / "config_evaluate.yaml").is_file()

    splits = pd.read_csv(run_dir / "splits.csv")
    test_ids = sorted(splits.loc[splits["split"] == "test", "patient_id"])
    patients = pd.read_csv(out / "patients.csv")
    assert sorted(patients["patient_id"]) == test_ids
    assert {"RNASeqCluster", "COCCluster", "age_at_initial_pathologic"} <= set(patients.columns)  # clinical join
    assert {"true_solidity", "pred_bbox_rows", "hd95", "fp_slices"} <= set(patients.columns)
    manifest = pd.read_csv(run_dir / "manifest.csv")
    slices = pd.read_csv(out / "slices.csv")
    assert len(slices) == manifest["patient_id"].isin(test_ids).sum()
    # truth read from the masks matches the manifest's tumour counts
    merged = slices.merge(manifest, on=["patient_id", "slice_index"])
    assert (merged["true_pixels"] == merged["tumour_pixels"]).all()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_patients"] == len(test_ids) and summary["n_slices"] == len(slices)
    assert summary["checkpoint"]["epoch"] == 1 and summary["checkpoint"]["path"].endswith("best.pt")
    assert summary["options"] == {"threshold": 0.5, "min_component_pixels": 0, "tta_flip": False,
                                  "min_component_voxels": 0, "largest_only": False,
                                  "component_rule": "size", "keep_ratio": 1.0, "sweep_keep_ratios": [],
                                  "grow_threshold": 0.0, "sweep_grow_thresholds": [], "fill_holes": False,
                                  "flair_view_threshold": 0.0, "flair_view_min_ratio": 1.5,
                                  "sweep_thresholds": [0.3, 0.4, 0.5, 0.6, 0.7], "flair_only_threshold": 0.0,
                                  "flair_only_keep_ratio": 0.0, "bright_quantile": 0.75, "tta_rotations": [],
                                  "close_radius": 0.0}
    assert summary["seconds"] > 0 and summary["bootstrap"]["samples"] == 100

    parser = _Parser()
    parser.feed((out / "report.html").read_text())
    assert len(parser.images) >= 3 + 1 and all(s.startswith("data:image/png;base64,") for s in parser.images)
    assert sorted(parser.rows) == test_ids
    assert sorted(parser.links) == sorted(f"patients/{pid}.html" for pid in test_ids)
    for pid in test_ids:  # every page, and every picture it shows, exists
        page = out / "patients" / f"{pid}.html"
        refs = _Parser()
        refs.feed(page.read_text())
        n_slices = int((manifest["patient_id"] == pid).sum())
        assert len(list((out / "patients" / pid).glob("slice_*.jpg"))) == n_slices
        assert all((page.parent / src).is_file() for src in refs.images)
        assert "../report.html#patient-" + pid in refs.links
    assert {"uncertainty", "review_flag"} <= set(patients.columns)
    assert patients["uncertainty"].between(0, 1).all()
    assert summary["review"]["n"] == len(test_ids) and summary["review"]["threshold"] == 0.3

    # explicit flags change only their option; TTA reaches the predictor
    seen = {}
    from mri_seg.inference import predictor as predictor_module

    original = predictor_module.Predictor.from_checkpoints

    def spy(paths, device="auto", infer_cfg=None):
        seen["tta"] = infer_cfg.postprocess.tta_flip
        return original(paths, device=device, infer_cfg=infer_cfg)

    monkeypatch.setattr(predictor_module.Predictor, "from_checkpoints", staticmethod(spy))
    assert evaluate.main(["--run-dir", str(run_dir), "--tta", "--min-component", "5", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert seen["tta"] is True
    assert summary["options"] == {"threshold": 0.5, "min_component_pixels": 5, "tta_flip": True,
                                  "min_component_voxels": 0, "largest_only": False,
                                  "component_rule": "size", "keep_ratio": 1.0, "sweep_keep_ratios": [],
                                  "grow_threshold": 0.0, "sweep_grow_thresholds": [], "fill_holes": False,
                                  "flair_view_threshold": 0.0, "flair_view_min_ratio": 1.5,
                                  "sweep_thresholds": [0.3, 0.4, 0.5, 0.6, 0.7], "flair_only_threshold": 0.0,
                                  "flair_only_keep_ratio": 0.0, "bright_quantile": 0.75, "tta_rotations": [],
                                  "close_radius": 0.0}
