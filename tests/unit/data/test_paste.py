"""Tumour copy-paste (augment.tumour_paste): where a tumour fits, what the pasted slice and mask are, donors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mri_seg.config import ConfigError, load_config
from mri_seg.config.schema import TumourPasteConfig
from mri_seg.data.dataset import SliceDataset, dataset_from_frame
from mri_seg.data.paste import Donor, SliceHead, TumourPaste, build_paste, fits, paste_tumour

SIZE = 64


def _head(radius: int = 26) -> np.ndarray:
    head = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(head, (SIZE // 2, SIZE // 2), radius, 1, -1)
    return head.astype(bool)


def _disc(centre: tuple[int, int], radius: int) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(m, centre, radius, 1, -1)
    return m


def _stack(values: tuple[int, int, int], slices: int = 3) -> np.ndarray:
    """``SIZE x SIZE x 3*slices`` uint8: a head of constant sequences ``values``, 0 outside it."""
    one = np.zeros((SIZE, SIZE, 3), np.uint8)
    one[_head()] = values
    return np.concatenate([one] * slices, axis=2)


def test_a_tumour_fits_inside_the_head_away_from_the_slices_own_tumour() -> None:
    head, empty = _head(), np.zeros((SIZE, SIZE), np.uint8)
    assert fits(empty, head, _disc((32, 32), 6))
    assert not fits(empty, head, _disc((56, 32), 6))  # mostly outside the head
    assert not fits(empty, head, _disc((32, 11), 4), margin=4)  # inside the head, on its rim
    assert fits(empty, head, _disc((32, 11), 4), margin=0)
    assert not fits(empty, head, _disc((32, 32), 2), min_pixels=20)  # 13 pixels
    own = _disc((32, 44), 4)
    assert not fits(own, head, _disc((32, 34), 5))  # touches the slice's own tumour (a 1-pixel gap counts)
    assert fits(own, head, _disc((32, 24), 5))


def test_paste_puts_each_stacked_slice_of_the_donor_in_its_place_matched_in_intensity() -> None:
    recipient = _stack((100, 120, 80))
    donor_image = _stack((50, 240, 40))  # heads of other intensities...
    centre = _disc((30, 30), 6)
    masks = np.stack([_disc((30, 30), 3), centre, np.zeros_like(centre)], axis=2)  # the tumour shrinks, then ends
    tumour_value = np.array([25, 60, 10], np.uint8)  # ...and a tumour in them
    for b in range(3):
        donor_image[masks[..., b] > 0, 3 * b : 3 * b + 3] = tumour_value
    donor = Donor(donor_image, masks, medians=np.array([50.0, 240.0, 40.0], np.float32))
    medians = np.array([100.0, 120.0, 80.0], np.float32)
    mask = _disc((44, 44), 3)
    out, out_mask = paste_tumour(recipient, mask, medians, donor, channels_per_slice=3, feather=0.0)
    np.testing.assert_array_equal(out_mask, np.maximum(mask, centre))  # the union; the centre slice's tumour
    factors = np.array([2.0, 0.5, 2.0])  # recipient / donor medians
    expected = np.rint(tumour_value * factors)
    np.testing.assert_array_equal(out[centre > 0, 3:6], np.tile(expected, (int(centre.sum()), 1)))
    np.testing.assert_array_equal(out[masks[..., 0] > 0, 0:3], np.tile(expected, (int(masks[..., 0].sum()), 1)))
    outside = centre == 0
    np.testing.assert_array_equal(out[outside], recipient[outside])  # feather 0: nothing else changes
    np.testing.assert_array_equal(out[..., 6:9], recipient[..., 6:9])  # no tumour in that donor slice
    assert (out[~_head()] == 0).all()  # the background stays background


def test_the_matching_factor_is_clipped_and_the_edge_feathered() -> None:
    recipient = _stack((100, 100, 100), slices=1)
    donor_image = _stack((10, 10, 10), slices=1)
    centre = _disc((32, 32), 6)
    donor_image[centre > 0] = 20
    donor = Donor(donor_image, centre[..., None], medians=np.array([10.0, 10.0, 10.0], np.float32))
    out, _ = paste_tumour(recipient, np.zeros_like(centre), np.array([100.0] * 3, np.float32), donor, 3, feather=1.5)
    assert (out[32, 32] == 40).all()  # 20 x 2, the factor clipped from 10 to 2
    just_outside = out[32, 32 + 7]
    assert (just_outside > 40).all() and (just_outside < 100).all()  # between the tumour and the recipient
    assert (out[32, 32 + 14] == 100).all()  # far from the tumour: unchanged


def test_paste_refuses_a_donor_of_another_shape() -> None:
    donor = Donor(_stack((1, 1, 1), slices=1), _disc((32, 32), 6)[..., None], np.ones(3, np.float32))
    with pytest.raises(ValueError, match="does not match"):
        paste_tumour(_stack((1, 1, 1), slices=3), np.zeros((SIZE, SIZE), np.uint8), np.ones(3, np.float32), donor, 3)


def test_slice_head_medians_are_over_the_flair_head() -> None:
    image = _stack((100, 120, 80), slices=1)
    head = SliceHead.of(image)
    assert head.mask.sum() > 0.9 * _head().sum()
    np.testing.assert_array_equal(head.medians, [100, 120, 80])
    assert SliceHead.of(np.zeros((SIZE, SIZE, 3), np.uint8)).medians is None


def test_donors_come_from_the_same_height_and_draws_repeat_with_the_seed() -> None:
    paste = TumourPaste(TumourPasteConfig(p=0.5, height_window=0.1), seed=3)
    donors, heights = np.array([4, 7, 9]), np.array([0.1, 0.5, 0.55], np.float32)
    picks = {paste.choose(donors, heights, 0.52) for _ in range(50)}
    assert picks == {7, 9}
    assert paste.choose(donors, heights, 0.9) is None

    def draws(seed: int) -> list:
        paste.set_seed(seed)
        return [(paste.fires(), paste.mirror(), paste.choose(donors, heights, 0.5)) for _ in range(20)]

    assert draws(1) == draws(1) and draws(1) != draws(2)
    assert 3 <= sum(f for f, _, _ in draws(1)) <= 17


def test_off_by_default_and_refused_outside_its_range() -> None:
    cfg = load_config(None)
    assert cfg.augment.tumour_paste.p == 0.0
    assert build_paste(cfg.augment.tumour_paste, enabled=True) is None
    on = load_config(None, ["augment.tumour_paste.p=0.3", "augment.tumour_paste.height_window=0.2"])
    paste = build_paste(on.augment.tumour_paste, enabled=True, channels_per_slice=3)
    assert paste is not None and paste.cfg.p == 0.3 and paste.cfg.height_window == 0.2
    assert build_paste(on.augment.tumour_paste, enabled=False) is None  # augment.enabled false: nothing at all
    with pytest.raises(ConfigError, match="tumour_paste.p"):
        load_config(None, ["augment.tumour_paste.p=1.5"])


def _write(folder: Path, pid: str, idx: int, image: np.ndarray, mask: np.ndarray) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    img_path, mask_path = folder / f"{pid}_{idx}.tif", folder / f"{pid}_{idx}_mask.tif"
    cv2.imwrite(str(img_path), image)
    cv2.imwrite(str(mask_path), mask * 255)
    return {
        "patient_id": pid, "case_id": pid[:12], "institution": "XX", "slice_index": idx,
        "image_path": str(img_path), "mask_path": str(mask_path), "height": SIZE, "width": SIZE,
        "channels": 3, "tumour_pixels": int(mask.sum()), "has_tumour": bool(mask.any()),
    }  # fmt: skip


@pytest.fixture()
def two_patients(tmp_path: Path) -> pd.DataFrame:
    """Patient A: 3 slices, no tumour. Patient B: 3 slices, a tumour in slice 2 (left of centre, 50% brighter)."""
    rows = []
    for pid, tumour in (("TCGA_XX_000A_20000101", None), ("TCGA_XX_000B_20000101", _disc((22, 30), 6))):
        for idx in (1, 2, 3):
            image = _stack((100, 120, 80), slices=1)
            mask = np.zeros((SIZE, SIZE), np.uint8)
            if tumour is not None and idx == 2:
                mask = tumour
                image[tumour > 0] = (150, 180, 120)
            rows.append(_write(tmp_path / pid, pid, idx, image, mask))
    return pd.DataFrame(rows)


def _only_paste(p: float) -> list[str]:
    """A config whose only augmentation is the tumour paste at ``p``: 2.5D, at native size."""
    off = ["hflip_p=0", "missing_sequence_p=0", "affine.p=0", "elastic.p=0", "intensity.p=0", "intensity.noise_p=0"]
    return [f"augment.{k}" for k in off] + [
        f"augment.tumour_paste.p={p}", "augment.tumour_paste.height_window=0.5", "data.scale=1.0",
        "data.context_slices=1", "model.in_channels=9", "data.normalisation=zscore_volume",
    ]  # fmt: skip


def test_a_training_slice_gets_another_patients_tumour_and_never_its_own(two_patients) -> None:
    cfg = load_config(None, _only_paste(1.0))
    ds = dataset_from_frame(two_patients, cfg, train=True)
    assert ds.paste is not None
    tumour = _disc((22, 30), 6)
    mirrored = tumour[:, ::-1]
    a_middle = ds.patient_ids.index("TCGA_XX_000A_20000101") + 1  # patient A, slice 2
    for seed in range(12):
        ds.set_seed(seed)
        item = ds[a_middle]
        got = item["mask"][0].numpy().astype(np.uint8)
        # B's tumour, in one hemisphere or the other
        assert np.array_equal(got, tumour) or np.array_equal(got, mirrored)
        image, _ = ds.model_input(a_middle)
        assert not np.array_equal(ds.pasted(a_middle, image, np.zeros_like(got))[0], image)
    b_middle = ds.patient_ids.index("TCGA_XX_000B_20000101") + 1
    for seed in range(5):  # B's only donor is B itself: its slice stays as it was
        ds.set_seed(seed)
        image, mask = ds.model_input(b_middle)
        out, out_mask = ds.pasted(b_middle, image, mask)
        np.testing.assert_array_equal(out, image)
        np.testing.assert_array_equal(out_mask, mask)


def test_validation_data_and_p_zero_never_paste(two_patients) -> None:
    assert dataset_from_frame(two_patients, load_config(None, _only_paste(1.0)), train=False).paste is None
    ds = dataset_from_frame(two_patients, load_config(None, _only_paste(0.0)), train=True)
    assert ds.paste is None
    a_middle = ds.patient_ids.index("TCGA_XX_000A_20000101") + 1
    assert ds[a_middle]["mask"].sum().item() == 0


def test_pasted_tumour_keeps_its_brightness_relative_to_the_head(two_patients) -> None:
    ds = SliceDataset(two_patients, scale=1.0, normalisation="zscore_volume", augment=None, context_slices=0)
    ds.paste = TumourPaste(TumourPasteConfig(p=1.0, height_window=0.5), channels_per_slice=3, seed=0)
    a_middle = ds.patient_ids.index("TCGA_XX_000A_20000101") + 1
    image, mask = ds.model_input(a_middle)
    out, out_mask = ds.pasted(a_middle, image, mask)
    inside = out_mask > 0
    assert inside.sum() == _disc((22, 30), 6).sum()
    np.testing.assert_array_equal(np.unique(out[inside], axis=0), [[150, 180, 120]])  # same heads: factor 1
