"""3D post-processing on hand-made volumes: small 3D components, largest component only."""

from __future__ import annotations

import numpy as np
import pytest

from mri_seg.config import PostprocessConfig
from mri_seg.evaluation.scoring import EvalOptions, binarise
from mri_seg.postprocess import apply_postprocess, close_slices, filter_components_3d, postprocess


def _volume() -> np.ndarray:
    """A 'tumour' of 3 x 4 x 4 = 48 voxels over slices 1-3, a 2-slice blob of 2 x 2 x 2 = 8 voxels
    touching nothing, a 1-voxel speck, and a diagonal neighbour of the tumour on slice 4."""
    prob = np.zeros((6, 16, 16), np.float32)
    prob[1:4, 2:6, 2:6] = 0.9  # tumour: 48
    prob[4, 6, 6] = 0.8  # touches the tumour's corner (3, 5, 5) diagonally across slices: 26-connected
    prob[2:4, 10:12, 10:12] = 0.7  # blob: 8
    prob[5, 14, 1] = 0.6  # speck: 1
    return prob


def test_min_component_voxels_drops_small_3d_components_only():
    prob = _volume()
    assert postprocess(prob, 0.5).sum() == 48 + 1 + 8 + 1
    kept = postprocess(prob, 0.5, min_component_voxels=8)
    assert kept.sum() == 49 + 8  # tumour with its diagonal neighbour (49) and the 8-voxel blob stay
    assert kept[4, 6, 6] and kept[2, 10, 10] and not kept[5, 14, 1]
    assert postprocess(prob, 0.5, min_component_voxels=9).sum() == 49
    assert postprocess(prob, 0.5, min_component_voxels=50).sum() == 0


def test_3d_components_are_not_per_slice_components():
    prob = np.zeros((4, 8, 8), np.float32)
    prob[:, 3:5, 3:5] = 0.9  # 4 voxels per slice, 16 in 3D
    assert postprocess(prob, 0.5, min_component_pixels=5).sum() == 0  # per slice: each 4-pixel piece is small
    assert postprocess(prob, 0.5, min_component_voxels=16).sum() == 16  # in 3D it is one 16-voxel component


def test_largest_only_keeps_the_component_everything_else_is_not_connected_to():
    prob = _volume()
    largest = postprocess(prob, 0.5, largest_only=True)
    expected = np.zeros_like(largest)
    expected[1:4, 2:6, 2:6] = True
    expected[4, 6, 6] = True
    np.testing.assert_array_equal(largest, expected)
    # a threshold that removes the tumour leaves the blob as the largest
    prob[1:4, 2:6, 2:6] = 0.55
    assert postprocess(prob, 0.6, largest_only=True).sum() == 8
    # both filters: too-small components first, then the largest of the rest (none left here)
    assert postprocess(prob, 0.6, min_component_voxels=9, largest_only=True).sum() == 0


def test_largest_only_ties_and_empty_volumes():
    vol = np.zeros((2, 6, 6), bool)
    vol[0, 0, 0] = vol[1, 5, 5] = True  # two 1-voxel components
    out = filter_components_3d(vol, largest_only=True)
    assert out.sum() == 1 and out[0, 0, 0]  # first in label order
    empty = np.zeros((3, 4, 4), bool)
    assert not filter_components_3d(empty, 5, True).any()
    assert filter_components_3d(vol, 0, False) is vol  # off: untouched


def test_2d_image_is_a_one_slice_volume():
    prob = np.zeros((10, 10), np.float32)
    prob[1:4, 1:4] = 0.9  # 9 pixels
    prob[7, 7] = prob[8, 8] = 0.9  # diagonal pair: one 8-connected component of 2
    assert postprocess(prob, 0.5, min_component_voxels=3).sum() == 9
    assert postprocess(prob, 0.5, largest_only=True).sum() == 9
    assert postprocess(prob, 0.5, min_component_voxels=2).shape == (10, 10)


def test_evaluation_and_inference_read_the_same_settings():
    prob = _volume()
    pp = PostprocessConfig(threshold=0.5, min_component_voxels=8, largest_only=False)
    options = EvalOptions.from_config(pp)
    assert options.min_component_voxels == 8 and options.largest_only is False
    np.testing.assert_array_equal(binarise(prob, options), apply_postprocess(prob, pp))
    pp.largest_only = True
    np.testing.assert_array_equal(binarise(prob, EvalOptions.from_config(pp)), apply_postprocess(prob, pp))
    assert apply_postprocess(prob, pp).sum() == 49
    with pytest.raises(ValueError, match="min_component_voxels must be >= 0"):
        EvalOptions(min_component_voxels=-1)
    with pytest.raises(ValueError, match="min_component_voxels must be >= 0"):
        postprocess(prob, 0.5, min_component_voxels=-1)


def _small_confident_and_large_doubtful() -> np.ndarray:
    """A small confident tumour (2x3x3 = 18 voxels at 0.95) and a larger doubtful blob (3x4x4 = 48 at 0.55)."""
    prob = np.zeros((6, 12, 12), np.float32)
    prob[1:3, 1:4, 1:4] = 0.95
    prob[2:5, 6:10, 6:10] = 0.55
    return prob


def test_component_rule_mass_keeps_the_most_probable_component_not_the_most_voxels():
    prob = _small_confident_and_large_doubtful()
    by_size = postprocess(prob, 0.5, largest_only=True)
    assert by_size.sum() == 48 and not by_size[1:3, 1:4, 1:4].any()  # the doubtful blob wins on voxels
    by_mass = postprocess(prob, 0.5, largest_only=True, component_rule="mass")
    # mass: 18 x 0.95 = 17.1 < 48 x 0.55 = 26.4, so the blob still wins here ...
    assert by_mass.sum() == 48
    prob[2:5, 6:10, 6:10] = 0.3 + 0.21  # ... but at 0.51 per voxel (24.5) against a surer tumour:
    prob[1:3, 1:4, 1:4] = 1.0
    prob[3, 1:4, 1:4] = 1.0  # 27 voxels at 1.0 (27.0) vs 48 at 0.51 (24.5)
    assert postprocess(prob, 0.5, largest_only=True).sum() == 48  # size: the blob
    kept = postprocess(prob, 0.5, largest_only=True, component_rule="mass")
    assert kept.sum() == 27 and kept[1:4, 1:4, 1:4].all()  # mass: the tumour


def test_keep_ratio_also_keeps_components_scoring_close_to_the_best():
    prob = _small_confident_and_large_doubtful()  # masses 17.1 and 26.4: ratio 0.65
    assert postprocess(prob, 0.5, largest_only=True, component_rule="mass", keep_ratio=0.7).sum() == 48
    assert postprocess(prob, 0.5, largest_only=True, component_rule="mass", keep_ratio=0.6).sum() == 66
    assert postprocess(prob, 0.5, largest_only=True, keep_ratio=0.3).sum() == 66  # sizes 18 / 48 = 0.375
    with pytest.raises(ValueError, match="keep_ratio must be in"):
        postprocess(prob, 0.5, largest_only=True, keep_ratio=0.0)
    with pytest.raises(ValueError, match="component_rule must be one of size, mass"):
        postprocess(prob, 0.5, largest_only=True, component_rule="peak")
    with pytest.raises(ValueError, match="component_rule must be one of"):
        EvalOptions(component_rule="peak")


def test_evaluation_and_inference_apply_the_component_rule_alike():
    prob = _small_confident_and_large_doubtful()
    pp = PostprocessConfig(threshold=0.5, largest_only=True, component_rule="mass", keep_ratio=0.6)
    np.testing.assert_array_equal(binarise(prob, EvalOptions.from_config(pp)), apply_postprocess(prob, pp))
    assert apply_postprocess(prob, pp).sum() == 66


def test_batch_inference_filters_3d_components_of_the_whole_scan(synthetic_dir, tmp_path):
    import cv2
    from untrained import tiny_config, write_untrained_checkpoint

    from mri_seg.pipelines.infer import main as infer_main

    ckpt = write_untrained_checkpoint(tmp_path / "ckpt.pt", tiny_config(scale=0.5), seed=3)
    patient = sorted(p for p in synthetic_dir.iterdir() if p.is_dir())[0]

    def masks(out, *extra):
        assert infer_main(["--checkpoint", str(ckpt), "--input", str(patient), "--output", str(out), "--device", "cpu",
                           "--no-progress", "--threshold", "0.5", *extra]) == 0  # fmt: skip
        files = sorted((out / patient.name).glob("*_mask.tif"), key=lambda p: int(p.stem.split("_")[-2]))
        return np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) > 0 for f in files])

    plain = masks(tmp_path / "plain")
    largest = masks(tmp_path / "largest", "--set", "infer.postprocess.largest_only=true")
    assert plain.sum() > largest.sum() > 0  # an untrained model predicts scattered components
    np.testing.assert_array_equal(largest, filter_components_3d(plain, largest_only=True))


def _partly_found_tumour() -> np.ndarray:
    """A confident tumour core (0.9) whose rest has a doubtful score (0.2), and a doubtful blob (0.2)
    apart from it: the large heterogeneous tumour found in part, with noise elsewhere."""
    prob = np.zeros((4, 16, 16), np.float32)
    prob[0:3, 2:10, 2:10] = 0.2  # the whole tumour: 3 x 8 x 8 = 192 voxels, mostly doubtful
    prob[1, 4:7, 4:7] = 0.9  # its confident core: 9 voxels
    prob[3, 12:15, 12:15] = 0.2  # a doubtful blob touching nothing: 9 voxels
    return prob


def test_grow_threshold_completes_the_kept_component_and_adds_nothing_apart_from_it():
    prob = _partly_found_tumour()
    assert postprocess(prob, 0.5, largest_only=True).sum() == 9  # the core only
    grown = postprocess(prob, 0.5, largest_only=True, grow_threshold=0.15)
    expected = np.zeros(prob.shape, bool)
    expected[0:3, 2:10, 2:10] = True
    np.testing.assert_array_equal(grown, expected)  # the tumour, not the blob at 0.2 elsewhere
    # a plain low threshold would also keep the blob (here the tumour is larger, so largest_only drops it,
    # but without largest_only it stays)
    assert postprocess(prob, 0.15).sum() == 192 + 9
    assert postprocess(prob, 0.5, grow_threshold=0.15).sum() == 192  # without largest_only: grown, blob not seeded


def test_grow_threshold_off_at_zero_or_at_or_above_the_threshold():
    prob = _partly_found_tumour()
    for grow in (0.0, 0.5, 0.7):
        assert postprocess(prob, 0.5, largest_only=True, grow_threshold=grow).sum() == 9
    assert postprocess(prob, 0.5, largest_only=True, grow_threshold=0.25).sum() == 9  # the rest is below 0.25
    assert not postprocess(np.full((2, 4, 4), 0.3, np.float32), 0.5, grow_threshold=0.1).any()  # no seed: nothing
    with pytest.raises(ValueError, match="grow_threshold"):
        postprocess(prob, 0.5, grow_threshold=1.5)


def test_grow_threshold_grows_across_slices_and_in_2d_images():
    prob = np.zeros((3, 8, 8), np.float32)
    prob[0, 1:3, 1:3] = 0.9  # seed on slice 0
    prob[1, 3, 3] = 0.3  # diagonal neighbour across slices (26-connected)
    prob[2, 4:6, 4:6] = 0.3  # connected to it on the next slice
    grown = postprocess(prob, 0.5, grow_threshold=0.25)
    assert grown.sum() == 4 + 1 + 4 and grown[2, 5, 5]
    image = prob[0] + prob[2]  # a 2D image: 8-connected growth
    assert postprocess(image, 0.5, grow_threshold=0.25).sum() == 4  # the 0.3 block does not touch the seed
    image[3, 3] = 0.3  # now it does, diagonally
    assert postprocess(image, 0.5, grow_threshold=0.25).sum() == 4 + 1 + 4


def test_grow_threshold_is_read_by_evaluation_and_inference_alike():
    prob = _partly_found_tumour()
    pp = PostprocessConfig(threshold=0.5, largest_only=True, grow_threshold=0.15)
    options = EvalOptions.from_config(pp)
    assert options.grow_threshold == 0.15
    np.testing.assert_array_equal(binarise(prob, options), apply_postprocess(prob, pp))
    assert binarise(prob, options).sum() == 192
    with pytest.raises(ValueError, match="grow_threshold"):
        EvalOptions(grow_threshold=-0.1)


def _ring_around_a_cyst() -> np.ndarray:
    """Two slices of a tumour found as a ring (p 0.9) around a core scored 0.05 (a cyst the model misses),
    a notch in the ring on the second slice (not enclosed), and a separate small blob."""
    prob = np.zeros((2, 16, 16), np.float32)
    prob[:, 2:11, 2:11] = 0.9
    prob[:, 4:9, 4:9] = 0.05  # the core: 25 pixels per slice
    prob[1, 6, 2:4] = 0.05  # slice 1: the ring is open to the outside at row 6
    prob[0, 13:15, 13:15] = 0.9
    return prob


def test_fill_holes_fills_enclosed_cores_slice_by_slice_and_nothing_open():
    prob = _ring_around_a_cyst()
    ring = postprocess(prob, 0.5, largest_only=True)
    assert ring[0].sum() == 81 - 25 and ring[1].sum() == 81 - 25 - 2
    filled = postprocess(prob, 0.5, largest_only=True, fill_holes=True)
    assert filled[0].sum() == 81 and filled[0, 4:9, 4:9].all()  # the enclosed core is tumour
    np.testing.assert_array_equal(filled[1], ring[1])  # an open ring encloses nothing
    assert not filled[0, 13:15, 13:15].any()  # filling comes after component selection: the blob stays dropped
    image = postprocess(prob[0], 0.5, fill_holes=True)  # a 2D image
    assert image.sum() == 81 + 4


def test_fill_holes_is_read_by_evaluation_and_inference_alike():
    prob = _ring_around_a_cyst()
    pp = PostprocessConfig(threshold=0.5, largest_only=True, fill_holes=True)
    options = EvalOptions.from_config(pp)
    assert options.fill_holes and not EvalOptions().fill_holes
    np.testing.assert_array_equal(binarise(prob, options), apply_postprocess(prob, pp))
    assert binarise(prob, options).sum() == 81 + 81 - 25 - 2


def _partly_found_and_its_flair_view() -> tuple[np.ndarray, np.ndarray]:
    """3-sequence probabilities that find 2 x 4 x 4 = 32 voxels of a lesion, and a FLAIR view that finds
    all of it (2 x 8 x 8 = 128: 4x) plus a blob apart from it and a barely larger rim around a second,
    false 3-sequence component."""
    prob = np.zeros((3, 20, 20), np.float32)
    prob[0:2, 2:6, 2:6] = 0.9  # found part: 32 voxels
    prob[2, 14:16, 14:16] = 0.8  # a second, smaller component (dropped by largest_only)
    view = np.zeros_like(prob)
    view[0:2, 2:10, 2:10] = 0.8  # the whole lesion: 128 voxels, overlaps the found part
    view[2, 15:19, 15:19] = 0.95  # apart from the kept component
    return prob, view


def test_flair_view_adds_overlapping_components_at_least_min_ratio_the_kept_size():
    prob, view = _partly_found_and_its_flair_view()
    base = postprocess(prob, 0.5, largest_only=True)
    assert base.sum() == 32
    fused = postprocess(prob, 0.5, largest_only=True, view_prob=view, view_threshold=0.7, view_min_ratio=1.5)
    assert fused.sum() == 128 and fused[0:2, 2:10, 2:10].all()  # the lesion, completed
    assert not fused[2].any()  # a view component apart from the kept tumour is never added
    np.testing.assert_array_equal(  # the view's component is 4x the kept one: a ratio above that adds nothing
        postprocess(prob, 0.5, largest_only=True, view_prob=view, view_threshold=0.7, view_min_ratio=4.5), base
    )
    np.testing.assert_array_equal(  # below the view threshold: nothing to add
        postprocess(prob, 0.5, largest_only=True, view_prob=view, view_threshold=0.85), base
    )
    np.testing.assert_array_equal(postprocess(prob, 0.5, largest_only=True, view_prob=view), base)  # off by default
    empty = np.zeros_like(prob)
    assert not postprocess(empty, 0.5, largest_only=True, view_prob=view, view_threshold=0.7).any()  # nothing kept
    with pytest.raises(ValueError, match="FLAIR view"):
        postprocess(prob, 0.5, view_prob=view[:2], view_threshold=0.7)
    with pytest.raises(ValueError, match="flair_view_threshold"):
        postprocess(prob, 0.5, view_prob=view, view_threshold=1.5)
    with pytest.raises(ValueError, match="flair_view_min_ratio"):
        postprocess(prob, 0.5, view_prob=view, view_threshold=0.7, view_min_ratio=0.0)


def test_flair_view_is_read_by_evaluation_and_inference_alike():
    prob, view = _partly_found_and_its_flair_view()
    pp = PostprocessConfig(threshold=0.5, largest_only=True, flair_view_threshold=0.7, flair_view_min_ratio=1.5)
    options = EvalOptions.from_config(pp)
    assert options.uses_flair_view and not EvalOptions().uses_flair_view
    assert (options.flair_view_threshold, options.flair_view_min_ratio) == (0.7, 1.5)
    np.testing.assert_array_equal(binarise(prob, options, view), apply_postprocess(prob, pp, view))
    assert binarise(prob, options, view).sum() == 128
    assert binarise(prob, options).sum() == 32  # no view given: the 3-sequence mask
    with pytest.raises(ValueError, match="flair_view_min_ratio"):
        EvalOptions(flair_view_min_ratio=-1.0)


def _two_fragments_with_a_gap(width: int = 40) -> np.ndarray:
    """One slice: two 10 x 6 fragments of a tumour 4 px apart (a dark band scored as background), a blob far
    from them, and a second slice with one fragment touching the image border."""
    prob = np.zeros((2, 30, width), np.float32)
    prob[0, 10:20, 10:16] = 0.9
    prob[0, 10:20, 20:26] = 0.9  # the gap: columns 16..19
    prob[1, 0:6, 0:8] = 0.9  # at the border: a closing must not erode it
    return prob


def test_close_slices_fills_the_gap_between_fragments_and_adds_nothing_apart():
    prob = _two_fragments_with_a_gap()
    planes = prob >= 0.5
    closed = close_slices(planes, 3 / 40)  # radius 3 px of a 40-px-wide slice
    assert closed[0, 11:19, 16:20].all()  # the 4-px gap between the fragments is filled (a disc rounds its ends)
    box = np.zeros_like(closed[0])
    box[10:20, 10:26] = True
    assert not (closed[0] & ~box).any()  # and nothing outside the fragments' span
    assert (closed >= planes).all()  # a closing never removes a pixel
    np.testing.assert_array_equal(closed[1], planes[1])  # a convex fragment at the border stays as it was
    assert close_slices(planes, 1 / 40)[0].sum() == planes[0].sum()  # a 1-px disc does not bridge 4 px
    np.testing.assert_array_equal(close_slices(planes, 0.01), planes)  # under 1 px: off
    with pytest.raises(ValueError, match="close_radius"):
        close_slices(planes, -0.1)


def test_close_radius_is_a_share_of_the_width_and_runs_before_filling_holes():
    prob = _two_fragments_with_a_gap(width=40)
    wide = np.repeat(np.repeat(prob, 2, axis=1), 2, axis=2)  # the same slice at twice the size
    small = postprocess(prob, 0.5, close_radius=3 / 40)
    big = postprocess(wide, 0.5, close_radius=3 / 40)
    assert small[0, 11:19, 16:20].all() and big[0, 22:38, 32:40].all()  # the gap bridged at either size
    assert abs(int(big[0].sum()) - 4 * int(small[0].sum())) <= 0.05 * big[0].sum()  # about the same shape
    assert not close_slices(wide >= 0.5, 3 / 80)[0, 22:38, 32:40].all()  # 3 px of the wide slice: 8 px not bridged
    ring = np.zeros((1, 30, 30), np.float32)
    ring[0, 5:25, 5:25] = 0.9
    ring[0, 9:21, 9:21] = 0.0  # a cyst...
    ring[0, 13:17, 5:9] = 0.0  # ...open to the outside through a 4-px gap in the rim
    assert not postprocess(ring, 0.5, fill_holes=True)[0, 9:21, 9:21].any()  # open: filling alone does nothing
    assert postprocess(ring, 0.5, fill_holes=True, close_radius=3 / 30)[0, 9:21, 9:21].all()  # closed, then filled
    assert not postprocess(ring, 0.5, close_radius=3 / 30)[0, 11:19, 11:19].any()  # closing alone leaves the cyst


def test_close_radius_is_read_by_evaluation_and_inference_alike():
    prob = _two_fragments_with_a_gap()
    pp = PostprocessConfig(threshold=0.5, close_radius=3 / 40)
    options = EvalOptions.from_config(pp)
    assert options.close_radius == pytest.approx(0.075) and EvalOptions().close_radius == 0.0
    np.testing.assert_array_equal(binarise(prob, options), apply_postprocess(prob, pp))
    assert binarise(prob, options)[0, 11:19, 16:20].all()  # the fragments joined
