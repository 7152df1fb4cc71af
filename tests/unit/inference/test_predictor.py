"""Predictor: any size in, same size out; tiling is seamless; memory bounded by tile_batch; TTA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import InferConfig, load_config
from mri_seg.data.dataset import build_dataset
from mri_seg.inference.predictor import Predictor, windows_per_slice
from mri_seg.io.registry import discover, read_source
from mri_seg.io.scan import ChannelWarning, ScanError
from mri_seg.models import build_model
from mri_seg.postprocess import postprocess


class LocalNet(torch.nn.Module):
    """Fully convolutional, zero-padded, no normalisation: translation-equivariant away from borders
    (receptive field 5x5), and not flip-symmetric (so TTA changes the result)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


class RecordingNet(LocalNet):
    """Records the input shape of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return super().forward(x)


def _image(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, (h, w, c), dtype=np.uint8)


def _predictor(model, scale=1.0, **infer) -> Predictor:
    return Predictor(model, tiny_config(scale), InferConfig(**infer), device="cpu")


@pytest.fixture(scope="module")
def ckpt_half(tmp_path_factory):
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "half.pt", tiny_config(scale=0.5))


@pytest.mark.parametrize("shape", [(256, 256, 3), (1000, 700, 3), (300, 257, 3), (5, 7, 3), (64, 300, 3)])
def test_from_checkpoint_returns_input_sized_probabilities(ckpt_half, shape):
    predictor = Predictor.from_checkpoint(ckpt_half, device="cpu")
    assert predictor.tile_size == 128  # 256 * data.scale 0.5, a multiple of the size divisor
    prob = predictor.predict_proba(_image(*shape))
    assert prob.shape == shape[:2] and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0


def test_batch_equals_single_slices(ckpt_half):
    predictor = Predictor.from_checkpoint(ckpt_half, device="cpu", infer_cfg=InferConfig(tile_batch=3))
    images = [_image(96, 80, seed=s) for s in range(5)]
    batch = predictor.predict_proba_batch(images)
    for img, prob in zip(images, batch):
        np.testing.assert_allclose(prob, predictor.predict_proba(img), atol=1e-5)
    with pytest.raises(ValueError, match="same-size"):
        predictor.predict_proba_batch([_image(8, 8), _image(8, 9)])


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_tiled_equals_untiled_away_from_borders(scale):
    image = _image(300, 257)
    untiled = _predictor(LocalNet(), scale, tile_size=320).predict_proba(image)  # one window
    tiled_pred = _predictor(LocalNet(), scale, tile_size=64, overlap=0.5, tile_batch=4)
    assert windows_per_slice(*[round(s * scale) for s in image.shape[:2]], 64, 0.5) >= 12
    tiled = tiled_pred.predict_proba(image)
    assert tiled.shape == untiled.shape == (300, 257)
    # Near the image border every window sees it close to its own (zero-padded) edge, where the
    # gaussian weights are tiny; a quarter tile in, one window always sees a pixel near its centre.
    m = int(64 / 4 / scale)
    diff = np.abs(tiled - untiled)[m:-m, m:-m]
    assert diff.max() < 5e-3
    assert np.mean(diff < 1e-4) > 0.9
    assert np.abs(untiled - 0.5).mean() > 0.02  # the model is not trivially constant


def test_tiles_per_forward_pass_bounded_by_tile_batch():
    net = RecordingNet()
    predictor = _predictor(net, 1.0, tile_size=64, overlap=0.5, tile_batch=4)
    prob = predictor.predict_proba(_image(450, 301))
    assert prob.shape == (450, 301)
    assert net.shapes and all(s[0] <= 4 and s[2:] == (64, 64) for s in net.shapes)
    assert sum(s[0] for s in net.shapes) == windows_per_slice(450, 301, 64, 0.5)
    net.shapes.clear()
    predictor.predict_proba_batch([_image(40, 40, seed=s) for s in range(10)])  # small slices: batched
    assert [s[0] for s in net.shapes] == [4, 4, 2]


def test_flip_tta_averages_the_flipped_pass():
    image = _image(64, 48)
    plain = _predictor(LocalNet(), tile_size=64).predict_proba(image)
    flipped = _predictor(LocalNet(), tile_size=64).predict_proba(image[:, ::-1].copy())[:, ::-1]
    tta_cfg = InferConfig(tile_size=64)
    tta_cfg.postprocess.tta_flip = True
    tta = Predictor(LocalNet(), tiny_config(), tta_cfg, device="cpu").predict_proba(image)
    assert np.abs(plain - flipped).max() > 1e-3
    np.testing.assert_allclose(tta, 0.5 * (plain + flipped), atol=1e-5)


def test_channel_rules_in_predictor():
    predictor = _predictor(LocalNet(), tile_size=64)
    with pytest.warns(ChannelWarning):
        assert predictor.predict_proba(_image(20, 30, c=1)).shape == (20, 30)
    with pytest.raises(ScanError, match="2 channels"):
        predictor.predict_proba(_image(20, 30, c=2))


def test_bad_settings_and_devices_are_errors():
    with pytest.raises(ValueError, match="overlap"):
        _predictor(LocalNet(), overlap=1.0)
    with pytest.raises(ValueError, match="tile_batch"):
        _predictor(LocalNet(), tile_batch=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Predictor(LocalNet(), tiny_config(), device="cuda")


def test_tile_size_rounded_up_to_size_divisor():
    assert _predictor(LocalNet(), tile_size=30).tile_size == 32  # tiny model: divisor 4


# ----------------------------------------------------------------------------- postprocess


def test_postprocess_threshold_and_small_components_per_slice():
    prob = np.zeros((2, 20, 20), np.float32)
    prob[0, 2:4, 2:4] = 0.9  # 4 px: removed
    prob[0, 10:15, 10:15] = 0.6  # 25 px: kept
    prob[1, 0:3, 0:3] = 0.7  # 9 px: kept
    prob[1, 10:12, 10:12] = 0.4  # below threshold
    mask = postprocess(prob, 0.5, 5)
    assert mask.dtype == bool and mask.shape == prob.shape
    assert int(mask[0].sum()) == 25 and int(mask[1].sum()) == 9
    assert int(postprocess(prob, 0.5, 0).sum()) == 4 + 25 + 9
    assert int(postprocess(prob[0], 0.95, 0).sum()) == 0
    # components touching diagonally are one (8-connectivity)
    diag = np.zeros((6, 6), np.float32)
    diag[[0, 1, 2], [0, 1, 2]] = 1.0
    assert int(postprocess(diag, 0.5, 3).sum()) == 3


def test_postprocess_rejects_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        postprocess(np.zeros((3, 3)), 1.5, 0)
    with pytest.raises(ValueError, match="min_component_pixels"):
        postprocess(np.zeros((3, 3)), 0.5, -1)
    with pytest.raises(ValueError, match="H x W"):
        postprocess(np.zeros(3), 0.5, 0)


# ----------------------------------------------------------------------------- same preprocessing as training


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_preprocessing_matches_the_training_dataset(synthetic_run, scale):
    """A val patient's folder as inference sees it (io reader, Predictor.prepare_inputs) equals what
    training feeds the model (dataset items). Both sides are imported at module level, so renaming
    either one fails this test; it never skips."""
    cfg = load_config(None, [f"data.scale={scale}", "model.channels=[4,8,16]", "model.strides=[2,2]"])
    ds = build_dataset(synthetic_run, "val", cfg, train=False)
    rows = [i for i, p in enumerate(ds.patient_ids) if p == ds.patient_ids[0]]
    folder = Path(ds.frame.iloc[rows[0]]["image_path"]).parent
    (source,) = discover(folder).sources
    scan = read_source(source)
    assert scan.slices.shape[0] == len(rows) >= 2
    got = Predictor(build_model(cfg.model), cfg, InferConfig(), device="cpu").prepare_inputs(
        scan.slices, range(len(rows))
    )
    expected = np.stack([ds[i]["image"].numpy() for i in rows])
    size = round(128 * scale)
    assert got.shape == expected.shape == (len(rows), 3, size, size)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_predict_volume_returns_the_flip_passes_and_their_mean():
    volume = np.stack([_image(32, 40, seed=s) for s in range(3)])
    plain = _predictor(LocalNet(), tile_size=64)
    assert plain.n_passes == 1
    mean1, passes1 = plain.predict_volume(volume, return_passes=True)
    assert passes1.shape == (1, 3, 32, 40) and mean1.shape == (3, 32, 40) and mean1.dtype == np.float32
    np.testing.assert_array_equal(mean1, passes1[0])
    cfg = InferConfig(tile_size=64)
    cfg.postprocess.tta_flip = True
    tta = Predictor(LocalNet(), tiny_config(), cfg, device="cpu")
    mean, passes = tta.predict_volume(volume, return_passes=True)
    assert passes.shape == (2, 3, 32, 40)
    np.testing.assert_allclose(passes[0], mean1, atol=1e-6)  # pass 0 is the plain pass
    flipped = plain.predict_volume(volume[:, :, ::-1].copy())[:, :, ::-1]
    np.testing.assert_allclose(passes[1], flipped, atol=1e-5)  # pass 1 is the flipped pass, flipped back
    np.testing.assert_allclose(mean, passes.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(tta.predict_volume(volume), mean, atol=1e-6)
    with pytest.raises(ValueError, match="D x H x W x C"):
        tta.predict_volume(volume[0])
