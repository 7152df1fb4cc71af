"""Training engine: outputs, checkpoints (weights_only), stopping rules, resume checks, CLI."""

from __future__ import annotations

import inspect
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from runs import fresh_run

from mri_seg.config import config_to_dict, load_config
from mri_seg.metrics import dice_score
from mri_seg.models import build_model
from mri_seg.pipelines._cli import StageError, run_main
from mri_seg.pipelines.train import main as train_main
from mri_seg.training.checkpoint import checkpoint_config
from mri_seg.training.engine import TrainingError, data_hash, train
from mri_seg.training.optim import MIN_LR_RATIO, warmup_cosine
from mri_seg.training.runlog import LOG_COLUMNS
from mri_seg.training.runtime import make_precision, rng_state, set_rng_state
from mri_seg.training.validate import dice_from_counts, patient_dice


def tiny(run_dir: Path, epochs: int = 1, *extra: str) -> list[str]:
    """Overrides for a seconds-long run: 32x32 slices, a 3-level UNet with 4..16 channels."""
    height = int(pd.read_csv(run_dir / "manifest.csv")["height"].max())
    return [
        f"data.scale={32 / height}", "model.channels=[4,8,16]", "model.strides=[2,2]", "model.num_res_units=0",
        "data.num_workers=0", "train.batch_size=8", f"train.epochs={epochs}", "train.warmup_epochs=0",
        "augment.elastic.p=0.0", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(synthetic_run, tmp_path_factory) -> tuple[Path, dict]:
    """One epoch trained in a copy of the synthetic run (shared by the read-only checks)."""
    run = fresh_run(synthetic_run, tmp_path_factory.mktemp("trained") / "run")
    summary = train(run, load_config(None, tiny(run, 1)), device="cpu")
    return run, summary


def test_one_epoch_writes_log_config_and_both_checkpoints(trained):
    run, summary = trained
    log = pd.read_csv(run / "train_log.csv")
    assert list(log.columns) == LOG_COLUMNS and log["epoch"].tolist() == [1]
    row = log.iloc[0]
    assert all(math.isfinite(row[c]) for c in LOG_COLUMNS)
    assert 0.0 <= row["val_patient_dice_mean"] <= 1.0 and 0.0 <= row["val_slice_dice"] <= 1.0
    assert row["train_loss"] == pytest.approx(row["train_bce"] + row["train_dice_loss"], rel=1e-6)
    assert row["images_per_s"] > 0 and row["seconds"] > 0
    assert (run / "config_train.yaml").is_file()
    assert summary["epochs_completed"] == 1 and summary["best_epoch"] == 1 and summary["stopped"] == "completed"
    assert summary["best_val_patient_dice_mean"] == pytest.approx(row["val_patient_dice_mean"])
    assert Path(summary["best_checkpoint"]).is_file() and Path(summary["last_checkpoint"]).is_file()


@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model(trained, name):
    run, _ = trained
    state = torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "config", "normalisation",
                "metrics", "best_metric", "data_hash", "extra"):  # fmt: skip
        assert key in state, key
    cfg = checkpoint_config(state)
    assert config_to_dict(cfg) == config_to_dict(load_config(None, tiny(run, 1)))
    assert state["epoch"] == 1 and state["data_hash"] == data_hash(run)
    assert state["normalisation"] == {"method": "zscore_nonzero"}
    assert state["best_metric"] == pytest.approx(state["metrics"]["val_patient_dice_mean"])
    assert set(state["metrics"]["patient_dice"]) == set(
        pd.read_csv(run / "splits.csv").query("split == 'val'")["patient_id"]
    )
    assert isinstance(state["extra"]["rng"]["torch"], torch.Tensor)
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_refuses_to_overwrite_and_to_resume_on_other_data_or_model(trained, tmp_path):
    src, _ = trained
    with pytest.raises(TrainingError, match="already exists"):
        train(src, load_config(None, tiny(src, 1)), device="cpu")

    run = tmp_path / "copy"
    shutil.copytree(src, run)
    with pytest.raises(TrainingError, match="config keys.*model.channels"):
        train(run, load_config(None, tiny(run, 2, "model.channels=[4,8,32]")), resume=True, device="cpu")
    splits = pd.read_csv(run / "splits.csv")
    splits.loc[splits.index[0], "split"] = "test" if splits.loc[splits.index[0], "split"] != "test" else "train"
    splits.to_csv(run / "splits.csv", index=False)
    with pytest.raises(TrainingError, match="different data"):
        train(run, load_config(None, tiny(run, 2)), resume=True, device="cpu")


def test_resume_of_a_finished_run_trains_nothing(trained, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained[0], run)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    summary = train(run, load_config(None, tiny(run, 1)), resume=True, device="cpu")
    assert summary["epochs_completed"] == 1 and summary["best_epoch"] == 1
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert pd.read_csv(run / "train_log.csv")["epoch"].tolist() == [1]


def test_resume_with_another_training_config_stops_with_one_line_and_exit_2(trained, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(trained[0], run)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_main(train_main, ["--run-dir", str(run), "--resume", "--set", "train.seed=1", "--set", "train.lr=0.01"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot resume from")
    assert "train.lr (0.001 -> 0.01), train.seed (0 -> 1)" in err[0]
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    # the run-only time cap is not a training setting; a finished run says so and trains nothing
    assert train_main(["--run-dir", str(run), "--resume", "--set", "train.max_time_minutes=5"]) == 0
    assert "is a finished run (1 of 1 epochs" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before


def test_restart_moves_the_old_run_aside_and_trains_afresh(trained, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(trained[0], run)
    old_last = (run / "checkpoints" / "last.pt").read_bytes()
    old_config = (run / "config_train.yaml").read_text()
    with pytest.raises(SystemExit) as exc:  # neither flag: refused, nothing overwritten
        run_main(train_main, ["--run-dir", str(run), *[a for s in tiny(run, 1) for a in ("--set", s)]])
    assert exc.value.code == 2 and "pass --resume" in capsys.readouterr().err
    summary = train(run, load_config(None, tiny(run, 2, "train.seed=3")), restart=True, device="cpu")
    assert summary["epochs_completed"] == 2 and summary["stopped"] == "completed"
    (moved,) = (run / "superseded").iterdir()
    assert moved.name.startswith("train-") and f"moved to {moved}" in capsys.readouterr().out
    assert (moved / "checkpoints" / "last.pt").read_bytes() == old_last
    assert (moved / "config_train.yaml").read_text() == old_config
    assert pd.read_csv(moved / "train_log.csv")["epoch"].tolist() == [1]
    assert pd.read_csv(run / "train_log.csv")["epoch"].tolist() == [1, 2]
    assert "seed: 3" in (run / "config_train.yaml").read_text()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["config"]["train"]["seed"] == 3


def test_early_stopping_on_a_frozen_model(synthetic_run, tmp_path):
    # lr 1e-30 (below float32 resolution of the weights; lr 0 is refused by the config rules) and
    # instance norm (no running stats): val Dice never changes, so it never improves
    run = fresh_run(synthetic_run, tmp_path / "run")
    cfg = load_config(None, tiny(run, 6, "train.lr=1e-30", "model.norm=instance", "train.early_stop_patience=2"))
    summary = train(run, cfg, device="cpu")
    assert summary["stopped"] == "early_stop" and summary["epochs_completed"] == 3 and summary["best_epoch"] == 1
    log = pd.read_csv(run / "train_log.csv")
    assert log["epoch"].tolist() == [1, 2, 3]
    assert log["val_patient_dice_mean"].nunique() == 1


def test_time_cap_stops_unfinished_and_resume_continues_and_val_every_with_plateau(synthetic_run, tmp_path, capsys):
    run = fresh_run(synthetic_run, tmp_path / "run")
    cfg = load_config(None, tiny(run, 3, "train.max_time_minutes=0.0001", "train.scheduler=plateau"))
    summary = train(run, cfg, device="cpu")
    assert summary["stopped"] == "time_cap" and summary["epochs_completed"] == 1
    assert "time cap reached: train.max_time_minutes=0.0001" in capsys.readouterr().out
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["extra"]["finished"] is False and state["extra"]["stopped"] == "time_cap"
    # a pipeline run ending here closes with a note saying so
    from mri_seg.pipelines import run as runner

    (note,) = runner.closing_notes([runner.StageSpec("train", None)], runner.StageContext(run, None))
    assert note.startswith("note: training is UNFINISHED (epoch 1 of 3 (time_cap)): the train.max_time_minutes")
    # the cap is not part of the training config: a resume with a larger one continues the same run
    summary = train(run, load_config(None, tiny(run, 3, "train.scheduler=plateau")), resume=True, device="cpu")
    assert summary["stopped"] == "completed" and summary["epochs_completed"] == 3
    assert pd.read_csv(run / "train_log.csv")["epoch"].tolist() == [1, 2, 3]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["extra"]["finished"] is True
    assert runner.closing_notes([runner.StageSpec("train", None)], runner.StageContext(run, None)) == []
    assert state["config"]["train"]["max_time_minutes"] == 0.0001  # stored config: the one the run started with

    run2 = fresh_run(synthetic_run, tmp_path / "run2")
    train(run2, load_config(None, tiny(run2, 2, "train.val_every=2")), device="cpu")
    log = pd.read_csv(run2 / "train_log.csv")
    assert math.isnan(log.loc[0, "val_patient_dice_mean"]) and not math.isnan(log.loc[1, "val_patient_dice_mean"])


def test_validating_less_often_trains_the_same_model(synthetic_run, tmp_path):
    """Each epoch is reseeded and the cosine schedule steps per batch, so train.val_every changes
    only the curves and the time (the CPU recipe validates every 5 epochs and ships the last)."""
    weights = []
    for every in (1, 3):
        run = fresh_run(synthetic_run, tmp_path / f"every{every}")
        train(run, load_config(None, tiny(run, 3, f"train.val_every={every}", "augment.affine.p=0.5")), device="cpu")
        weights.append(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"])
        log = pd.read_csv(run / "train_log.csv")
        assert log["val_patient_dice_mean"].notna().sum() == (3 if every == 1 else 1)
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_cli_prints_summary_and_rejects_missing_cuda(synthetic_run, tmp_path, capsys):
    run = fresh_run(synthetic_run, tmp_path / "run")
    args = ["--run-dir", str(run), "--device", "cpu", "--epochs", "1"]
    for item in tiny(run, 1):
        args += ["--set", item]
    assert train_main(args) == 0
    out = capsys.readouterr().out
    assert "train done: 1 epochs" in out and "best.pt" in out and "val patient Dice mean/median" in out
    # --resume without --config: the checkpoint's config is the base (a default config would not fit)
    assert train_main(["--run-dir", str(run), "--resume", "--epochs", "1"]) == 0
    if not torch.cuda.is_available():
        with pytest.raises(StageError, match="CUDA is not available"):
            train_main(["--run-dir", str(tmp_path / "run"), "--device", "cuda", "--resume"])
    with pytest.raises(StageError, match="not found"):
        train_main(["--run-dir", str(tmp_path / "missing")])


# --------------------------------------------------------------------------- units


def test_patient_dice_from_counts_equals_dice_score_on_stacked_volumes():
    rng = np.random.default_rng(0)
    preds, truths, ids = [], [], []
    for pid, n in (("a", 4), ("b", 3), ("empty", 2)):
        for _ in range(n):
            truth = rng.random((6, 6)) > (0.7 if pid != "empty" else 1.1)
            pred = rng.random((6, 6)) > (0.6 if pid != "empty" else 1.1)
            preds.append(pred), truths.append(truth), ids.append(pid)
    counts = np.array([[(p & t).sum(), p.sum(), t.sum()] for p, t in zip(preds, truths)], dtype=float)
    got = patient_dice(counts, ids)
    for pid in ("a", "b", "empty"):
        sel = [i for i, x in enumerate(ids) if x == pid]
        expected = dice_score(np.stack([preds[i] for i in sel]), np.stack([truths[i] for i in sel]))
        assert got[pid] == pytest.approx(expected)
    assert got["empty"] == 1.0
    assert dice_from_counts([0, 0], [0, 3], [0, 0]).tolist() == [1.0, 0.0]


def test_warmup_cosine_schedule_shape():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5)
    assert warmup_cosine(110, 10, 110) == pytest.approx(MIN_LR_RATIO)
    assert warmup_cosine(0, 0, 10) == pytest.approx(1.0)
    # the schedule is a function of steps and configured epochs only (no wall-clock input)
    assert list(inspect.signature(warmup_cosine).parameters) == ["step", "warmup_steps", "total_steps", "min_ratio"]


def test_rng_state_survives_weights_only_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())
    set_rng_state(loaded)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert __import__("random").random() == expected[2]


def test_cpu_precision_is_a_no_op():
    precision = make_precision(torch.device("cpu"), amp=True)
    assert precision.name == "fp32" and not precision.scaler.is_enabled()
    with precision.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_cpu_bf16_autocasts_the_step_where_the_cpu_has_bfloat16_and_validates_in_float32(monkeypatch):
    import mri_seg.training.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: True)
    precision = make_precision(torch.device("cpu"), amp=True, cpu_bf16=True)
    assert precision.name == "bf16" and not precision.scaler.is_enabled()
    with precision.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    validation = precision.for_inference()  # what the predictor does on the CPU: float32
    assert validation.name == "fp32" and validation.scaler is precision.scaler
    with validation.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert make_precision(torch.device("cpu"), amp=True, cpu_bf16=False).name == "fp32"  # off: as before
    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: False)  # a CPU without AMX: float32, not emulated or slow bf16
    assert make_precision(torch.device("cpu"), amp=True, cpu_bf16=True).name == "fp32"


class _BusyClock:
    """``time`` as a machine 1000x busier would see it: every wall-clock reading is scaled."""

    def __init__(self, factor: float = 1000.0):
        import time as real

        self._real, self._factor = real, factor

    def perf_counter(self) -> float:
        return self._real.perf_counter() * self._factor

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_same_data_config_and_seed_give_identical_weights_however_busy_the_machine(
    synthetic_run, tmp_path, monkeypatch
):
    # a large time cap (it never fires here) must not change the schedule: the busy run sees
    # ~1000x the wall time, which under a budget-following LR decay gave other weights
    overrides = tiny(synthetic_run, 2, "train.max_time_minutes=600", "train.warmup_epochs=1")
    quiet = fresh_run(synthetic_run, tmp_path / "quiet")
    train(quiet, load_config(None, overrides), device="cpu")
    busy = fresh_run(synthetic_run, tmp_path / "busy")
    from mri_seg.training import engine

    monkeypatch.setattr(engine, "time", _BusyClock())
    train(busy, load_config(None, overrides), device="cpu")
    a = torch.load(quiet / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(busy / "checkpoints" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert (quiet / "checkpoints" / "best.pt").is_file() and b["extra"]["stopped"] == "completed"
    logs = [pd.read_csv(run / "train_log.csv").drop(columns=["images_per_s", "seconds"]) for run in (quiet, busy)]
    pd.testing.assert_frame_equal(*logs)


def test_cpu_bf16_needs_amx_tiles_not_only_avx512_bf16(monkeypatch, tmp_path):
    """AVX512-BF16 alone trains float32 (a bf16 step measured slower there); AMX trains bf16."""
    import mri_seg.training.runtime as runtime
    import mri_seg.utils.provenance as prov

    avx512_only = {"avx2", "avx512f", "avx512_bf16"}
    amx = avx512_only | {"amx_bf16", "amx_tile"}
    assert prov.cpu_has_bf16(avx512_only) and not prov.cpu_has_amx_bf16(avx512_only)
    assert prov.cpu_has_bf16(amx) and prov.cpu_has_amx_bf16(amx)
    assert not prov.cpu_has_bf16({"avx2"})
    for flags, expected in ((avx512_only, "fp32"), (amx, "bf16")):
        monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda f=flags: prov.cpu_has_amx_bf16(f))
        assert make_precision(torch.device("cpu"), amp=True, cpu_bf16=True).name == expected
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    real_path = prov.Path
    monkeypatch.setattr(prov, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert prov.cpu_flags() == {"fpu", "avx512_bf16", "amx_bf16", "amx_tile"}  # the first processor's line
    assert prov.cpu_has_amx_bf16()
