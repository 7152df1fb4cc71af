"""Ensembles: averaging members before thresholding, refusing members that disagree, and what
``--checkpoint`` (files, RUN/checkpoints folders) resolves to, in evaluate and infer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import InferConfig
from mri_seg.inference.predictor import EnsembleError, Predictor
from mri_seg.io.sequences import TRAINING_SEQUENCES
from mri_seg.pipelines import evaluate
from mri_seg.pipelines._cli import run_main
from mri_seg.pipelines.infer import main as infer_main
from mri_seg.training.checkpoint import CheckpointError, file_sha256, resolve_checkpoints, save_checkpoint


def _volume(depth=3, h=40, w=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, (depth, h, w, 3), dtype=np.uint8)


def _ckpt(path: Path, seed: int = 0, ship: str = "best", **changes) -> Path:
    cfg = tiny_config(scale=0.5)
    cfg.train.ship_checkpoint = ship
    for key, value in changes.items():
        section, leaf = key.split("__")
        setattr(getattr(cfg, section), leaf, value)
    return write_untrained_checkpoint(path, cfg, seed=seed)


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("members")
    a = _ckpt(folder / "a.pt", seed=0)
    a_copy = folder / "a_copy.pt"
    shutil.copy(a, a_copy)
    return a, a_copy, _ckpt(folder / "b.pt", seed=1)


@pytest.mark.parametrize("tta", [False, True])
def test_two_identical_members_give_the_single_checkpoint_output(members, tta):
    a, a_copy, _ = members
    infer = InferConfig()
    infer.postprocess.tta_flip = tta
    volume = _volume()
    single = Predictor.from_checkpoint(a, device="cpu", infer_cfg=infer)
    pair = Predictor.from_checkpoints([a, a_copy], device="cpu", infer_cfg=infer)
    mean1, passes1 = single.predict_volume(volume, return_passes=True)
    mean2, passes2 = pair.predict_volume(volume, return_passes=True)
    flips = 2 if tta else 1
    assert passes1.shape == (flips, 3, 40, 48) and passes2.shape == (2 * flips, 3, 40, 48)
    assert pair.n_passes == 2 * flips
    np.testing.assert_allclose(mean2, mean1, atol=1e-6)
    np.testing.assert_allclose(passes2[flips:], passes1, atol=1e-6)
    assert mean1.dtype == np.float32 and mean1.shape == (3, 40, 48)
    assert pair.checkpoint_sha256 == [file_sha256(a)] * 2
    assert [m["path"] for m in pair.members] == [str(a.resolve()), str(a_copy.resolve())]


def test_members_are_averaged_before_thresholding(members):
    a, _, b = members
    volume = _volume(seed=3)
    pa = Predictor.from_checkpoint(a, device="cpu").predict_volume(volume)
    pb = Predictor.from_checkpoint(b, device="cpu").predict_volume(volume)
    assert not np.allclose(pa, pb)  # different weights
    ensemble = Predictor.from_checkpoints([a, b], device="cpu")
    np.testing.assert_allclose(ensemble.predict_volume(volume), (pa + pb) / 2, atol=1e-6)
    np.testing.assert_allclose(ensemble.predict_proba(volume[1]), (pa[1] + pb[1]) / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "key", "text"),
    [
        ({"data__scale": 0.25}, "data.scale", "0.25 != 0.5"),
        ({"data__image_size": 128}, "data.image_size", "128 != 256"),
        ({"model__in_channels": 1}, "model.in_channels", "1 != 3"),
    ],
)
def test_members_that_see_other_inputs_are_refused(members, tmp_path, change, key, text):
    a = members[0]
    other = _ckpt(tmp_path / "other.pt", **change)
    with pytest.raises(EnsembleError) as info:
        Predictor.from_checkpoints([a, other], device="cpu")
    assert str(info.value) == f"ensemble member {other} differs from {a} in {key}: {text}"


def test_members_with_other_normalisation_or_sequences_are_refused(members, tmp_path):
    a = members[0]
    state = torch.load(a, map_location="cpu", weights_only=True)
    state["normalisation"] = {"method": "percentile"}
    save_checkpoint(tmp_path / "norm.pt", state)
    with pytest.raises(EnsembleError, match=r"differs from .* in normalisation: 'percentile' != 'zscore_nonzero'"):
        Predictor.from_checkpoints([a, tmp_path / "norm.pt"], device="cpu")
    state = torch.load(a, map_location="cpu", weights_only=True)
    state["sequences"] = ["flair", "pre", "post"]
    save_checkpoint(tmp_path / "seq.pt", state)
    with pytest.raises(EnsembleError) as info:
        Predictor.from_checkpoints([a, tmp_path / "seq.pt"], device="cpu")
    assert str(info.value) == (f"ensemble member {tmp_path / 'seq.pt'} differs from {a} in sequences: "
                               f"['flair', 'pre', 'post'] != {list(TRAINING_SEQUENCES)!r}")  # the default record


def _checkpoints_folder(root: Path, folds: int = 0, ship: str = "best") -> Path:
    """RUN/checkpoints with best.pt/last.pt (different weights), at the top or in fold<K>/ folders."""
    folders = [root] if folds == 0 else [root / f"fold{k}" for k in range(folds)]
    for k, folder in enumerate(folders):
        _ckpt(folder / "best.pt", seed=10 * k, ship=ship)
        _ckpt(folder / "last.pt", seed=10 * k + 1, ship=ship)
    return root


def test_resolve_checkpoints(tmp_path, members):
    a, _, b = members
    assert resolve_checkpoints(a) == [a] and resolve_checkpoints([a, b]) == [a, b]
    single = _checkpoints_folder(tmp_path / "single" / "checkpoints")
    assert resolve_checkpoints(single) == [single / "best.pt"]  # the stored train.ship_checkpoint
    assert resolve_checkpoints(single, "last") == [single / "last.pt"]
    shipped_last = _checkpoints_folder(tmp_path / "last" / "checkpoints", ship="last")
    assert resolve_checkpoints(shipped_last) == [shipped_last / "last.pt"]
    folded = _checkpoints_folder(tmp_path / "folded" / "checkpoints", folds=3)
    (folded / "best.pt").write_bytes((folded / "fold0" / "best.pt").read_bytes())  # fold folders win
    assert resolve_checkpoints(folded) == [folded / f"fold{k}" / "best.pt" for k in range(3)]
    assert resolve_checkpoints([folded, a], "last") == [*(folded / f"fold{k}" / "last.pt" for k in range(3)), a]
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope"):
        resolve_checkpoints(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*empty"):
        resolve_checkpoints(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="must be one of best, last, got 'final'"):
        resolve_checkpoints(single, "final")


def _run_with_checkpoints(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("manifest.csv", "splits.csv", "patients.csv"):
        shutil.copy(src / name, dst / name)
    return dst


@pytest.mark.slow  # three evaluate runs (metrics, plots, report): tens of seconds on 2 busy cores
def test_evaluate_with_an_ensemble_and_a_checkpoints_folder(synthetic_run, tmp_path, members):
    a, a_copy, b = members
    run = _run_with_checkpoints(synthetic_run, tmp_path / "run")
    common = ["--run-dir", str(run), "--split", "test", "--no-progress", "--set", "eval.bootstrap_samples=20",
              "--set", "eval.patient_pages=false"]  # fmt: skip
    assert evaluate.main([*common, "--checkpoint", str(a)]) == 0
    single = pd.read_csv(run / "eval" / "test" / "patients.csv")
    assert evaluate.main([*common, "--checkpoint", str(a), "--checkpoint", str(a_copy)]) == 0
    pair = pd.read_csv(run / "eval" / "test" / "patients.csv")
    np.testing.assert_allclose(pair["dice"], single["dice"])
    np.testing.assert_allclose(pair["pred_volume"], single["pred_volume"])
    summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
    assert [(c["path"], c["sha256"]) for c in summary["checkpoints"]] == [
        (str(a.resolve()), file_sha256(a)), (str(a_copy.resolve()), file_sha256(a_copy))]  # fmt: skip

    # the default, RUN/checkpoints, is the deliverable: here each fold's best.pt
    _checkpoints_folder(run / "checkpoints", folds=2)
    assert evaluate.main(common) == 0
    summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
    expected = [run / "checkpoints" / f"fold{k}" / "best.pt" for k in range(2)]
    assert [c["path"] for c in summary["checkpoints"]] == [str(p.resolve()) for p in expected]
    assert [c["sha256"] for c in summary["checkpoints"]] == [file_sha256(p) for p in expected]


def test_infer_records_members_and_refuses_mismatched_ones(tmp_path, members, capsys):
    a, _, b = members
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "scan.png"), _volume(1, 64, 64)[0])
    out = tmp_path / "out"
    argv = ["--checkpoint", str(a), "--checkpoint", str(b), "--input", str(inp), "--output", str(out),
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert infer_main(argv) == 0
    row = pd.read_csv(out / "predictions.csv").iloc[0]
    assert row["status"] == "ok"
    assert row["checkpoints"] == f"{a};{b}"
    assert row["checkpoint_sha256"] == f"{file_sha256(a)};{file_sha256(b)}"

    other = _ckpt(tmp_path / "other.pt", data__scale=0.25)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_main(infer_main, ["--checkpoint", str(a), "--checkpoint", str(other), "--input", str(inp),
                              "--output", str(tmp_path / "out2"), "--device", "cpu"])  # fmt: skip
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot use checkpoint {a} {other}: ensemble member {other} differs from {a} in "
                   "data.scale: 0.25 != 0.5"]  # fmt: skip
    assert not (tmp_path / "out2" / "predictions.csv").exists()
