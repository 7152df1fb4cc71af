"""inference.provenance: what made a row (checkpoint files, mask-shaping settings, input files)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from mri_seg.config import InferConfig
from mri_seg.inference.provenance import NOT_MASK_SHAPING, input_stamp, provenance_of, settings_hash
from mri_seg.io.registry import discover


def test_settings_hash_ignores_only_keys_that_never_shape_a_mask():
    base = settings_hash(InferConfig())
    for key, value in {"tile_batch": 3, "save_probabilities": True, "overwrite": True, "report": False}.items():
        assert key in NOT_MASK_SHAPING and settings_hash(InferConfig(**{key: value})) == base, key
    assert settings_hash(InferConfig(tile_size=64)) != base
    cfg = InferConfig()
    cfg.postprocess.threshold = 0.3
    assert settings_hash(cfg) != base
    assert settings_hash(InferConfig(), "cuda") != base  # autocast on CUDA


def test_input_stamp_follows_the_files_and_the_reference_mask(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "a_mask.png"), np.zeros((4, 4), np.uint8))
    (source,) = discover(tmp_path / "a.png").sources
    stamp, with_truth = input_stamp(source, False), input_stamp(source, True)
    assert stamp != with_truth
    os.utime(tmp_path / "a_mask.png", ns=(1, 1))
    assert input_stamp(source, False) == stamp and input_stamp(source, True) != with_truth
    os.utime(tmp_path / "a.png", ns=(1, 1))
    assert input_stamp(source, False) != stamp


def test_provenance_of_a_predictor():
    class Predictor:
        checkpoint_sha256 = ["aa", "bb"]

    made_by = provenance_of(Predictor(), InferConfig())
    assert made_by == {"checkpoint_sha256": "aa;bb", "settings_hash": settings_hash(InferConfig())}
