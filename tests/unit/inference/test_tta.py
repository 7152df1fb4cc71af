"""Test-time augmentation (mri_seg.inference.tta): the passes, the rotation and its inverse, the Predictor's use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import ConfigError, InferConfig, load_config
from mri_seg.evaluation.scoring import EvalOptions
from mri_seg.inference.predictor import Predictor
from mri_seg.inference.tta import Pass, passes_per_member, rotate, run_passes, tta_passes


def test_passes_order_and_count():
    assert tta_passes(False) == [Pass(0.0)]
    assert tta_passes(True) == [Pass(0.0), Pass(0.0, flip=True)]
    assert tta_passes(True, [10, -10]) == [
        Pass(0.0), Pass(0.0, True), Pass(10.0), Pass(10.0, True), Pass(-10.0), Pass(-10.0, True)
    ]
    assert passes_per_member(True, [10, -10]) == 6 and passes_per_member(False, [5]) == 2
    assert passes_per_member(False) == 1


@pytest.mark.parametrize("h, w", [(32, 32), (24, 40)])
def test_a_quarter_turn_moves_a_pixel_where_a_turn_on_the_screen_puts_it(h, w):
    """90 degrees counter-clockwise as displayed (rows down): the pixel right of the centre goes above it;
    on a non-square image too (the angle is in pixels, not in normalised coordinates)."""
    image = torch.zeros(1, 1, h, w)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    image[0, 0, int(cy - 0.5), int(cx - 0.5) + 6] = 1.0  # 6 pixels right of the centre (even sizes: centre between)
    out = rotate(image, 90.0)[0, 0]
    y, x = np.unravel_index(int(out.argmax()), out.shape)
    assert (round(y - cy), round(x - cx)) == (-6, 0)
    assert float(out.max()) == pytest.approx(1.0, abs=1e-4)


def test_rotation_and_its_inverse_restore_the_image_inside_the_disc():
    yy, xx = torch.meshgrid(torch.arange(64) - 31.5, torch.arange(64) - 31.5, indexing="ij")
    smooth = torch.stack([torch.sin(xx / 6) * torch.cos(yy / 7), torch.exp(-(xx**2 + (yy - 5) ** 2) / 200)])[None]
    back = rotate(rotate(smooth, 12.0), -12.0)
    assert not torch.allclose(rotate(smooth, 12.0), smooth, atol=0.1)  # it did turn
    inside = (yy**2 + xx**2) < 26**2  # the corners a rotation brings in from outside are zeros
    assert torch.allclose(back[..., inside], smooth[..., inside], atol=0.02)
    assert Pass(0.0).forward(smooth) is smooth


def test_run_passes_undoes_each_pass():
    """An identity model: every pass returns the input on the input's grid (within the disc for rotations)."""
    yy, xx = torch.meshgrid(torch.arange(48) - 23.5, torch.arange(48) - 23.5, indexing="ij")
    batch = torch.exp(-((xx - 6) ** 2 + (yy + 4) ** 2) / 60).expand(3, 1, 48, 48).contiguous()
    outs = run_passes(lambda x: x, batch, tta_passes(True, [8.0, -8.0]))
    assert len(outs) == 6
    inside = (yy**2 + xx**2) < 20**2
    for out in outs:
        assert out.shape == batch.shape
        assert torch.allclose(out[..., inside], batch[..., inside], atol=0.02)
    assert torch.equal(outs[1], batch)  # the flip alone is exact


def test_the_predictor_makes_every_pass_of_every_member(tmp_path: Path):
    ckpt = write_untrained_checkpoint(tmp_path / "a.pt", tiny_config(scale=0.5), seed=0)
    infer = InferConfig()
    infer.postprocess.tta_flip = True
    infer.postprocess.tta_rotations = [10.0, -10.0]
    volume = np.random.default_rng(0).integers(1, 255, (3, 40, 48, 3), dtype=np.uint8)
    pair = Predictor.from_checkpoints([ckpt, ckpt], device="cpu", infer_cfg=infer)
    mean, passes = pair.predict_volume(volume, return_passes=True)
    assert pair.passes_per_member == 6 and pair.n_passes == 12
    assert passes.shape == (12, 3, 40, 48) and mean.shape == (3, 40, 48)
    np.testing.assert_allclose(mean, passes.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(passes[6:], passes[:6], atol=1e-6)  # the same member twice: the same passes
    plain = Predictor.from_checkpoint(ckpt, device="cpu")
    np.testing.assert_allclose(passes[0], plain.predict_volume(volume), atol=1e-6)  # the first pass is the plain one
    assert not np.allclose(passes[2], passes[0], atol=1e-4)  # a rotated pass is another prediction


def test_the_setting_is_checked_and_reaches_the_evaluation_options(tmp_path: Path):
    cfg = load_config(None, ["eval.postprocess.tta_rotations=[10,-10]"])
    assert EvalOptions.from_config(cfg.eval.postprocess).tta_rotations == (10.0, -10.0)
    with pytest.raises(ConfigError, match="tta_rotations"):
        load_config(None, ["infer.postprocess.tta_rotations=[90]"])
