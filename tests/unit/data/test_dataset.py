"""SliceDataset (shapes, dtypes, resize, normalisation, cache) and the epoch samplers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from mri_seg.config import load_config
from mri_seg.data.dataset import SliceDataset, build_dataset
from mri_seg.data.manifest import MANIFEST_COLUMNS, read_splits
from mri_seg.preprocess import normalise_image, resize_pair, scaled_size
from mri_seg.training.samplers import DistributedWeightedSampler, build_train_sampler, oversample_weights


def _write_slice(folder: Path, pid: str, idx: int, image: np.ndarray, mask: np.ndarray) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    img_path, mask_path = folder / f"{pid}_{idx}.tif", folder / f"{pid}_{idx}_mask.tif"
    cv2.imwrite(str(img_path), image)
    cv2.imwrite(str(mask_path), mask)
    return {
        "patient_id": pid, "case_id": pid[:12], "institution": "XX", "slice_index": idx,
        "image_path": str(img_path), "mask_path": str(mask_path), "height": image.shape[0],
        "width": image.shape[1], "channels": 3, "tumour_pixels": int((mask > 0).sum()),
        "has_tumour": bool(mask.any()),
    }  # fmt: skip


@pytest.fixture()
def tiny_frame(tmp_path: Path) -> pd.DataFrame:
    """Two patients x 3 slices of 32x32, written out of order; slice 2 of each has a tumour."""
    rng = np.random.default_rng(0)
    rows = []
    for pid in ("TCGA_XX_0002_20000101", "TCGA_XX_0001_20000101"):
        for idx in (3, 1, 2):
            image = np.zeros((32, 32, 3), np.uint8)
            image[4:28, 4:28] = rng.integers(10, 250, size=(24, 24, 3), dtype=np.uint8)
            mask = np.zeros((32, 32), np.uint8)
            if idx == 2:
                mask[10:18, 12:20] = 255
            rows.append(_write_slice(tmp_path / pid, pid, idx, image, mask))
    frame = pd.DataFrame(rows)
    assert list(frame.columns) == MANIFEST_COLUMNS
    return frame


def test_items_have_agreed_shapes_dtypes_and_order(tiny_frame):
    ds = SliceDataset(tiny_frame, scale=0.5, cache_in_memory=False)
    assert len(ds) == 6
    assert ds.patient_ids[:3] == ["TCGA_XX_0001_20000101"] * 3 and ds.slice_indices[:3] == [1, 2, 3]
    item = ds[1]
    assert item["image"].dtype == torch.float32 and tuple(item["image"].shape) == (3, 16, 16)
    assert item["mask"].dtype == torch.float32 and tuple(item["mask"].shape) == (1, 16, 16)
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["mask"].sum().item() == 16  # 8x8 square at half size, nearest neighbour
    assert item["patient_id"] == "TCGA_XX_0001_20000101" and item["slice_index"] == 2 and item["index"] == 1
    assert ds.has_tumour.tolist() == [False, True, False] * 2


def test_normalisation_is_the_shared_function_on_resized_uint8(tiny_frame):
    ds = SliceDataset(tiny_frame, scale=0.5, cache_in_memory=True)
    raw, _ = ds.raw(0)
    assert raw.dtype == np.uint8 and raw.shape == (16, 16, 3)
    expected = normalise_image(raw, "zscore_nonzero").transpose(2, 0, 1)
    np.testing.assert_array_equal(ds[0]["image"].numpy(), expected)
    fg = ds[0]["image"][0] != 0
    assert abs(ds[0]["image"][0][fg].mean().item()) < 1e-4
    assert ds[0]["image"][0][fg].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)


def test_cache_and_disk_reads_agree(tiny_frame):
    cached = SliceDataset(tiny_frame, scale=0.5, cache_in_memory=True)
    direct = SliceDataset(tiny_frame, scale=0.5, cache_in_memory=False)
    for i in range(len(cached)):
        assert torch.equal(cached[i]["image"], direct[i]["image"])
        assert torch.equal(cached[i]["mask"], direct[i]["mask"])


def test_cached_2p5d_inputs_are_built_once_read_only_and_match_an_uncached_dataset(tiny_frame):
    """With the in-memory cache each row's stacked input is built once and shared by every epoch:
    it must be read-only (an in-place write would corrupt later epochs) and equal to a fresh stack."""
    cached = SliceDataset(tiny_frame, scale=0.5, cache_in_memory=True, context_slices=1)
    direct = SliceDataset(tiny_frame, scale=0.5, cache_in_memory=False, context_slices=1)
    first, _ = cached.model_input(1)
    again, _ = cached.model_input(1)
    assert again is first and first.shape == (16, 16, 9)
    assert not first.flags.writeable and not cached.raw(1)[0].flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0, 0] = 1
    for i in range(len(cached)):
        np.testing.assert_array_equal(cached.model_input(i)[0], direct.model_input(i)[0])
        assert torch.equal(cached[i]["image"], direct[i]["image"])
    assert direct.model_input(1)[0] is not direct.model_input(1)[0]  # no cache: nothing kept


def test_native_masks_keep_native_size(tiny_frame):
    ds = SliceDataset(tiny_frame, scale=0.5, keep_native_masks=True, cache_in_memory=False)
    native = ds.native_mask(1)
    assert native.dtype == bool and native.shape == (32, 32) and native.sum() == 64


def test_resize_pair_uses_area_for_images_and_nearest_for_masks():
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, ::2] = 200  # stripes: area averaging gives 100, nearest would give 0 or 200
    mask = np.zeros((8, 8), np.uint8)
    mask[:, ::2] = 1
    img, msk = resize_pair(image, mask, 0.5)
    assert img.shape == (4, 4, 3) and (img == 100).all()
    assert set(np.unique(msk)) <= {0, 1}
    assert scaled_size(256, 256, 0.5) == (128, 128)
    with pytest.raises(ValueError, match="scale"):
        scaled_size(256, 256, 0.0)


def test_unknown_normalisation_fails_early(tiny_frame):
    with pytest.raises(ValueError, match="normalisation"):
        SliceDataset(tiny_frame, normalisation="minmax", cache_in_memory=False)


def test_unreadable_slice_names_the_file(tiny_frame, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    frame = tiny_frame.copy()
    frame.loc[0, "image_path"] = str(broken)
    ds = SliceDataset(frame, cache_in_memory=False)
    with pytest.raises(Exception, match="broken.tif"):
        ds[[i for i, p in enumerate(ds.frame["image_path"]) if p == str(broken)][0]]


def test_build_dataset_uses_the_split(synthetic_run):
    cfg = load_config(None, ["data.scale=0.5", "data.cache_in_memory=false"])
    splits = read_splits(synthetic_run)
    train = build_dataset(synthetic_run, "train", cfg, train=True)
    val = build_dataset(synthetic_run, "val", cfg, train=False)
    assert set(train.patient_ids) == set(splits.loc[splits["split"] == "train", "patient_id"])
    assert set(val.patient_ids) == set(splits.loc[splits["split"] == "val", "patient_id"])
    assert train.augment is not None and val.augment is None
    item = val[0]
    h, w = val.native_mask(0).shape
    assert tuple(item["image"].shape[1:]) == scaled_size(h, w, 0.5)
    # augmentation changes training items but keeps masks binary
    train.set_seed(0)
    assert set(torch.cat([train[i]["mask"].unique() for i in range(5)]).tolist()) <= {0.0, 1.0}


# --------------------------------------------------------------------------- samplers


def test_oversample_weights_give_requested_tumour_fraction():
    has_tumour = np.array([True] * 10 + [False] * 90)
    w = oversample_weights(has_tumour, 0.5)
    assert w.sum() == pytest.approx(1.0)
    assert w[has_tumour].sum() == pytest.approx(0.5)
    sampler = DistributedWeightedSampler(w, seed=3)
    draws = np.array([i for e in range(20) for i in (sampler.set_epoch(e), list(sampler))[1]])
    assert abs(has_tumour[draws].mean() - 0.5) < 0.05
    assert np.allclose(oversample_weights(np.ones(4, bool), 0.7), 0.25)  # one class only: uniform
    with pytest.raises(ValueError, match="tumour_oversample"):
        oversample_weights(has_tumour, 1.0)


def test_patient_balance_shares_the_tumour_draws_between_patients():
    # patient a: 30 tumour slices, b: 3 (a small tumour), c: none; 37 empty slices in all
    ids = ["a"] * 40 + ["b"] * 10 + ["c"] * 20
    has_tumour = np.array([True] * 30 + [False] * 10 + [True] * 3 + [False] * 7 + [False] * 20)
    by_slice = oversample_weights(has_tumour, 0.6, ids, patient_balance=0.0)
    by_patient = oversample_weights(has_tumour, 0.6, ids, patient_balance=1.0)
    half = oversample_weights(has_tumour, 0.6, ids, patient_balance=0.5)
    a, b = np.arange(70) < 30, (np.arange(70) >= 40) & (np.arange(70) < 43)
    for w in (by_slice, by_patient, half):
        assert w.sum() == pytest.approx(1.0)
        assert w[has_tumour].sum() == pytest.approx(0.6)  # the tumour fraction does not move
        assert np.allclose(w[~has_tumour], 0.4 / 37)  # nor the empty slices' weights
    assert np.allclose(by_slice[has_tumour], 0.6 / 33)  # every tumour slice alike: the small tumour gets 3/33
    assert by_patient[a].sum() == pytest.approx(0.3) and by_patient[b].sum() == pytest.approx(0.3)
    assert np.allclose(by_patient[b], 0.1)  # each of its 3 slices drawn 10x as often as one of a's 30
    assert np.allclose(half, (by_slice + by_patient) / 2)
    assert np.array_equal(oversample_weights(has_tumour, 0.6, None, 0.0), by_slice)  # ids not needed at 0
    with pytest.raises(ValueError, match="one patient id per slice"):
        oversample_weights(has_tumour, 0.6, ids[:-1], patient_balance=1.0)
    with pytest.raises(ValueError, match="tumour_patient_balance"):
        oversample_weights(has_tumour, 0.6, ids, patient_balance=1.5)
    sampler = build_train_sampler(has_tumour, 0.6, 1, 0, seed=2, patient_ids=ids, patient_balance=1.0)
    draws = np.array([i for e in range(30) for i in (sampler.set_epoch(e), list(sampler))[1]])
    assert abs(np.isin(draws, np.flatnonzero(b)).mean() - 0.3) < 0.05  # the small tumour: 30% of the draws


def test_samplers_shard_across_ranks_and_depend_only_on_epoch():
    has_tumour = np.array([i % 4 == 0 for i in range(50)])
    for frac in (0.0, 0.5):
        shards = [build_train_sampler(has_tumour, frac, 2, r, seed=1) for r in range(2)]
        for s in shards:
            s.set_epoch(4)
        a, b = list(shards[0]), list(shards[1])
        assert len(a) == len(b) == 25
        if frac == 0.0:
            assert sorted(a + b) == list(range(50))  # a permutation, split in two
        again = build_train_sampler(has_tumour, frac, 2, 0, seed=1)
        again.set_epoch(4)
        assert list(again) == a
        again.set_epoch(5)
        assert list(again) != a


@pytest.mark.parametrize("method", ["zscore_volume", "zscore_head"])
def test_skull_stripped_slices_are_normalised_with_the_stripped_volumes_statistics(tmp_path, method):
    """Inference of a skull-stripped scan z-scores it without the scalp; training of a stripped slice must too
    (zscore_head: with the head threshold of the stripped volume, as inference derives it)."""
    from mri_seg.data.augment import brain_keep_mask, build_augmentation
    from mri_seg.preprocess import Head, volume_stats

    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    rows = []
    for idx in (1, 2, 3):
        image = np.zeros((64, 64, 3), np.uint8)
        image[r < 28] = 220  # bright scalp
        image[r < 25] = 30  # skull
        image[r < 22] = 100 + 10 * idx  # brain
        rows.append(_write_slice(tmp_path / "P", "TCGA_XX_0001_20000101", idx, image, np.zeros((64, 64), np.uint8)))
    frame = pd.DataFrame(rows)
    cfg = load_config(None, ["augment.skull_strip.p=1.0", "augment.skull_strip.erode=[4, 4]", "augment.hflip_p=0",
                             "augment.affine.p=0", "augment.missing_sequence_p=0", "augment.intensity.p=0",
                             "augment.intensity.noise_p=0", "augment.elastic.p=0"])  # fmt: skip
    ds = SliceDataset(frame, normalisation=method, augment=build_augmentation(cfg.augment))
    ds.set_seed(0)
    item = ds[1]
    assert ds.augment.stripped
    keeps = [brain_keep_mask(ds.raw(j)[0][..., 1], 4) for j in range(3)]
    assert all(k[r < 20].all() and not k[r >= 25].any() for k in keeps)  # brain kept, scalp gone
    stripped = [ds.raw(j)[0] * k[..., None].astype(np.uint8) for j, k in enumerate(keeps)]  # a stripped scan
    head = Head.of_volume(stripped, 3) if method == "zscore_head" else None
    expected = normalise_image(stripped[1], method, volume_stats(stripped, head=head), head=head)
    np.testing.assert_allclose(item["image"].numpy().transpose(1, 2, 0), expected, atol=0.05)
    whole = [ds.raw(j)[0] for j in range(3)]
    whole_head = Head.of_volume(whole, 3) if method == "zscore_head" else None
    unstripped = normalise_image(stripped[1], method, volume_stats(whole, head=whole_head), head=head)
    assert np.abs(item["image"].numpy().transpose(1, 2, 0) - unstripped).max() > 0.5
