"""``train.ema_decay``: the weight average's arithmetic, its checkpoint keys, and exact resume through the engine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from runs import fresh_run, train_killed_then_resumed

from mri_seg.config import ConfigError, load_config
from mri_seg.inference.predictor import Predictor
from mri_seg.training import engine
from mri_seg.training.ema import build_ema, ema_checkpoint_part, evaluated_model, restore_weights, update_ema


def _linear(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(value)
    return layer


def _set(layer: torch.nn.Linear, value: float) -> None:
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(value)


def test_off_is_no_average_and_the_model_itself():
    model = _linear(1.0)
    assert build_ema(model, 0.0) is None
    assert evaluated_model(None, model) is model
    update_ema(None, model)  # nothing to do
    assert set(ema_checkpoint_part(None, model)) == {"model"}


def test_the_average_follows_the_weights_by_one_minus_decay_per_step():
    model = _linear(1.0)
    ema = build_ema(model, 0.9)
    update_ema(ema, model)  # the first step copies
    _set(model, 11.0)
    update_ema(ema, model)  # 0.9 * 1 + 0.1 * 11 = 2
    _set(model, 2.0)
    update_ema(ema, model)  # 0.9 * 2 + 0.1 * 2 = 2
    _set(model, 12.0)
    update_ema(ema, model)  # 0.9 * 2 + 0.1 * 12 = 3
    shipped = evaluated_model(ema, model)
    assert shipped is not model
    assert shipped.weight.detach().flatten().tolist() == pytest.approx([3.0, 3.0])
    assert shipped.bias.item() == pytest.approx(3.0)
    assert model.weight.detach().tolist() == [[12.0, 12.0]]  # the trained weights are untouched
    assert int(ema.n_averaged) == 4


def test_checkpoint_keys_ship_the_average_and_restore_both():
    model = _linear(1.0)
    ema = build_ema(model, 0.5)
    update_ema(ema, model)
    _set(model, 3.0)
    update_ema(ema, model)  # average 2, trained 3
    part = ema_checkpoint_part(ema, model)
    assert part["model"]["weight"].tolist() == [[2.0, 2.0]]
    assert part["train_model"]["weight"].tolist() == [[3.0, 3.0]]
    assert part["ema_steps"] == 2

    fresh = _linear(0.0)
    fresh_ema = build_ema(fresh, 0.5)
    restore_weights(part, fresh_ema, fresh)
    assert fresh.weight.detach().tolist() == [[3.0, 3.0]]
    assert evaluated_model(fresh_ema, fresh).weight.detach().tolist() == [[2.0, 2.0]]
    _set(fresh, 4.0)
    update_ema(fresh_ema, fresh)  # goes on from the stored average: 0.5 * 2 + 0.5 * 4
    assert evaluated_model(fresh_ema, fresh).weight.detach().tolist() == [[3.0, 3.0]]


def test_checkpoints_with_and_without_an_average_do_not_mix():
    with_ema = ema_checkpoint_part(build_ema(_linear(1.0), 0.5), _linear(1.0))
    without = ema_checkpoint_part(None, _linear(1.0))
    with pytest.raises(ValueError, match="trained with train.ema_decay > 0"):
        restore_weights(with_ema, None, _linear(0.0))
    with pytest.raises(ValueError, match="trained without train.ema_decay"):
        restore_weights(without, build_ema(_linear(0.0), 0.5), _linear(0.0))


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_a_decay_outside_zero_to_one_is_refused_by_the_config(value):
    with pytest.raises(ConfigError, match="train.ema_decay"):
        load_config(None, [f"train.ema_decay={value}"])


def tiny(run_dir: Path, epochs: int, *extra: str) -> list[str]:
    height = int(pd.read_csv(run_dir / "manifest.csv")["height"].max())
    return [
        f"data.scale={32 / height}", "model.channels=[4,8,16]", "model.strides=[2,2]", "model.num_res_units=0",
        "data.num_workers=0", "train.batch_size=8", f"train.epochs={epochs}", "train.warmup_epochs=1",
        "train.tumour_oversample=0.5", "train.ema_decay=0.8", *extra,
    ]  # fmt: skip


def test_the_engine_validates_and_ships_the_average_and_resumes_it_exactly(synthetic_run, tmp_path, monkeypatch):
    straight = fresh_run(synthetic_run, tmp_path / "straight")
    engine.train(straight, load_config(None, tiny(straight, 3)), device="cpu")
    done = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    steps_per_epoch = done["ema_steps"] // 3
    assert steps_per_epoch > 0 and done["ema_steps"] == 3 * steps_per_epoch  # one update per optimiser step
    differs = [k for k in done["model"] if not torch.equal(done["model"][k], done["train_model"][k])]
    assert differs, "the shipped weights are the trained ones: no average was taken"
    Predictor.from_checkpoint(straight / "checkpoints" / "last.pt", device="cpu")  # inference loads the average

    broken = fresh_run(synthetic_run, tmp_path / "broken")
    train_killed_then_resumed(broken, load_config(None, tiny(broken, 3)), monkeypatch, killed_in_epoch=3)
    resumed = torch.load(broken / "checkpoints" / "last.pt", weights_only=True)
    assert resumed["ema_steps"] == done["ema_steps"]
    for key in ("model", "train_model"):
        for name, tensor in done[key].items():
            assert torch.allclose(resumed[key][name], tensor, atol=1e-6), f"{key}.{name}"
    a, b = (pd.read_csv(r / "train_log.csv") for r in (straight, broken))
    assert b["val_patient_dice_mean"].tolist() == pytest.approx(a["val_patient_dice_mean"].tolist(), abs=1e-9)
