"""Augmentation: valid albumentations arguments, binary masks, image/mask alignment."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mri_seg.config import AugmentConfig, load_config
from mri_seg.data.augment import Augmenter, build_augmentation

REPO_CONFIGS = ["configs/lgg_unet.yaml", "configs/lgg_cpu.yaml"]


def _strong() -> AugmentConfig:
    """Every transform always on, large parameters: the hardest case for alignment."""
    cfg = AugmentConfig()
    cfg.hflip_p = 0.5
    cfg.affine.p, cfg.affine.rotate, cfg.affine.translate, cfg.affine.scale = 1.0, 30.0, 0.1, [0.8, 1.2]
    cfg.elastic.p, cfg.elastic.alpha, cfg.elastic.sigma = 1.0, 40.0, 5.0
    cfg.intensity.p, cfg.intensity.noise_p = 1.0, 1.0
    return cfg


def _head_and_mask(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.42 * size) ** 2
    mask = (((yy - 0.4 * size) ** 2 / 0.15**2 + (xx - 0.55 * size) ** 2 / 0.1**2) < size**2).astype(np.uint8)
    image = np.zeros((size, size, 3), np.uint8)
    image[head] = rng.integers(40, 200, size=(int(head.sum()), 3), dtype=np.uint8)
    image[:, :, 1] = np.where(mask > 0, 255, image[:, :, 1] * head)  # channel 1 carries the mask
    return image, mask


@pytest.mark.parametrize("path", REPO_CONFIGS)
def test_pipeline_builds_without_any_warning(path, request):
    cfg = load_config(request.config.rootpath / path).augment
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # albumentations 2.x only warns about unknown arguments
        aug = build_augmentation(cfg, seed=0)
        image, mask = _head_and_mask()
        aug(image, mask)
    assert aug is not None


def test_disabled_returns_none():
    cfg = AugmentConfig()
    cfg.enabled = False
    assert build_augmentation(cfg) is None


def test_unknown_argument_is_an_error_not_a_warning():
    import albumentations as A

    with pytest.raises(Exception):
        A.Affine(rotat=10, strict=True)


def test_masks_stay_binary_and_aligned_with_image():
    aug = Augmenter(_strong(), seed=1)
    changed = 0
    for i in range(25):
        image, mask = _head_and_mask(seed=i)
        out_img, out_mask = aug(image, mask)
        assert out_img.dtype == np.uint8 and out_img.shape == image.shape
        assert out_mask.dtype == mask.dtype and out_mask.shape == mask.shape
        assert set(np.unique(out_mask)) <= {0, 1}
        changed += not np.array_equal(out_mask, mask)
        # channel 1 was 255 exactly on the mask: after the same geometric transform the
        # bright region must still coincide with the mask (intensity changes it by little)
        bright = out_img[:, :, 1] > 200
        agree = (bright == (out_mask > 0)).mean()
        assert agree > 0.97, f"sample {i}: image/mask agreement {agree:.3f}"
        if out_mask.sum():
            assert out_img[:, :, 1][out_mask > 0].mean() > 200
    assert changed >= 20  # geometric transforms really ran


def test_background_stays_zero_under_intensity_transforms():
    cfg = AugmentConfig()
    cfg.hflip_p, cfg.affine.p, cfg.elastic.p = 0.0, 0.0, 0.0
    cfg.intensity.p, cfg.intensity.noise_p, cfg.intensity.brightness = 1.0, 1.0, 0.3
    aug = Augmenter(cfg, seed=0)
    image, mask = _head_and_mask()
    out, out_mask = aug(image, mask)
    assert np.array_equal(out_mask, mask)
    assert (out[image == 0] == 0).all()
    assert not np.array_equal(out[image > 0], image[image > 0])


def test_seeding_makes_augmentation_repeatable():
    image, mask = _head_and_mask()
    aug = Augmenter(_strong())
    aug.set_seed(7)
    a = aug(image, mask)
    aug.set_seed(7)
    b = aug(image, mask)
    aug.set_seed(8)
    c = aug(image, mask)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_rejects_non_uint8_images():
    image, mask = _head_and_mask()
    with pytest.raises(TypeError, match="uint8"):
        Augmenter(AugmentConfig())(image.astype(np.float32), mask)


def test_replace_with_flair_copies_flair_over_other_sequences() -> None:
    import albumentations as A

    from mri_seg.data.augment import FLAIR_CHANNEL, ReplaceWithFlair

    image = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30)], axis=-1)
    pipeline = A.Compose([ReplaceWithFlair(p=1.0)], seed=0, strict=True)
    seen = {tuple(int(v) for v in pipeline(image=image)["image"][0, 0]) for _ in range(40)}
    assert seen == {(20, 20, 30), (10, 20, 20), (20, 20, 20)}  # one or both non-FLAIR channels replaced
    assert all(t[FLAIR_CHANNEL] == 20 for t in seen)  # FLAIR itself never changes

    never = A.Compose([ReplaceWithFlair(p=0.0)], seed=0, strict=True)
    np.testing.assert_array_equal(never(image=image)["image"], image)


def _replaced_cases(share: float | None, draws: int = 600) -> dict[tuple[int, ...], int]:
    import albumentations as A

    from mri_seg.data.augment import ReplaceWithFlair

    image = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30)], axis=-1)
    pipeline = A.Compose([ReplaceWithFlair(flair_only_share=share, p=1.0)], seed=0, strict=True)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(draws):
        case = tuple(int(v) for v in pipeline(image=image)["image"][0, 0])
        counts[case] = counts.get(case, 0) + 1
    return counts


def test_flair_only_share_sets_how_often_only_flair_is_left() -> None:
    flair_only, pre_missing, post_missing = (20, 20, 20), (20, 20, 30), (10, 20, 20)
    assert _replaced_cases(1.0) == {flair_only: 600}
    never = _replaced_cases(0.0)
    assert set(never) == {pre_missing, post_missing} and min(never.values()) > 250  # either one, equally often
    mostly = _replaced_cases(0.75)
    assert 0.70 < mostly[flair_only] / 600 < 0.80  # 600 draws: sd 0.018
    assert abs(mostly[pre_missing] - mostly[post_missing]) < 50
    uniform = _replaced_cases(None)  # the default: the three cases equally often
    assert set(uniform) == {flair_only, pre_missing, post_missing}
    assert all(150 < n < 250 for n in uniform.values())


def test_flair_only_share_is_read_from_config_and_checked() -> None:
    from mri_seg.config import ConfigError, load_config
    from mri_seg.data.augment import ReplaceWithFlair, build_augmentation

    def share_of(overrides: list[str]) -> float | None:
        aug = build_augmentation(load_config(None, ["augment.missing_sequence_p=0.4", *overrides]).augment)
        assert aug is not None
        (t,) = [t for t in aug.intensity.transforms if isinstance(t, ReplaceWithFlair)]
        return t.flair_only_share

    assert share_of([]) is None  # uniform
    assert share_of(["augment.flair_only_share=0.75"]) == 0.75
    for bad in ("half", "1.5", "-0.1"):
        with pytest.raises(ConfigError, match="flair_only_share"):
            load_config(None, [f"augment.flair_only_share={bad}"])


def test_missing_sequence_augmentation_is_built_from_config() -> None:
    from mri_seg.config import AugmentConfig
    from mri_seg.data.augment import ReplaceWithFlair, build_augmentation

    with_it = build_augmentation(AugmentConfig(missing_sequence_p=0.3))
    without = build_augmentation(AugmentConfig(missing_sequence_p=0.0))
    assert any(isinstance(t, ReplaceWithFlair) and t.p == 0.3 for t in with_it.intensity.transforms)
    assert not any(isinstance(t, ReplaceWithFlair) for t in without.intensity.transforms)


def _disc_slice(size: int = 96, radius: int = 20, channels: int = 9) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    image = np.full((size, size, channels), 180, np.uint8)
    image[:4] = 0  # background rows outside the head
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius, 1, -1)
    return image, mask


def test_lesion_core_darkens_the_tumour_core_only() -> None:
    import albumentations as A

    from mri_seg.data.augment import LesionCore

    image, mask = _disc_slice()
    out = A.Compose([LesionCore(darken=(0.4, 0.4), core=(0.5, 0.5), p=1.0)], seed=0, strict=True)(image=image, mask=mask)
    centre, rim = out["image"][48, 48], out["image"][48, 48 - 19]
    assert (centre < 180 * 0.6).all() and (centre >= 1).all()  # the core, every channel of the stack
    assert (rim > 150).all()  # the rim keeps (almost) its brightness
    outside = mask == 0
    outside[:4] = False
    assert (out["image"][outside] == 180).all()  # nothing changes outside the tumour
    assert (out["image"][:4] == 0).all()  # background untouched
    np.testing.assert_array_equal(out["mask"], mask)  # the core is tumour: the mask is unchanged


def test_lesion_core_leaves_small_or_absent_tumours_alone() -> None:
    import albumentations as A

    from mri_seg.data.augment import LesionCore

    image, mask = _disc_slice(radius=2)  # 13 pixels < min_pixels
    t = A.Compose([LesionCore(p=1.0)], seed=0, strict=True)
    np.testing.assert_array_equal(t(image=image, mask=mask)["image"], image)
    np.testing.assert_array_equal(t(image=image, mask=np.zeros_like(mask))["image"], image)


def test_lesion_augmentation_is_off_by_default_and_built_from_config() -> None:
    from mri_seg.data.augment import LesionCore

    default = Augmenter(AugmentConfig(), seed=0)
    assert not any(isinstance(t, LesionCore) for t in default.geometric.transforms)
    cfg = load_config(None, ["augment.lesion.p=0.3", "augment.lesion.darken=[0.3,0.5]"]).augment
    lesion = [t for t in Augmenter(cfg, seed=0).geometric.transforms if isinstance(t, LesionCore)]
    assert len(lesion) == 1 and lesion[0].p == 0.3 and lesion[0].darken == (0.3, 0.5)
    assert lesion[0].min_pixels == 40  # the default


def test_lesion_min_pixels_keeps_smaller_tumours_as_they_are() -> None:
    from mri_seg.data.augment import LesionCore

    image, mask = _disc_slice()  # a disc of radius 20: about 1,250 pixels
    cfg = load_config(None, ["augment.lesion.p=1", "augment.lesion.min_pixels=2000"]).augment
    lesion = [t for t in Augmenter(cfg, seed=0).geometric.transforms if isinstance(t, LesionCore)]
    assert lesion[0].min_pixels == 2000
    import albumentations as A

    kept = A.Compose(lesion, seed=0, strict=True)(image=image, mask=mask)["image"]
    np.testing.assert_array_equal(kept, image)  # below min_pixels: no core
    cfg = load_config(None, ["augment.lesion.p=1", "augment.lesion.min_pixels=1000"]).augment
    lesion = [t for t in Augmenter(cfg, seed=0).geometric.transforms if isinstance(t, LesionCore)]
    darkened = A.Compose(lesion, seed=0, strict=True)(image=image, mask=mask)["image"]
    assert (darkened[48, 48] < image[48, 48]).all()  # above it: the core is darkened


def test_lesion_t1_contrast_rescales_pre_and_post_inside_the_tumour_only() -> None:
    import albumentations as A

    from mri_seg.data.augment import LesionT1Contrast

    image, mask = _disc_slice()  # 9 channels: 3 stacked slices of (post, flair, pre), 180 on the head
    image = image.copy()
    image[..., 0::3] = 100  # post-contrast of every stacked slice
    image[..., 2::3] = 120  # pre-contrast
    image[:4] = 0
    t = A.Compose([LesionT1Contrast(scale=(1.5, 1.5), patchy=0.0, p=1.0)], seed=0, strict=True)
    out = t(image=image, mask=mask)["image"]
    centre = out[48, 48]
    np.testing.assert_array_equal(centre[0::3], 150)  # post x 1.5, every stacked slice
    np.testing.assert_array_equal(centre[2::3], 180)  # pre x 1.5
    np.testing.assert_array_equal(out[..., 1::3], image[..., 1::3])  # FLAIR untouched everywhere
    outside = mask == 0
    np.testing.assert_array_equal(out[outside], image[outside])  # nothing outside the tumour, background stays 0
    dark = A.Compose([LesionT1Contrast(scale=(0.1, 0.1), patchy=0.0, p=1.0)], seed=0, strict=True)
    assert (dark(image=image, mask=mask)["image"][48, 48, 0::3] == 10).all()  # a cyst: darker, never 0


def test_lesion_t1_contrast_patchy_changes_part_of_the_tumour() -> None:
    import albumentations as A

    from mri_seg.data.augment import LesionT1Contrast

    image, mask = _disc_slice()
    t = A.Compose([LesionT1Contrast(scale=(2.0, 2.0), patchy=1.0, p=1.0)], seed=3, strict=True)
    out = t(image=image, mask=mask)
    changed = out["image"][..., 0] != image[..., 0]
    share = changed[mask > 0].mean()
    assert 0.2 < share < 0.9, share  # a smooth part of the tumour (30-80% before the soft edge)
    assert not changed[mask == 0].any()
    np.testing.assert_array_equal(out["mask"], mask)


def test_lesion_t1_contrast_needs_a_sequence_besides_flair_and_a_tumour() -> None:
    import albumentations as A

    from mri_seg.data.augment import LesionT1Contrast

    image, mask = _disc_slice()
    one = A.Compose([LesionT1Contrast(channels_per_slice=1, p=1.0, scale=(2.0, 2.0))], seed=0, strict=True)
    np.testing.assert_array_equal(one(image=image, mask=mask)["image"], image)  # FLAIR-only stacks: nothing to change
    t = A.Compose([LesionT1Contrast(p=1.0, scale=(2.0, 2.0))], seed=0, strict=True)
    np.testing.assert_array_equal(t(image=image, mask=np.zeros_like(mask))["image"], image)


def test_lesion_t1_augmentation_is_off_by_default_and_built_from_config() -> None:
    from mri_seg.data.augment import LesionT1Contrast

    assert not any(isinstance(t, LesionT1Contrast) for t in Augmenter(AugmentConfig(), seed=0).geometric.transforms)
    cfg = load_config(None, ["augment.lesion_t1.p=0.3", "augment.lesion_t1.scale=[0.4,2.5]"]).augment
    built = [t for t in Augmenter(cfg, seed=0, channels_per_slice=3).geometric.transforms if isinstance(t, LesionT1Contrast)]
    assert len(built) == 1 and built[0].p == 0.3 and built[0].scale == (0.4, 2.5) and built[0].patchy == 0.5
    with pytest.raises(ValueError, match="lesion_t1.scale"):
        load_config(None, ["augment.lesion_t1.scale=[2.0,0.5]"])


def _bright_tumour_slice() -> tuple[np.ndarray, np.ndarray]:
    """9 channels (3 stacked slices of post, flair, pre): brain 100 on 0 background, a disc tumour
    whose FLAIR is 200 in the first stacked slice, 160 in the second, 220 in the third, T1s 90."""
    image, mask = _disc_slice()
    image = np.where(image > 0, np.uint8(100), np.uint8(0))
    inside = mask > 0
    for c, value in ((1, 200), (4, 160), (7, 220)):
        image[..., c][inside] = value
    image[..., 0::3][inside] = 90
    image[..., 2::3][inside] = 90
    return image, mask


def test_lesion_faint_fades_flair_inside_the_tumour_towards_the_brain_around_it() -> None:
    import albumentations as A

    from mri_seg.data.augment import LesionFaint

    image, mask = _bright_tumour_slice()
    out = A.Compose([LesionFaint(fade=(0.25, 0.25), patchy=0.0, p=1.0)], seed=0, strict=True)(image=image, mask=mask)
    centre = out["image"][48, 48]  # deep inside: the soft edge weighs 1 here
    np.testing.assert_array_equal(centre[1::3], [125, 115, 130])  # 100 + (x - 100) * 0.25, per stacked slice
    np.testing.assert_array_equal(centre[0::3], 90)  # pre- and post-contrast untouched
    np.testing.assert_array_equal(centre[2::3], 90)
    outside = mask == 0
    np.testing.assert_array_equal(out["image"][outside], image[outside])  # nothing outside, background stays 0
    np.testing.assert_array_equal(out["mask"], mask)
    flair = out["image"][..., 1].astype(int)
    assert (flair[mask > 0] >= 100).all() and (flair[mask > 0] <= 200).all()  # between the brain and the tumour
    kept = A.Compose([LesionFaint(fade=(1.0, 1.0), patchy=0.0, p=1.0)], seed=0, strict=True)(image=image, mask=mask)
    np.testing.assert_array_equal(kept["image"], image)  # factor 1: unchanged


def test_lesion_faint_patchy_fades_part_of_the_tumour_and_skips_small_or_no_tumours() -> None:
    import albumentations as A

    from mri_seg.data.augment import LesionFaint

    image, mask = _bright_tumour_slice()
    out = A.Compose([LesionFaint(fade=(0.2, 0.2), patchy=1.0, p=1.0)], seed=3, strict=True)(image=image, mask=mask)
    changed = out["image"][..., 1] != image[..., 1]
    assert 0.2 < changed[mask > 0].mean() < 0.9  # a smooth part of the tumour (30-80% before the soft edge)
    assert not changed[mask == 0].any()
    small = A.Compose([LesionFaint(p=1.0, min_pixels=10_000)], seed=0, strict=True)
    np.testing.assert_array_equal(small(image=image, mask=mask)["image"], image)
    empty = A.Compose([LesionFaint(p=1.0)], seed=0, strict=True)
    np.testing.assert_array_equal(empty(image=image, mask=np.zeros_like(mask))["image"], image)


def test_lesion_faint_is_off_by_default_and_built_from_config() -> None:
    from mri_seg.data.augment import LesionFaint

    assert not any(isinstance(t, LesionFaint) for t in Augmenter(AugmentConfig(), seed=0).intensity.transforms)
    cfg = load_config(None, ["augment.lesion_faint.p=0.3", "augment.lesion_faint.fade=[0.2,0.6]",
                             "augment.lesion_faint.ring=7"]).augment  # fmt: skip
    built = Augmenter(cfg, seed=0, channels_per_slice=3).intensity.transforms
    faint = [t for t in built if isinstance(t, LesionFaint)]
    assert len(faint) == 1 and faint[0].p == 0.3 and faint[0].fade == (0.2, 0.6) and faint[0].ring == 7
    assert faint[0].in_flair_only is False  # the default: FLAIR-only slices stay as they are
    names = [type(t).__name__ for t in built]
    assert names.index("ReplaceWithFlair") < names.index("LesionFaint")  # after the missing sequences
    with pytest.raises(ValueError, match="lesion_faint.fade"):
        load_config(None, ["augment.lesion_faint.fade=[0.8,0.2]"])


def test_lesion_faint_fades_flairs_copies_and_leaves_flair_only_slices_unless_asked() -> None:
    import albumentations as A

    from mri_seg.data.augment import LesionFaint

    image, mask = _bright_tumour_slice()
    one_missing = image.copy()
    one_missing[..., 2::3] = image[..., 1::3]  # pre-contrast missing: a copy of FLAIR in each stacked slice
    out = A.Compose([LesionFaint(fade=(0.25, 0.25), patchy=0.0, in_flair_only=False, p=1.0)], seed=0, strict=True)(
        image=one_missing, mask=mask
    )["image"]
    np.testing.assert_array_equal(out[48, 48, 1::3], [125, 115, 130])  # FLAIR faded as before
    np.testing.assert_array_equal(out[..., 2::3], out[..., 1::3])  # its copy faded alike: still a copy
    np.testing.assert_array_equal(out[..., 0::3], image[..., 0::3])  # post-contrast (present) untouched
    flair_only = image.copy()
    flair_only[..., 0::3] = image[..., 1::3]
    flair_only[..., 2::3] = image[..., 1::3]
    skip = A.Compose([LesionFaint(fade=(0.25, 0.25), patchy=0.0, in_flair_only=False, p=1.0)], seed=0, strict=True)
    np.testing.assert_array_equal(skip(image=flair_only, mask=mask)["image"], flair_only)  # nothing shows it: left
    fade = A.Compose([LesionFaint(fade=(0.25, 0.25), patchy=0.0, in_flair_only=True, p=1.0)], seed=0, strict=True)
    faded = fade(image=flair_only, mask=mask)["image"]
    np.testing.assert_array_equal(faded[48, 48], np.repeat([125, 115, 130], 3))  # every channel, per stacked slice


def test_the_augmenter_fades_after_the_missing_sequences() -> None:
    cfg = load_config(None, ["augment.lesion_faint.p=1.0", "augment.lesion_faint.fade=[0.25,0.25]",
                             "augment.lesion_faint.patchy=0.0", "augment.missing_sequence_p=1.0",
                             "augment.flair_only_share=0.0", "augment.intensity.p=0.0", "augment.affine.p=0.0",
                             "augment.hflip_p=0.0", "augment.lesion.p=0.0", "augment.lesion_t1.p=0.0"]).augment  # fmt: skip
    image, mask = _bright_tumour_slice()
    out, out_mask = Augmenter(cfg, seed=0, channels_per_slice=3)(image, mask)
    np.testing.assert_array_equal(out[48, 48, 1::3], [125, 115, 130])  # faded
    replaced = [c for c in (0, 2) if np.array_equal(out[..., c], out[..., 1])]
    assert len(replaced) == 1  # one sequence missing (flair_only_share 0), and its copy of FLAIR faded too
    np.testing.assert_array_equal(out_mask, mask)


def _head_slice(size: int = 64, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A bright scalp ring, a darker gap (skull) and a brain disc with a tumour, on 0 background."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    image = np.zeros((size, size, channels), np.uint8)
    image[r < 28] = 200  # scalp
    image[r < 25] = 30  # skull
    image[r < 22] = 120  # brain
    mask = ((yy - 30) ** 2 + (xx - 34) ** 2 < 36).astype(np.uint8)
    image[mask > 0] = 180
    return image, mask


def test_skull_strip_removes_the_outside_of_the_head_and_keeps_the_mask() -> None:
    import albumentations as A

    from mri_seg.data.augment import SkullStrip, slice_head_mask

    image, mask = _head_slice()
    head = slice_head_mask(image[..., 1])
    assert head[32, 32] and not head[0, 0] and head.sum() > 0.8 * np.count_nonzero(image[..., 1])
    out = A.Compose([SkullStrip(erode=(4, 4), p=1.0)], seed=0, strict=True)(image=image, mask=mask)
    np.testing.assert_array_equal(out["mask"], mask)
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    assert (out["image"][r >= 25] == 0).all()  # scalp (and the outer skull) gone in every channel
    np.testing.assert_array_equal(out["image"][r < 20], image[r < 20])  # brain and tumour untouched
    stack = np.concatenate([image] * 3, axis=-1)  # 2.5D: one mask from the centre slice, every channel
    out9 = A.Compose([SkullStrip(erode=(4, 4), p=1.0)], seed=0, strict=True)(image=stack, mask=mask)["image"]
    for block in range(3):
        np.testing.assert_array_equal(out9[..., 3 * block:3 * block + 3], out["image"])


def test_skull_strip_leaves_slices_without_a_recognisable_head_alone() -> None:
    import albumentations as A

    from mri_seg.data.augment import SkullStrip

    t = A.Compose([SkullStrip(p=1.0)], seed=0, strict=True)
    empty = np.zeros((32, 32, 3), np.uint8)
    np.testing.assert_array_equal(t(image=empty, mask=empty[..., 0])["image"], empty)
    speckle = np.zeros((32, 32, 3), np.uint8)
    speckle[::4, ::4] = 200  # scattered pixels: the largest component covers a sliver of them
    np.testing.assert_array_equal(t(image=speckle, mask=empty[..., 0])["image"], speckle)


def test_skull_strip_is_off_by_default_and_built_from_config() -> None:
    from mri_seg.data.augment import SkullStrip

    assert not any(isinstance(t, SkullStrip) for t in Augmenter(AugmentConfig(), seed=0).geometric.transforms)
    cfg = load_config(None, ["augment.skull_strip.p=0.3", "augment.skull_strip.erode=[2, 5]"]).augment
    built = [t for t in Augmenter(cfg, seed=0, channels_per_slice=3).geometric.transforms if isinstance(t, SkullStrip)]
    assert len(built) == 1 and built[0].p == 0.3 and built[0].erode == (2, 5)
    with pytest.raises(ValueError, match="augment.skull_strip.erode"):
        load_config(None, ["augment.skull_strip.erode=[5, 2]"])


def _mean_elastic_displacement(alpha: float, sigma: float, size: int = 128, draws: int = 20) -> float:
    """Mean distance (pixels) the elastic warp moves the interior of a ``size`` x ``size`` slice."""
    cfg = AugmentConfig()
    cfg.hflip_p, cfg.affine.p, cfg.intensity.p, cfg.missing_sequence_p = 0.0, 0.0, 0.0, 0.0
    cfg.elastic.p, cfg.elastic.alpha, cfg.elastic.sigma = 1.0, alpha, sigma
    aug = Augmenter(cfg, seed=0)
    yy, xx = np.mgrid[:size, :size]
    # a coordinate image: channel 0 the row, channel 1 the column (x 2 so a pixel is 2 grey levels)
    image = np.stack([yy * 2 // (size // 64), xx * 2 // (size // 64), np.full_like(yy, 100)], -1).astype(np.uint8)
    inner = slice(size // 8, size - size // 8)
    moved = []
    for _ in range(draws):
        out, _ = aug(image, np.zeros((size, size), np.uint8))
        dy = (out[inner, inner, 0].astype(float) - image[inner, inner, 0]) * (size // 64) / 2
        dx = (out[inner, inner, 1].astype(float) - image[inner, inner, 1]) * (size // 64) / 2
        moved.append(np.hypot(dy, dx).mean())
    return float(np.mean(moved))


def test_elastic_alpha_is_a_field_scale_not_pixels() -> None:
    """albumentations 2.x multiplies a smoothed field of [-1, 1] noise by alpha: the config reference
    states the displacement each (alpha, sigma) gives; a release that changes the scale fails here."""
    assert _mean_elastic_displacement(30.0, 6.0) < 1.0  # the old default: almost no warp
    assert 1.5 < _mean_elastic_displacement(300.0, 10.0) < 4.0  # about 2.5 pixels
