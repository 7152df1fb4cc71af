"""``postprocess.component_rule: bright``: the kept component is the one with the most voxels bright on
FLAIR, so a confident false blob over dark fluid (the ventricles) does not outgrow a FLAIR-bright tumour;
evaluation and inference hand the scan's FLAIR to the rule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mri_seg.config import ConfigError, InferConfig, load_config
from mri_seg.evaluation.scoring import EvalOptions, PatientCase, evaluate_case, sweep_column
from mri_seg.inference.segment import segment_scan
from mri_seg.io.registry import discover, output_paths
from mri_seg.postprocess import bright_voxels, postprocess


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(prob, flair, dark blob, bright blob), ``3 x 20 x 20``: a 75-voxel confident blob over dark FLAIR
    and a 27-voxel one, as confident, over bright FLAIR; the head (FLAIR 50) inside a zero border."""
    flair = np.zeros((3, 20, 20), np.uint8)
    flair[:, 1:19, 1:19] = 50
    dark = np.zeros(flair.shape, bool)
    dark[:, 2:7, 2:7] = True
    bright = np.zeros(flair.shape, bool)
    bright[:, 12:15, 12:15] = True
    flair[dark], flair[bright] = 10, 200
    prob = np.where(dark | bright, 0.9, 0.05).astype(np.float32)
    return prob, flair, dark, bright


def test_bright_voxels_are_a_quantile_of_the_head_whatever_the_scaling():
    flair = np.zeros((2, 10, 10), np.float32)
    flair[:, 1:9, 1:9] = np.arange(1, 129, dtype=np.float32).reshape(2, 8, 8)  # the head: 1..128
    bright = bright_voxels(flair, 0.75)
    assert bright.sum() == 32 and flair[bright].min() == 97 and not bright[flair == 0].any()
    zscored = (flair - 64.0) / 10.0
    zscored[flair == 0] = -9.0  # a constant background that is not 0
    assert np.array_equal(bright_voxels(zscored, 0.75), bright)
    assert not bright_voxels(np.full((2, 4, 4), 7.0), 0.75).any()  # no head: nothing is bright


def test_bright_rule_keeps_the_flair_bright_component_over_a_larger_dark_one():
    prob, flair, dark, bright = _scene()
    assert np.array_equal(postprocess(prob, 0.5, largest_only=True), dark)  # by size the dark blob wins
    assert np.array_equal(postprocess(prob, 0.5, largest_only=True, component_rule="mass"), dark)
    kept = postprocess(prob, 0.5, largest_only=True, component_rule="bright", flair=flair)
    assert np.array_equal(kept, bright)
    both = postprocess(prob, 0.5, largest_only=True, component_rule="bright", keep_ratio=0.01, flair=flair)
    assert np.array_equal(both, bright)  # the dark blob scores 0: no keep ratio keeps it
    flat = postprocess(prob[1], 0.5, largest_only=True, component_rule="bright", flair=flair[1])  # one slice
    assert np.array_equal(flat, bright[1])


def test_bright_rule_without_or_with_a_mismatched_flair_is_an_error():
    prob, flair, _, _ = _scene()
    with pytest.raises(ValueError, match="'bright' needs the scan's FLAIR"):
        postprocess(prob, 0.5, largest_only=True, component_rule="bright")
    with pytest.raises(ValueError, match=r"the FLAIR \(3, 20, 19\) does not match the probabilities \(3, 20, 20\)"):
        postprocess(prob, 0.5, largest_only=True, component_rule="bright", flair=flair[..., 1:])
    with pytest.raises(ValueError, match="bright_quantile must be in"):
        postprocess(prob, 0.5, largest_only=True, component_rule="bright", flair=flair, bright_quantile=1.0)
    with pytest.raises(ValueError, match="bright_quantile must be in"):
        EvalOptions(bright_quantile=0.0)
    with pytest.raises(ConfigError, match="postprocess.bright_quantile"):
        load_config(None, ["infer.postprocess.bright_quantile=1.0"])
    assert load_config(None, ["eval.postprocess.component_rule=bright"]).eval.postprocess.component_rule == "bright"


def test_evaluation_hands_the_patients_flair_to_the_rule():
    prob, flair, _, bright = _scene()
    case = PatientCase("p", [0, 1, 2], prob, bright, flair=flair)
    by_size, _, _ = evaluate_case(case, EvalOptions(threshold=0.5, largest_only=True, sweep_thresholds=(0.5,)))
    by_flair, _, _ = evaluate_case(
        case, EvalOptions(threshold=0.5, largest_only=True, component_rule="bright", sweep_thresholds=(0.5,))
    )
    assert by_size["dice"] == 0.0 and by_flair["dice"] == 1.0
    assert by_flair[sweep_column(0.5)] == 1.0  # the threshold sweep uses it too


class FirstChannelPredictor:
    """Probability = the first channel / 255 (no passes)."""

    checkpoint_paths = [Path("a.pt")]
    checkpoint_sha256 = ["aa"]

    def predict_volume(self, volume: np.ndarray) -> np.ndarray:
        return (volume[..., 0] / 255.0).astype(np.float32)


def test_infer_keeps_the_flair_bright_component(tmp_path):
    image = np.zeros((24, 24, 3), np.uint8)
    image[2:22, 2:22] = (10, 60, 60)  # the head; FLAIR is channel 1
    image[3:9, 3:9] = (230, 15, 60)  # 36 confident pixels, dark on FLAIR
    image[14:18, 14:18] = (230, 220, 60)  # 16 as confident, bright on FLAIR
    folder = tmp_path / "scans"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), image)  # read back in this channel order (as the Kaggle TIFFs)
    (source,) = discover(folder).sources
    cfg = InferConfig()
    cfg.postprocess.largest_only = True
    row = segment_scan(FirstChannelPredictor(), source, output_paths(source, tmp_path / "size"), cfg)
    assert row["status"] == "ok" and row["tumour_pixels"] == 36
    cfg.postprocess.component_rule = "bright"
    row = segment_scan(FirstChannelPredictor(), source, output_paths(source, tmp_path / "bright"), cfg)
    assert row["status"] == "ok" and row["tumour_pixels"] == 16
