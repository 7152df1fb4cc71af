"""model.name: every architecture builds from config, honours size_divisor, trains a step,
and its checkpoint loads back (weights_only=True) predicting exactly what the trained model did."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from untrained import tiny_config

from mri_seg.config import Config, ModelConfig, config_to_dict
from mri_seg.inference.predictor import Predictor
from mri_seg.losses import build_loss
from mri_seg.models import ARCHITECTURES, build_model, size_divisor
from mri_seg.preprocess import normalisation_spec
from mri_seg.training.checkpoint import save_checkpoint


def arch_config(name: str, scale: float = 1.0) -> Config:
    cfg = tiny_config(scale)  # channels 4, 8, 16; strides 2, 2: size divisor 4
    cfg.model.name = name
    cfg.model.deep_supervision = 1
    cfg.data.image_size = 32
    return cfg


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_output_matches_input_size_exactly_at_multiples_of_size_divisor(name):
    cfg = arch_config(name)
    assert size_divisor(cfg.model) == 4
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        for size in (12, 20):  # multiples of 4 that are not powers of 2
            assert model(torch.zeros(1, 3, size, size)).shape == (1, 1, size, size)
        with pytest.raises(RuntimeError):  # a multiple of 2 but not of 4: the divisor is not smaller
            model(torch.zeros(1, 3, 14, 14))


def test_size_divisor_is_the_product_of_strides_for_every_architecture():
    for name in ARCHITECTURES:
        cfg = arch_config(name).model
        cfg.channels, cfg.strides = [8, 16, 32, 64], [2, 2, 2]
        assert size_divisor(cfg) == 8
        with torch.no_grad():
            assert build_model(cfg).eval()(torch.zeros(1, 3, 24, 24)).shape == (1, 1, 24, 24)


def test_dynunet_deep_supervision_heads_in_training_main_head_in_eval():
    cfg = arch_config("dynunet").model
    cfg.channels, cfg.strides, cfg.deep_supervision = [4, 8, 16, 32], [2, 2, 2], 2
    model = build_model(cfg)
    model.train()
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 3, 1, 16, 16)  # main + 2 auxiliary heads
    model.eval()
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 1, 16, 16)
    cfg.deep_supervision = 0
    off = build_model(cfg).train()
    assert off(torch.zeros(2, 3, 16, 16)).shape == (2, 1, 16, 16)


def _train_one_step(model: torch.nn.Module, cfg: Config) -> None:
    torch.manual_seed(1)
    images = torch.randn(4, 3, 32, 32)
    masks = (torch.rand(4, 1, 32, 32) > 0.7).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    loss, _ = build_loss(cfg.train)(model(images), masks)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_trains_a_step_and_checkpoint_loads_back_predicting_the_same(name, tmp_path):
    cfg = arch_config(name)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    _train_one_step(model, cfg)
    assert any(not torch.equal(initial[k], v) for k, v in model.state_dict().items())
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": config_to_dict(cfg),
                           "normalisation": normalisation_spec("zscore_nonzero"), "epoch": 1})  # fmt: skip
    state = torch.load(path, map_location="cpu", weights_only=True)
    rebuilt = build_model(cfg.model)
    rebuilt.load_state_dict(state["model"])  # strict: every weight (and BN statistic) is in the file
    predictor = Predictor.from_checkpoint(path, device="cpu")
    image = np.random.default_rng(0).integers(1, 255, (32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(predictor._prepare(image)[None].copy())
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(x))[0, 0].numpy()
        np.testing.assert_array_equal(torch.sigmoid(rebuilt.eval()(x))[0, 0].numpy(), expected)
    np.testing.assert_allclose(predictor.predict_proba(image), expected, atol=1e-6)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_runs_channels_last_under_autocast(name):
    """The CUDA path (channels_last + autocast) on the CPU with bf16: same code, device-agnostic."""
    cfg = arch_config(name)
    model = build_model(cfg.model).to(memory_format=torch.channels_last).train()
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = model(x)
    loss, _ = build_loss(cfg.train)(logits, torch.zeros(2, 1, 16, 16))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_model_settings_name_the_key():
    cfg = arch_config("vnet").model
    with pytest.raises(ValueError, match="unknown model.name 'vnet'.*unet, attention_unet, segresnet, dynunet"):
        build_model(cfg)
    cfg = arch_config("segresnet").model
    cfg.channels = [4, 8, 12]
    with pytest.raises(ValueError, match=r"model.channels must be \[4, 8, 16\]"):
        build_model(cfg)
    cfg.channels, cfg.strides = [4, 8, 16], [2, 1]
    with pytest.raises(ValueError, match="model.strides must all be 2"):
        build_model(cfg)
    cfg.strides, cfg.blocks_down = [2, 2], [1, 2]
    with pytest.raises(ValueError, match="model.blocks_down needs one entry per level"):
        build_model(cfg)
    cfg = arch_config("dynunet").model
    cfg.deep_supervision = 2
    with pytest.raises(ValueError, match=r"model.deep_supervision must be in \[0, 1\]"):
        build_model(cfg)
    cfg.strides = [2]
    with pytest.raises(ValueError, match="model.strides needs len"):
        size_divisor(cfg)


def test_segresnet_blocks_default_to_monai_pattern():
    from mri_seg.models.factory import segresnet_blocks

    cfg = arch_config("segresnet").model
    cfg.channels, cfg.strides = [4, 8, 16, 32, 64], [2, 2, 2, 2]
    assert segresnet_blocks(cfg) == (1, 2, 2, 4, 4)
    cfg.blocks_down = [1, 1, 1, 1, 1]
    assert segresnet_blocks(cfg) == (1, 1, 1, 1, 1)


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("res_units", [0, 1])
def test_output_prior_sets_the_starting_tumour_probability(name, res_units):
    """A fresh network predicts ~model.output_prior everywhere (training mode, random input)."""
    cfg = _cfg(name, num_res_units=res_units, output_prior=0.01)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    prior_logit = math.log(0.01 / 0.99)
    assert abs(logits.mean().item() - prior_logit) < 1.0, logits.mean().item()
    cfg0 = _cfg(name, num_res_units=res_units, output_prior=0.0)
    torch.manual_seed(0)
    with torch.no_grad():
        logits0 = build_model(cfg0).train()(torch.randn(2, 3, 64, 64))
    assert abs(logits0.mean().item()) < 2.0  # MONAI's own init: around 50%


def test_output_prior_out_of_range_is_refused():
    with pytest.raises(ValueError, match="output_prior"):
        build_model(_cfg("unet", output_prior=1.0))


def _cfg(name: str, **kw) -> ModelConfig:
    return ModelConfig(name=name, channels=[16, 32, 64, 128], strides=[2, 2, 2], deep_supervision=1, **kw)
