"""Recipe variants are config changes: each trains through the real engine (tiny, seconds)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from runs import fresh_run

from mri_seg.config import load_config
from mri_seg.inference.predictor import Predictor
from mri_seg.training.engine import TrainingError, train


def tiny(run_dir: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long run: 32x32 slices, a 3-level model with 4..16 channels, 1 epoch.

    The output prior is off so that a one-epoch model still predicts some tumour to compare.
    """
    height = int(pd.read_csv(run_dir / "manifest.csv")["height"].max())
    return [
        f"data.scale={32 / height}", "model.channels=[4,8,16]", "model.strides=[2,2]", "model.num_res_units=0",
        "data.num_workers=0", "train.batch_size=8", "train.epochs=1", "train.warmup_epochs=0",
        "augment.elastic.p=0.0", "model.output_prior=0", *extra,
    ]  # fmt: skip


VARIANTS = {  # every architecture and every loss variant goes once through the real engine
    "attention_unet-tversky_bce": ["model.name=attention_unet", "train.loss=tversky_bce", "train.tversky_beta=0.7",
                                   "train.tversky_alpha=0.3", "train.dice_batch=false"],
    "segresnet-dice_focal": ["model.name=segresnet", "train.loss=dice_focal", "train.focal_gamma=2.0",
                             "train.dice_weight=0.5"],
    "dynunet-deep_supervision-zscore_volume": ["model.name=dynunet", "model.deep_supervision=1",
                                               "model.num_res_units=1", "data.normalisation=zscore_volume"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_architecture_and_loss_variants_train_and_load_back(synthetic_run, tmp_path, variant):
    run = fresh_run(synthetic_run, tmp_path / "run")
    cfg = load_config(None, tiny(run, *VARIANTS[variant]))
    summary = train(run, cfg, device="cpu")
    row = pd.read_csv(run / "train_log.csv").iloc[0]
    assert summary["epochs_completed"] == 1
    assert all(math.isfinite(row[c]) for c in ("train_loss", "train_bce", "train_dice_loss", "val_loss"))
    assert 0.0 <= row["val_patient_dice_mean"] <= 1.0
    assert row["train_loss"] == pytest.approx(
        cfg.train.bce_weight * row["train_bce"] + cfg.train.dice_weight * row["train_dice_loss"], rel=1e-5
    )
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["config"]["model"]["name"] == cfg.model.name
    assert state["normalisation"] == {"method": cfg.data.normalisation}
    predictor = Predictor.from_checkpoint(run / "checkpoints" / "last.pt", device="cpu")
    assert predictor.normalisation == cfg.data.normalisation
    volume = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    prob = predictor.predict_proba_batch(list(volume))
    assert np.stack(prob).shape == (3, 64, 64) and np.isfinite(np.stack(prob)).all()


@pytest.mark.slow
def test_25d_model_trains_and_is_evaluated_and_inferred_on_whole_volumes(synthetic_run, synthetic_dir, tmp_path):
    """data.context_slices=1: training, evaluation and batch inference all stack the same neighbours."""
    import cv2

    from mri_seg.evaluation.prediction import as_volume_fn, iter_run_cases
    from mri_seg.io.images import read_slice
    from mri_seg.pipelines.infer import main as infer_main

    run = fresh_run(synthetic_run, tmp_path / "run")
    cfg = load_config(None, tiny(run, "data.context_slices=1", "model.in_channels=9"))
    summary = train(run, cfg, device="cpu")
    assert summary["epochs_completed"] == 1
    ckpt = run / "checkpoints" / "last.pt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["config"]["data"]["context_slices"] == 1
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    assert predictor.in_channels == 9 and predictor.channels_per_slice == 3

    case = next(iter_run_cases(run, "val", as_volume_fn(predictor, 4), progress=False))
    frame = pd.read_csv(run / "manifest.csv").query("patient_id == @case.patient_id").sort_values("slice_index")
    volume = np.stack([read_slice(p) for p in frame["image_path"]])
    np.testing.assert_allclose(case.prob, predictor.predict_volume(volume), atol=1e-6)

    patient = synthetic_dir / case.patient_id
    out = tmp_path / "pred"
    assert infer_main(["--checkpoint", str(ckpt), "--input", str(patient), "--output", str(out), "--device", "cpu",
                       "--no-progress", "--threshold", "0.5", "--min-component", "0"]) == 0  # fmt: skip
    masks = np.stack([cv2.imread(str(out / patient.name / f"{Path(p).stem}_mask.tif"), cv2.IMREAD_UNCHANGED) > 0
                      for p in frame["image_path"]])  # fmt: skip
    prob = predictor.predict_volume(volume)
    np.testing.assert_array_equal(masks, prob >= 0.5)
    assert masks.any()
    alone = np.stack(predictor.predict_proba_batch(list(volume)))  # each slice without its neighbours
    assert np.abs(prob - alone).max() > 1e-3  # so the equality above did test the 2.5D path


@pytest.mark.slow
def test_wrong_in_channels_for_25d_is_one_clear_error(synthetic_run, tmp_path):

    run = fresh_run(synthetic_run, tmp_path / "run")
    with pytest.raises(TrainingError, match=r"model.in_channels=3 does not match .* = 9; set model.in_channels=9"):
        train(run, load_config(None, tiny(run, "data.context_slices=1")), device="cpu")
    with pytest.raises(TrainingError, match="model.in_channels=8 is not a multiple of 2 . data.context_slices . 1 = 3"):
        train(run, load_config(None, tiny(run, "data.context_slices=1", "model.in_channels=8")), device="cpu")
    assert not (run / "checkpoints").exists()


@pytest.mark.slow
def test_cpu_bf16_trains_through_the_engine_and_ships_float32_weights(synthetic_run, tmp_path, monkeypatch):
    """``train.cpu_bf16``: the step under bf16 autocast (forced on here, whatever this CPU has), the
    checkpoint float32 and loadable by the float32 predictor."""
    import mri_seg.training.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: True)
    run = fresh_run(synthetic_run, tmp_path / "run")
    cfg = load_config(None, tiny(run, "train.cpu_bf16=true"))
    summary = train(run, cfg, device="cpu")
    assert summary["epochs_completed"] == 1 and summary["precision"] == "bf16"
    row = pd.read_csv(run / "train_log.csv").iloc[0]
    assert all(math.isfinite(row[c]) for c in ("train_loss", "val_loss", "val_patient_dice_mean"))
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    predictor = Predictor.from_checkpoint(run / "checkpoints" / "last.pt", device="cpu")
    prob = predictor.predict_proba(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert prob.dtype == np.float32 and np.isfinite(prob).all()


def test_training_forward_is_the_model_unless_compiled_and_says_why_it_stays_eager(monkeypatch):
    """``train.compile`` off: the model itself; on, where no C++ compiler is found: the model, and a
    note naming what is missing (training goes on eager instead of failing at the first batch)."""
    import mri_seg.training.runtime as runtime

    model = torch.nn.Conv2d(1, 1, 3)
    forward, how = runtime.training_forward(model, False, torch.device("cpu"))
    assert forward is model and how == "eager"
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    forward, how = runtime.training_forward(model, True, torch.device("cpu"))
    assert forward is model and "train.compile is set but no C++ compiler found" in how


@pytest.mark.slow
def test_compiled_step_trains_the_model_itself_and_ships_plain_weights(synthetic_run, tmp_path, capsys):
    """``train.compile``: the step runs ``torch.compile(model)``, which shares the model's parameters:
    its outputs and gradients are the eager model's, and a run trained with it ships the trained weights
    under their plain names (no ``_orig_mod.``), loadable by the predictor, next to an eager run of the
    same seed (AdamW turns rounding differences into lr-sized ones, so the weights agree to ~1e-3)."""
    from mri_seg.models import build_model
    from mri_seg.training.runtime import compiler_missing, training_forward

    missing = compiler_missing(torch.device("cpu"))
    if missing:
        pytest.skip(f"torch.compile needs a C++ compiler on the CPU: {missing}")
    cfg = load_config(None, tiny(synthetic_run, "train.compile=true"))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    forward, how = training_forward(model, True, torch.device("cpu"))
    assert forward is not model and how.startswith("compiled")
    x = torch.randn(8, cfg.model.in_channels, 32, 32)
    grads = []
    for fn in (model, forward):
        model.zero_grad()
        out = fn(x)
        out.square().mean().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-5)
    for compiled_grad, eager_grad in zip(grads[1][1], grads[0][1], strict=True):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-3, atol=1e-5)

    states = {}
    for name, flag in (("eager", "false"), ("compiled", "true")):
        run = fresh_run(synthetic_run, tmp_path / name)
        summary = train(run, load_config(None, tiny(run, f"train.compile={flag}")), device="cpu")
        assert summary["epochs_completed"] == 1
        states[name] = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
        if flag == "true":
            assert "training step: compiled" in capsys.readouterr().out
            Predictor.from_checkpoint(run / "checkpoints" / "last.pt", device="cpu")
    assert list(states["compiled"]) == list(states["eager"])  # the same names: no wrapper prefix
    floats = [k for k, v in states["eager"].items() if v.is_floating_point()]
    gap = torch.cat([(states["compiled"][k] - states["eager"][k]).flatten() for k in floats]).norm()
    size = torch.cat([states["eager"][k].flatten() for k in floats]).norm()
    assert gap / size < 1e-2


@pytest.mark.slow
def test_patient_balance_reaches_the_engines_sampler(synthetic_run, tmp_path, monkeypatch):
    """``train.tumour_patient_balance`` 1: the engine's draw gives each training patient with a tumour
    the same share of the tumour draws, whatever its number of tumour slices."""
    import mri_seg.training.engine as engine_module

    built = []

    def spy(*args, **kwargs):
        sampler = original(*args, **kwargs)
        built.append((args[0], kwargs["patient_ids"], sampler))
        return sampler

    original = engine_module.build_train_sampler
    monkeypatch.setattr(engine_module, "build_train_sampler", spy)
    run = fresh_run(synthetic_run, tmp_path / "run")
    cfg = load_config(None, tiny(run, "train.tumour_oversample=0.6", "train.tumour_patient_balance=1"))
    assert train(run, cfg, device="cpu")["epochs_completed"] == 1
    (has_tumour, ids, sampler), = built
    frame = pd.DataFrame({"patient": ids, "tumour": has_tumour, "w": sampler.weights.numpy()})
    tumour_share = frame[frame["tumour"]].groupby("patient")["w"].sum()
    assert frame["tumour"].groupby(frame["patient"]).sum().nunique() > 1  # patients differ in tumour slices...
    assert np.allclose(tumour_share, 0.6 / len(tumour_share))  # ...and still share the draws alike
