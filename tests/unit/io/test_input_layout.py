"""Every reader hands the model the same slices: NIfTI orientation from the affine, sequences by name,
BraTS / nnU-Net case folders. Built like the measurements of issue 10: one patient's TIFF slices
stored as NIfTI in several ways must give the same mask (in world space) as the slices themselves.

The checkpoint is an untrained tiny UNet: random convolutions are neither flip-, transpose- nor
channel-order-invariant, so a slice cut or a channel order that differs from the TIFFs' changes the
mask (each test checks that too, so it cannot pass by accident)."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.orientations import axcodes2ornt, ornt_transform
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import InferConfig
from mri_seg.inference.predictor import Predictor
from mri_seg.io import cases
from mri_seg.io.options import ReadOptions
from mri_seg.io.orientation import STACKED_SLICES_AXCODES, TRAINING_AXCODES, axcodes_affine
from mri_seg.io.registry import discover, read_source
from mri_seg.io.scan import ChannelWarning, OrientationWarning, ScanError
from mri_seg.io.sequences import TRAINING_SEQUENCES, assemble, parse_names
from mri_seg.pipelines._cli import StageError, run_main
from mri_seg.pipelines.infer import main
from mri_seg.training.checkpoint import checkpoint_sequences, load_checkpoint

ZOOMS = (0.9, 0.8, 3.0)  # rows, columns, slices (mm): anisotropic, so a wrong axis shows
ORIGIN = (12.5, -30.0, 7.0)
SAGITTAL_FIRST = ("I", "P", "R")  # a sagittal series: rows head->feet, columns front->back, slices along x
SLICES = 8  # the middle slices of a patient (where the tumour is): enough to show a wrong cut, and fast


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", tiny_config(scale=0.5), seed=3)


@pytest.fixture(scope="module")
def threshold(ckpt, synthetic_dir) -> float:
    """A threshold that cuts the untrained model's probabilities in a non-trivial mask."""
    predictor = Predictor.from_checkpoint(ckpt, device="cpu", infer_cfg=InferConfig())
    volume, _ = _patient(_first_patient(synthetic_dir))
    probs = np.stack(predictor.predict_proba_batch(list(np.moveaxis(volume, 2, 0))))
    return round(float(np.quantile(probs, 0.8)), 6)


def _first_patient(root: Path) -> Path:
    return sorted(p for p in root.iterdir() if p.is_dir())[0]


def _slice_files(folder: Path, count: int | None = SLICES) -> list[Path]:
    """A patient's slice files in slice order: the middle ``count`` of them (all for None)."""
    images = [p for p in folder.glob("*.tif") if not p.stem.endswith("_mask")]
    images = sorted(images, key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    start = max(0, (len(images) - (count or len(images))) // 2)
    return images[start : start + (count or len(images))]


def _patient(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A Kaggle patient as ``H x W x D x 3`` (OpenCV channel order) and its ``H x W x D`` truth."""
    files = _slice_files(folder)
    volume = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files], axis=2)
    truth = np.stack([cv2.imread(str(f.with_name(f.stem + "_mask.tif")), 0) > 0 for f in files], axis=2)
    return volume, truth


def _stored(data: np.ndarray, axcodes: tuple[str, ...]) -> nib.Nifti1Image:
    """The stacked slices (axis codes P, L, S) stored with their array axes along ``axcodes``."""
    image = nib.Nifti1Image(data, axcodes_affine(STACKED_SLICES_AXCODES, ZOOMS, ORIGIN))
    image.header.set_xyzt_units("mm")
    return image.as_reoriented(ornt_transform(axcodes2ornt(STACKED_SLICES_AXCODES), axcodes2ornt(axcodes)))


def _copy_patient(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in _slice_files(src):
        for p in (f, f.with_name(f.stem + "_mask.tif")):
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _run(ckpt: Path, inp: Path, out: Path, *extra: str) -> int:
    return main(["--checkpoint", str(ckpt), "--input", str(inp), "--output", str(out), "--device", "cpu",
                 "--no-progress", *extra])


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).set_index("path")


def _world(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A mask file in RAS+ voxel order with its affine: comparable whatever order it was stored in."""
    image = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(image.dataobj) > 0, image.affine


def _tiff_masks(out: Path, folder: Path) -> np.ndarray:
    names = [f.stem for f in _slice_files(folder)]
    return np.stack([cv2.imread(str(out / folder.name / f"{n}_mask.tif"), 0) > 0 for n in names], axis=2)


# ----------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("data", ["synthetic", "lgg_dev"])
def test_one_volume_stored_three_ways_gives_the_same_mask_in_world_space(
    data, tmp_path, ckpt, threshold, synthetic_dir, request
):
    root = synthetic_dir if data == "synthetic" else request.getfixturevalue("lgg_dev_dir")
    folder = _first_patient(root)
    volume, truth = _patient(folder)
    inp = tmp_path / "in"
    storages = {"tiff_like": STACKED_SLICES_AXCODES, "ras": ("R", "A", "S"), "sagittal_first": SAGITTAL_FIRST}
    for name, axcodes in storages.items():
        (inp / name).mkdir(parents=True)
        image = _stored(volume, axcodes)
        assert nib.aff2axcodes(image.affine) == axcodes
        nib.save(image, str(inp / name / "vol.nii.gz"))
        nib.save(_stored(truth.astype(np.uint8), axcodes), str(inp / name / "vol_mask.nii.gz"))
    _copy_patient(folder, inp / "tiffs" / folder.name)
    out = tmp_path / "out"
    assert _run(ckpt, inp, out, "--threshold", str(threshold), "--with-truth") == 0

    from_tiffs = _tiff_masks(out / "tiffs", folder)
    assert 0.02 < from_tiffs.mean() < 0.98  # a mask with something to compare
    reference, reference_affine = _world(out / "tiff_like" / "vol_mask.nii.gz")
    assert np.array_equal(np.asarray(nib.load(str(out / "tiff_like" / "vol_mask.nii.gz")).dataobj) > 0, from_tiffs)
    t = _table(out)
    for name, axcodes in storages.items():
        written = nib.load(str(out / name / "vol_mask.nii.gz"))
        stored = nib.load(str(inp / name / "vol.nii.gz"))
        assert written.shape == stored.shape[:3] and nib.aff2axcodes(written.affine) == axcodes  # input's voxel order
        np.testing.assert_allclose(written.affine, stored.affine)
        mask, affine = _world(out / name / "vol_mask.nii.gz")
        np.testing.assert_allclose(affine, reference_affine, atol=1e-5)
        assert np.array_equal(mask, reference), name
        assert t.loc[f"{name}/vol.nii.gz", "dice"] == t.loc[f"tiffs/{folder.name}", "dice"]
        height, width, depth = volume.shape[:3]
        assert t.loc[f"{name}/vol.nii.gz", "shape"] == f"{depth}x{height}x{width}x3"  # as sliced: the TIFFs' layout

    # the old behaviour (slices cut along stored axis 2) gives another mask for the RAS and sagittal copies
    control = tmp_path / "control"
    assert _run(ckpt, inp / "ras", control / "ras", "--threshold", str(threshold), "--set", "infer.nifti_axis=2") == 0
    assert not np.array_equal(_world(control / "ras" / "vol_mask.nii.gz")[0], reference)
    assert _run(ckpt, inp / "sagittal_first", control / "sag", "--threshold", str(threshold),
                "--set", "infer.nifti_axis=2") == 0  # fmt: skip
    assert not np.array_equal(_world(control / "sag" / "vol_mask.nii.gz")[0], reference)


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "P", "S"), ("P", "L", "S"), ("S", "R", "P"),
                                     ("I", "P", "R"), ("A", "I", "L")])
def test_every_orientation_reads_as_the_same_slices_and_writes_back_voxel_for_voxel(tmp_path, axcodes):
    rng = np.random.default_rng(0)
    stacked = rng.integers(0, 255, (7, 6, 5, 3), dtype=np.uint8)  # H x W x D x sequences (P, L, S)
    nib.save(_stored(stacked, axcodes), str(tmp_path / "v.nii.gz"))
    (source,) = discover(tmp_path).sources
    scan = read_source(source)
    assert np.array_equal(scan.slices, np.moveaxis(stacked, 2, 0))  # D x H x W x C, as the TIFFs
    assert scan.geometry["layout"].describe() == f"{''.join(axcodes)} -> {''.join(TRAINING_AXCODES)}"
    marker = np.zeros(scan.slices.shape[:3], bool)
    marker[1, 2, 3] = marker[4, 0, 5] = True
    from mri_seg.io.nifti import write_mask_nifti

    write_mask_nifti(tmp_path / "m.nii.gz", marker, scan)
    written = np.asarray(nib.load(str(tmp_path / "m.nii.gz")).dataobj) > 0
    expected = np.asarray(_stored(np.moveaxis(marker, 0, 2).astype(np.uint8), axcodes).dataobj) > 0
    assert np.array_equal(written, expected)


def test_volume_without_affine_is_sliced_in_index_space_with_a_warning(tmp_path, ckpt, capsys):
    data = np.random.default_rng(1).integers(0, 200, (10, 9, 4), dtype=np.uint8)
    image = nib.Nifti1Image(data, None)  # sform and qform codes 0
    assert int(image.header["sform_code"]) == int(image.header["qform_code"]) == 0
    nib.save(image, str(tmp_path / "bare.nii"))
    with pytest.warns(OrientationWarning, match="no usable affine .* along array axis 2 in index space"):
        scan = read_source(discover(tmp_path / "bare.nii").sources[0])
    assert np.array_equal(scan.slices[..., 1], np.moveaxis(data, 2, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OrientationWarning)  # an explicit axis: no guessing, no warning
        with pytest.warns(ChannelWarning):
            assert read_source(discover(tmp_path / "bare.nii").sources[0], 0).slices.shape == (10, 9, 4, 3)
    assert _run(ckpt, tmp_path / "bare.nii", tmp_path / "out") == 0
    message = _table(tmp_path / "out").loc["bare.nii", "warnings"]  # scan warnings have their own column
    assert "no usable affine" in message and "1 channel replicated" in message
    assert "no usable affine" in capsys.readouterr().err
    assert nib.load(str(tmp_path / "out" / "bare_mask.nii")).shape == (10, 9, 4)


@pytest.mark.parametrize("value,text", [("3", "is 3; allowed: one of auto, 0, 1, 2"),
                                        ("sideways", "is 'sideways'; allowed: one of auto, 0, 1, 2"),
                                        ("1.5", "must be an integer or a string")])
def test_bad_nifti_axis_stops_before_any_scan(tmp_path, ckpt, value, text, capsys):
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.uint8), np.eye(4)), str(tmp_path / "in" / "v.nii.gz"))
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, ["--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--output",
                        str(tmp_path / "out"), "--device", "cpu", "--set", f"infer.nifti_axis={value}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and "infer.nifti_axis" in err and text in err
    assert not (tmp_path / "out" / "predictions.csv").exists()


# ----------------------------------------------------------------------------- sequences by name


def test_checkpoint_records_its_sequences_and_old_ones_get_the_default(tmp_path, ckpt):
    assert load_checkpoint(ckpt)["sequences"] == ["post", "flair", "pre"]
    assert Predictor.from_checkpoint(ckpt, device="cpu").sequences == TRAINING_SEQUENCES
    import torch

    state = torch.load(ckpt, weights_only=True)
    del state["sequences"]  # a checkpoint written before sequences were recorded
    assert checkpoint_sequences(state) == ("post", "flair", "pre")
    state["sequences"] = ["pre", "flair", "post"]
    assert checkpoint_sequences(state) == ("pre", "flair", "post")
    state["sequences"] = ["pre", "post"]
    with pytest.raises(ValueError, match="has no flair"):
        checkpoint_sequences(state)


def test_scans_come_in_the_models_order(tmp_path, synthetic_dir):
    folder = _first_patient(synthetic_dir)
    source = next(s for s in discover(synthetic_dir).sources if s.path == folder)
    kaggle_order = read_source(source).slices
    natural_model = read_source(source, ReadOptions(model=("pre", "flair", "post"))).slices
    assert np.array_equal(natural_model, kaggle_order[..., ::-1])
    assert not np.array_equal(kaggle_order[..., 0], kaggle_order[..., 2])


def test_kaggle_flair_is_channel_1_and_opencv_reverses_the_stored_order(lgg_dev_dir):
    """TCGA_CS_4942: the tumour is brightest in channel 1 (FLAIR); OpenCV returns the stored R, G, B reversed."""
    folder = next(p for p in lgg_dev_dir.iterdir() if p.name.startswith("TCGA_CS_4942"))
    volume, truth = _patient(folder)  # the middle slices, through the tumour
    tumour, brain = truth, (volume[..., 1] > 20) & ~truth
    contrast = [volume[..., c][tumour].mean() / volume[..., c][brain].mean() for c in range(3)]
    assert contrast[1] == max(contrast) and contrast[1] > 1.3  # channel 1: FLAIR, tumour bright
    import tifffile

    middle = _slice_files(folder)[SLICES // 2]
    assert np.array_equal(tifffile.imread(middle)[..., ::-1], cv2.imread(str(middle), cv2.IMREAD_UNCHANGED))


def test_4d_volume_in_natural_order_gives_the_same_mask_as_the_tiffs(tmp_path, ckpt, threshold, synthetic_dir):
    folder = _first_patient(synthetic_dir)
    volume, _ = _patient(folder)
    inp = tmp_path / "in"
    _copy_patient(folder, inp / folder.name)
    (inp / "vol").mkdir()
    natural = volume[..., ::-1]  # pre, FLAIR, post: the Kaggle file's own R, G, B
    nib.save(_stored(natural, STACKED_SLICES_AXCODES), str(inp / "vol" / "natural.nii.gz"))
    out = tmp_path / "out"
    args = ("--threshold", str(threshold))
    assert _run(ckpt, inp, out, *args, "--set", "infer.sequences=[pre,flair,post]") == 0
    from_tiffs = _tiff_masks(out, folder)
    from_volume = np.asarray(nib.load(str(out / "vol" / "natural_mask.nii.gz")).dataobj) > 0
    assert 0.02 < from_tiffs.mean() < 0.98 and np.array_equal(from_volume, from_tiffs)
    assert _table(out).loc["vol/natural.nii.gz", "sequences"] == (
        "post=volume[..., 2]; flair=volume[..., 1]; pre=volume[..., 0]")
    # declared wrongly (the default order), two inputs are swapped and the mask changes
    assert _run(ckpt, inp / "vol", tmp_path / "swapped", *args) == 0
    swapped = np.asarray(nib.load(str(tmp_path / "swapped" / "natural_mask.nii.gz")).dataobj) > 0
    assert not np.array_equal(swapped, from_tiffs)
    # aliases work too (BraTS names)
    assert _run(ckpt, inp / "vol", tmp_path / "alias", *args, "--set", "infer.sequences=[T1,FLAIR,T1ce]") == 0
    assert np.array_equal(np.asarray(nib.load(str(tmp_path / "alias" / "natural_mask.nii.gz")).dataobj) > 0,
                          from_tiffs)


def test_4d_volume_whose_length_differs_from_the_declaration_is_an_error_row(tmp_path, ckpt):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3, 4), np.uint8), np.eye(4)), str(tmp_path / "four.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), str(tmp_path / "ok.nii.gz"))
    assert _run(ckpt, tmp_path, tmp_path / "out") == 1
    t = _table(tmp_path / "out")
    assert t.loc["four.nii.gz", "status"] == "error" and t.loc["ok.nii.gz", "status"] == "ok"
    assert "4 sequences in the last axis but infer.sequences declares 3" in t.loc["four.nii.gz", "message"]
    # declared with t2: read, and t2 reported as not used
    assert _run(ckpt, tmp_path / "four.nii.gz", tmp_path / "o2", "--set", "infer.sequences=[flair,t1,t1ce,t2]") == 0
    assert _table(tmp_path / "o2").loc["four.nii.gz", "sequences"] == (
        "post=volume[..., 2]; flair=volume[..., 0]; pre=volume[..., 1]; t2=volume[..., 3] (not used)")


@pytest.mark.parametrize("sequences,text", [("[pre,flair,foo]", "unknown sequence name 'foo'"),
                                            ("[pre,flair,t1]", "listed twice"), ("[]", "non-empty list")])
def test_bad_sequence_declarations_stop_the_stage_naming_the_key(tmp_path, ckpt, sequences, text):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.uint8), np.eye(4)), str(tmp_path / "v.nii.gz"))
    with pytest.raises(StageError, match=f"infer.sequences.*{text}"):
        _run(ckpt, tmp_path / "v.nii.gz", tmp_path / "out", "--set", f"infer.sequences={sequences}")
    with pytest.raises(StageError, match=f"infer.nnunet_channels.*{text}"):
        _run(ckpt, tmp_path / "v.nii.gz", tmp_path / "out", "--set", f"infer.nnunet_channels={sequences}")
    assert not (tmp_path / "out" / "predictions.csv").exists()
    assert parse_names(["T1", "flair", "T1Gd", "t2w"], "k") == ("pre", "flair", "post", "t2")


def test_assemble_substitutes_flair_and_describes_where_inputs_came_from():
    stack = np.arange(2 * 3 * 2).reshape(2, 3, 2)  # flair, pre
    with pytest.warns(ChannelWarning, match="x: no post-contrast input; FLAIR used in its place"):
        out, text = assemble(stack, ["flair", "pre"], ["a.nii", "b.nii"], TRAINING_SEQUENCES, "x")
    assert np.array_equal(out, stack[..., [0, 0, 1]])
    assert text == "post=flair (missing: substituted); flair=a.nii; pre=b.nii"
    same, text = assemble(stack[..., :1].repeat(3, -1), ["post", "flair", "pre"], ["0", "1", "2"], TRAINING_SEQUENCES, "x")
    assert text == "post=0; flair=1; pre=2"
    with pytest.raises(ScanError, match="x: no FLAIR among the inputs \\(pre \\(b.nii\\)\\)"):
        assemble(stack[..., 1:], ["pre"], ["b.nii"], TRAINING_SEQUENCES, "x")
    one = np.zeros((2, 3, 1), np.uint8)
    with pytest.warns(ChannelWarning, match="1 channel replicated to 3"):
        view, _ = assemble(one, ["flair"], ["3D volume"], TRAINING_SEQUENCES, "x")
    assert view.shape == (2, 3, 3) and np.shares_memory(view, one)  # broadcast, not copied


# ----------------------------------------------------------------------------- BraTS / nnU-Net cases


def _write_case(folder: Path, volume: np.ndarray, truth: np.ndarray, files: dict[str, int | None],
                axcodes=("R", "A", "S")) -> Path:
    """Write ``files`` (name suffix -> channel of ``volume`` in OpenCV order; None: the truth)."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, channel in files.items():
        data = truth.astype(np.uint8) if channel is None else np.ascontiguousarray(volume[..., channel])
        nib.save(_stored(data, axcodes), str(folder / f"{suffix}.nii.gz"))
    return folder


POST, FLAIR, PRE = 0, 1, 2  # channels of a Kaggle slice as OpenCV reads it


def test_brats_and_nnunet_case_folders_are_one_case_each_and_match_the_tiffs(tmp_path, ckpt, threshold, synthetic_dir):
    folder = _first_patient(synthetic_dir)
    volume, truth = _patient(folder)
    inp = tmp_path / "in"
    _copy_patient(folder, inp / "tiffs" / folder.name)
    _write_case(inp / "BraTS_001", volume, truth, {"BraTS_001_flair": FLAIR, "BraTS_001_t1": PRE,
                "BraTS_001_t1ce": POST, "BraTS_001_t2": FLAIR, "BraTS_001_seg": None})  # fmt: skip
    _write_case(inp / "nnunet", volume, truth, {"case7_0000": FLAIR, "case7_0001": PRE, "case7_0002": POST},
                axcodes=SAGITTAL_FIRST)
    _write_case(inp / "nnunet", volume, truth, {"lone_2019": FLAIR})  # not a case: no _0000
    out = tmp_path / "out"
    assert _run(ckpt, inp, out, "--threshold", str(threshold), "--with-truth") == 0
    t = _table(out)
    assert set(t.index) == {f"tiffs/{folder.name}", "BraTS_001/BraTS_001", "nnunet/case7", "nnunet/lone_2019.nii.gz"}
    assert t.loc["BraTS_001/BraTS_001", "format"] == "brats" and t.loc["nnunet/case7", "format"] == "nnunet"
    assert t.loc["BraTS_001/BraTS_001", "sequences"] == ("post=BraTS_001_t1ce.nii.gz; flair=BraTS_001_flair.nii.gz; "
                                                         "pre=BraTS_001_t1.nii.gz; t2=BraTS_001_t2.nii.gz (not used)")
    assert t.loc["nnunet/case7", "sequences"] == "post=case7_0002.nii.gz; flair=case7_0000.nii.gz; pre=case7_0001.nii.gz"
    from_tiffs = _tiff_masks(out / "tiffs", folder)
    assert 0.02 < from_tiffs.mean() < 0.98
    tiff_world, _ = _world(out / "BraTS_001" / "BraTS_001_mask.nii.gz")  # written in the case's own voxel order
    assert np.array_equal(np.asarray(nib.load(str(out / "BraTS_001" / "BraTS_001_mask.nii.gz")).dataobj) > 0,
                          np.asarray(_stored(from_tiffs.astype(np.uint8), ("R", "A", "S")).dataobj) > 0)
    assert np.array_equal(_world(out / "nnunet" / "case7_mask.nii.gz")[0], tiff_world)
    assert t.loc["BraTS_001/BraTS_001", "dice"] == t.loc[f"tiffs/{folder.name}", "dice"] != ""  # _seg is the truth
    height, width, depth = volume.shape[:3]
    assert t.loc["BraTS_001/BraTS_001", "shape"] == f"{depth}x{height}x{width}x4"  # 4 files as read
    # another nnU-Net channel meaning, declared by config
    other = _write_case(tmp_path / "other", volume, truth, {"c_0000": PRE, "c_0001": POST, "c_0002": FLAIR})
    assert _run(ckpt, other, tmp_path / "o2", "--threshold", str(threshold),
                "--set", "infer.nnunet_channels=[pre,post,flair]") == 0  # fmt: skip
    assert np.array_equal(_world(tmp_path / "o2" / "c_mask.nii.gz")[0], tiff_world)


def test_missing_sequence_is_replaced_by_flair_and_reported(tmp_path, ckpt, threshold, synthetic_dir, capsys):
    folder = _first_patient(synthetic_dir)
    volume, truth = _patient(folder)
    inp = tmp_path / "in"
    _write_case(inp / "c", volume, truth, {"c_flair": FLAIR, "c_t1": PRE})  # no post-contrast
    substituted = volume.copy()
    substituted[..., POST] = volume[..., FLAIR]  # what the dataset does for a missing sequence
    nib.save(_stored(substituted, ("R", "A", "S")), str(inp / "c" / "expected.nii.gz"))
    assert _run(ckpt, inp, tmp_path / "out", "--threshold", str(threshold)) == 0
    t = _table(tmp_path / "out")
    assert t.loc["c/c", "sequences"] == "post=flair (missing: substituted); flair=c_flair.nii.gz; pre=c_t1.nii.gz"
    assert "no post-contrast input; FLAIR used in its place" in t.loc["c/c", "warnings"]
    assert "no post-contrast input" in capsys.readouterr().err
    got = np.asarray(nib.load(str(tmp_path / "out" / "c" / "c_mask.nii.gz")).dataobj)
    assert np.array_equal(got, np.asarray(nib.load(str(tmp_path / "out" / "c" / "expected_mask.nii.gz")).dataobj))


def test_case_geometry_must_match_and_flair_is_required(tmp_path, ckpt):
    volume = np.random.default_rng(2).integers(0, 200, (8, 8, 4, 3), dtype=np.uint8)
    truth = np.zeros((8, 8, 4), bool)
    _write_case(tmp_path / "shifted", volume, truth, {"s_flair": FLAIR, "s_t1": PRE})
    moved = nib.load(str(tmp_path / "shifted" / "s_t1.nii.gz"))
    moved = nib.Nifti1Image(np.asarray(moved.dataobj), moved.affine @ np.diag([1, 1, 1.5, 1]))
    nib.save(moved, str(tmp_path / "shifted" / "s_t1.nii.gz"))
    _write_case(tmp_path / "small", volume, truth, {"m_flair": FLAIR})
    nib.save(nib.Nifti1Image(volume[:6, ..., 0], np.eye(4)), str(tmp_path / "small" / "m_t1ce.nii.gz"))
    _write_case(tmp_path / "noflair", volume, truth, {"n_t1": PRE, "n_t1ce": POST})
    _write_case(tmp_path / "good", volume, truth, {"g_flair": FLAIR})
    assert _run(ckpt, tmp_path, tmp_path / "out") == 1  # the rest of the batch goes on
    t = _table(tmp_path / "out")
    assert t.loc["good/g", "status"] == "ok"
    assert "s_t1.nii.gz: affine differs from s_flair.nii.gz's" in t.loc["shifted/s", "message"]
    assert "m_t1ce.nii.gz: shape (6, 8, 4) differs from m_flair.nii.gz" in t.loc["small/m", "message"]
    assert "no FLAIR among the inputs (pre (n_t1.nii.gz), post (n_t1ce.nii.gz))" in t.loc["noflair/n", "message"]
    assert {t.loc[k, "status"] for k in ("shifted/s", "small/m", "noflair/n")} == {"error"}


def test_case_grouping_rules(tmp_path):
    for name in ["a/x_flair.nii.gz", "a/x_T1CE.nii.gz", "a/x_seg.nii.gz", "a/y_seg.nii.gz", "b/p_0000.nii",
                 "b/p_0001.nii", "b/q_0001.nii.gz", "b/p_mask.nii", "c/scan.nii.gz"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = discover(tmp_path)
    by_rel = {str(s.rel): s for s in found.sources}
    assert sorted(by_rel) == ["a/x", "a/y_seg.nii.gz", "b/p", "b/q_0001.nii.gz", "c/scan.nii.gz"]
    assert by_rel["a/x"].format == "brats" and by_rel["a/x"].truth == tmp_path / "a/x_seg.nii.gz"
    assert [p.name for p in by_rel["a/x"].members] == ["x_flair.nii.gz", "x_T1CE.nii.gz"]
    assert by_rel["b/p"].format == "nnunet" and by_rel["b/p"].truth == tmp_path / "b/p_mask.nii"
    assert cases.parse_case_name("BraTS2021_00000_t1ce.nii.gz") == ("brats", "BraTS2021_00000", "t1ce")
    assert cases.parse_case_name("la_001_0002.nii.gz") == ("nnunet", "la_001", "0002")
    assert cases.parse_case_name("brain.nii.gz") is None
    from mri_seg.io.registry import output_paths

    paths = output_paths(by_rel["b/p"], tmp_path / "out")
    assert paths.masks == [tmp_path / "out/b/p_mask.nii"] and paths.overlay == tmp_path / "out/b/p_overlay.png"
    # one file of a BraTS set given alone: that file, with the set's reference mask
    (single,) = discover(tmp_path / "a" / "x_flair.nii.gz").sources
    assert single.format == "brats" and single.members == (tmp_path / "a/x_flair.nii.gz",)
    assert single.truth == tmp_path / "a/x_seg.nii.gz"
