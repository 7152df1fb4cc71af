"""export: a bundle in MONAI's layout that infers exactly like the run's checkpoints, carries no
path to the run, and is refused with one line when tampered with or truncated."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from bundle_helpers import make_run, make_scans, masks, output_bytes, require_onnxruntime
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.pipelines._cli import run_main
from mri_seg.pipelines.export import main as export_main
from mri_seg.pipelines.infer import main as infer_main
from mri_seg.training.bundle import (
    INFERENCE_FILE,
    METADATA_FILE,
    METADATA_TYPES,
    TENSOR_TYPES,
    BundleError,
    bundle_member_files,
    load_bundle_member,
    metadata_problems,
    read_bundle,
)
from mri_seg.training.checkpoint import load_checkpoint, resolve_checkpoints


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "RUN")


@pytest.fixture(scope="module")
def bundle(run, tmp_path_factory) -> Path:
    require_onnxruntime()
    out = tmp_path_factory.mktemp("exported") / "lgg_model"
    assert export_main(["--checkpoint", str(run / "checkpoints"), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    return make_scans(tmp_path_factory.mktemp("scans"))


def _infer(checkpoint: Path, scans: Path, out: Path, *extra: str) -> None:
    assert infer_main(["--checkpoint", str(checkpoint), "--input", str(scans), "--output", str(out), "--no-progress",
                       *extra]) == 0  # fmt: skip


def test_layout_and_monai_metadata(bundle):
    files = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert files == [
        "configs/metadata.json", "configs/mri_seg.json", "docs/README.md", "models/fold0.onnx", "models/fold0.pt",
        "models/fold1.onnx", "models/fold1.pt", "models/model.onnx", "models/model.pt",
    ]  # fmt: skip
    meta = json.loads((bundle / METADATA_FILE).read_text())
    assert metadata_problems(meta) == []
    for key, types in METADATA_TYPES.items():  # MONAI's required keys with their JSON types
        assert isinstance(meta[key], types), key
    image = meta["network_data_format"]["inputs"]["image"]
    for key, types in TENSOR_TYPES.items():
        assert isinstance(image[key], types), key
    assert image["num_channels"] == 9 and image["context_slices"] == 1 and image["spatial_scale"] == 0.5
    assert image["sequences"] == ["post", "flair", "pre"]
    assert image["channel_def"]["0"].startswith("post") and "slice i-1" in image["channel_def"]["0"]
    assert "flair" in image["channel_def"]["4"] and "the slice" in image["channel_def"]["4"]
    assert image["normalisation"]["method"] == "zscore_volume"
    assert meta["network_data_format"]["outputs"]["pred"]["threshold"] == 0.55  # the cv choice
    spec = read_bundle(bundle)
    assert [m["name"] for m in spec["members"]] == ["fold0", "fold1"]
    assert spec["postprocess_choice"]["threshold"] == 0.55
    # the state dicts load weights-only and hold tensors only
    weights = torch.load(bundle / "models" / "fold0.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())


def test_metadata_problems_name_each_missing_or_mistyped_key():
    assert metadata_problems([]) == ["metadata is not a JSON object"]
    problems = metadata_problems({"version": 1, "network_data_format": {"inputs": {"image": {"num_channels": "9"}}}})
    assert "'version' is int, expected str" in problems and "'task' missing" in problems
    assert "network_data_format.outputs missing or empty" in problems
    assert "network_data_format.inputs.image.num_channels is str, expected int" in problems


def test_model_card_states_data_recipe_and_measured_figures(bundle):
    card = (bundle / "docs" / "README.md").read_text()
    assert "4 patients (16 slices, 8 with tumour) from 3 institutions (CS, DU, HT)" in card
    assert "| 4 | 0.710 (0.610-0.810) | 0.760 | 0.55 |" in card  # out-of-fold, from eval/cv/summary.json
    assert "| 4 | 0.740 (0.640-0.840) | 0.790 | 0.55 |" in card  # test, from eval/test/summary.json
    assert "threshold 0.55 (chosen on out-of-fold predictions of 4 patients" in card


def test_nothing_points_back_to_the_run(bundle, run):
    for path in bundle.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert str(run).encode() not in data and str(run.resolve()).encode() not in data, path


def test_zipped_bundle_unzipped_elsewhere_gives_the_runs_masks(bundle, run, scans, tmp_path, capsys):
    archive = shutil.make_archive(str(tmp_path / "lgg_model"), "zip", bundle.parent, bundle.name)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "elsewhere")
    moved = tmp_path / "elsewhere" / "lgg_model"
    _infer(run / "checkpoints", scans, tmp_path / "from_run", "--save-probabilities")
    _infer(moved, scans, tmp_path / "from_bundle", "--save-probabilities")
    err = capsys.readouterr().err
    assert err.count("threshold 0.55 (chosen on out-of-fold predictions") == 2
    expected, got = masks(tmp_path / "from_run"), masks(tmp_path / "from_bundle")
    assert sorted(expected) == sorted(got) and len(expected) == 7  # 5 slices, a PNG, a NIfTI
    for name in expected:
        assert (expected[name] == got[name]).all(), name
    assert any(m.any() and not m.all() for m in expected.values())  # masks with tumour and background
    probabilities = output_bytes(tmp_path / "from_run")
    assert len(probabilities) == 14 and probabilities == output_bytes(tmp_path / "from_bundle")  # bit for bit


def test_single_checkpoint_exports_and_loads(tmp_path):
    require_onnxruntime()
    ckpt = write_untrained_checkpoint(tmp_path / "best.pt", tiny_config())
    out = tmp_path / "one"
    assert export_main(["--checkpoint", str(ckpt), "--out", str(out), "--no-onnx"]) == 0
    assert sorted(p.name for p in (out / "models").iterdir()) == ["model.pt"]
    files = resolve_checkpoints(out)
    state, original = load_checkpoint(files[0]), load_checkpoint(ckpt)
    assert state["config"] == original["config"] and state["normalisation"] == original["normalisation"]
    for key, value in original["model"].items():
        assert torch.equal(state["model"][key], value)


def test_existing_bundle_is_not_overwritten_without_the_flag(bundle, run, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(export_main, ["--checkpoint", str(run / "checkpoints"), "--out", str(bundle)])
    assert exc.value.code == 2 and "exists and is not empty" in capsys.readouterr().err


# --------------------------------------------------------------------------- a bundle from a stranger


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def _refused(folder: Path, scans: Path, tmp_path: Path, capsys, *extra: str) -> str:
    with pytest.raises(SystemExit) as exc:
        run_main(infer_main, ["--checkpoint", str(folder), "--input", str(scans), "--output", str(tmp_path / "o"),
                              "--no-progress", *extra])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_tampered_weights_are_refused(bundle, scans, tmp_path, capsys):
    copy = _copy(bundle, tmp_path)
    path = copy / "models" / "fold1.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    err = _refused(copy, scans, tmp_path, capsys)
    assert "fold1.pt: sha256 differs" in err and "changed or truncated" in err


def test_truncated_weights_are_refused(bundle, scans, tmp_path, capsys):
    copy = _copy(bundle, tmp_path)
    path = copy / "models" / "fold0.pt"
    path.write_bytes(path.read_bytes()[:1000])
    assert "fold0.pt: sha256 differs" in _refused(copy, scans, tmp_path, capsys)


def test_tampered_onnx_graph_is_refused(bundle, scans, tmp_path, capsys):
    copy = _copy(bundle, tmp_path)
    path = copy / "models" / "fold0.onnx"
    path.write_bytes(path.read_bytes()[:-10])
    err = _refused(copy, scans, tmp_path, capsys, "--set", "infer.backend=onnxruntime")
    assert "fold0.onnx: sha256 differs" in err


def test_missing_member_and_broken_metadata_are_refused(bundle, scans, tmp_path, capsys):
    copy = _copy(bundle, tmp_path)
    (copy / "models" / "fold1.pt").unlink()
    assert "models/fold1.pt is missing" in _refused(copy, scans, tmp_path, capsys)
    shutil.rmtree(copy)
    copy = _copy(bundle, tmp_path)
    meta = json.loads((copy / METADATA_FILE).read_text())
    del meta["network_data_format"]
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert "does not follow MONAI's bundle metadata: 'network_data_format' missing" in _refused(
        copy, scans, tmp_path, capsys
    )
    (copy / METADATA_FILE).write_text("{not json")
    assert "configs/metadata.json is not valid JSON" in _refused(copy, scans, tmp_path, capsys)


def test_member_files_outside_the_bundle_are_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    spec = json.loads((copy / INFERENCE_FILE).read_text())
    spec["members"][0]["weights"] = "models/../../outside.pt"
    (copy / INFERENCE_FILE).write_text(json.dumps(spec))
    with pytest.raises(BundleError, match="is not inside models/"):
        bundle_member_files(copy)


def test_bundle_weights_must_be_tensors_only(bundle, tmp_path):
    """A state dict carrying anything but tensors is refused (even with its sha256 updated to match)."""
    copy = _copy(bundle, tmp_path)
    path = copy / "models" / "fold0.pt"
    torch.save({"weight": torch.zeros(1), "note": "not a tensor"}, path)
    spec = json.loads((copy / INFERENCE_FILE).read_text())
    from mri_seg.utils.hashing import file_sha256

    spec["members"][0]["weights_sha256"] = file_sha256(path)
    (copy / INFERENCE_FILE).write_text(json.dumps(spec))
    with pytest.raises(BundleError, match="not a state dict of tensors"):
        load_bundle_member(path)


def test_model_card_names_the_flair_view_only_where_it_is_on():
    from mri_seg.export.model_card import _flair_view_text

    assert _flair_view_text(0.0, 1.5) == ""
    text = _flair_view_text(0.7, 1.5)
    assert "FLAIR in every channel" in text and ">= 0.7" in text and ">= 1.5x its size" in text


def test_model_card_names_the_topk_bce_and_boundary_term_only_where_they_are_on():
    from mri_seg.export.model_card import _loss_text

    assert _loss_text("tversky_bce", 1.0) == "loss tversky_bce"
    assert _loss_text("tversky_bce", 0.1) == "loss tversky_bce (its BCE term over the hardest 10% of each batch's pixels)"
    assert _loss_text("tversky_bce", 0.1, 0.1) == (
        "loss tversky_bce (its BCE term over the hardest 10% of each batch's pixels; a boundary loss term weighted 0.1)"
    )
    assert _loss_text("dice_bce", 1.0, 0.05) == "loss dice_bce (a boundary loss term weighted 0.05)"


def test_model_card_names_the_weight_average_only_where_it_is_on():
    from mri_seg.export.model_card import _ema_text

    assert _ema_text(0.0) == ""
    assert _ema_text(0.995) == ", weights averaged over its steps (EMA, decay 0.995; the average ships)"
