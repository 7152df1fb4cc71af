"""infer.backend onnxruntime: the same tiling, TTA and post-processing around the ONNX graphs, and
masks that agree with torch's (per-scan Dice >= 0.999)."""

from __future__ import annotations

import numpy as np
import pytest
from bundle_helpers import make_run, recipe_like_config, require_onnxruntime
from untrained import write_untrained_checkpoint

from mri_seg.config import InferConfig, PostprocessConfig
from mri_seg.export.bundle import export_bundle
from mri_seg.inference.predictor import Predictor
from mri_seg.metrics import dice_score
from mri_seg.training.checkpoint import resolve_checkpoints


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    require_onnxruntime()
    run = make_run(tmp_path_factory.mktemp("run") / "RUN")
    return export_bundle(run / "checkpoints", tmp_path_factory.mktemp("b") / "model")


def _predictor(paths, backend: str, **infer) -> Predictor:
    cfg = InferConfig(backend=backend, postprocess=PostprocessConfig(tta_flip=True), **infer)
    return Predictor.from_checkpoints(paths, device="cpu", infer_cfg=cfg)


def test_onnxruntime_agrees_with_torch_on_volumes_and_tiled_slices(bundle):
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 30, (6, 64, 64, 3)).astype(np.float32)
    large = rng.integers(0, 255, (1, 300, 420, 3)).astype(np.uint8)  # tiled: 128 px tiles at scale 0.5
    members = resolve_checkpoints(bundle)
    largest = 0.0
    for scan in (volume, large):
        p_torch = _predictor(members, "torch").predict_volume(scan)
        p_onnx = _predictor(members, "onnxruntime").predict_volume(scan)
        largest = max(largest, float(np.abs(p_torch - p_onnx).max()))
        for threshold in (0.5, 0.55):
            a, b = p_torch > threshold, p_onnx > threshold
            assert a.any() and not a.all()
            assert dice_score(a, b) >= 0.999
    print(f"largest probability difference torch vs onnxruntime: {largest:.2e}")
    assert largest < 1e-4


def test_onnxruntime_backend_uses_the_bundles_graphs_and_exports_plain_checkpoints(bundle, tmp_path):
    from mri_seg.inference.backends import OnnxForward

    predictor = _predictor(resolve_checkpoints(bundle), "onnxruntime")
    assert predictor.device.type == "cpu" and all(isinstance(f, OnnxForward) for f in predictor.forwards)
    ckpt = write_untrained_checkpoint(tmp_path / "best.pt", recipe_like_config())  # no graph: exported in memory
    image = np.random.default_rng(1).normal(size=(64, 64, 3)).astype(np.float32)
    a = _predictor([ckpt], "torch").predict_proba(image)
    b = _predictor([ckpt], "onnxruntime").predict_proba(image)
    assert np.abs(a - b).max() < 1e-4


def test_missing_onnxruntime_is_one_line(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    ckpt = write_untrained_checkpoint(tmp_path / "best.pt", recipe_like_config())
    with pytest.raises(ValueError, match=r"needs the onnxruntime package: pip install 'mri_seg\[onnx\]'"):
        _predictor([ckpt], "onnxruntime")
