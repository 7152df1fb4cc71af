"""inference.segment: one scan of a folder inference and its row (ok, error, notes, no partial outputs)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mri_seg.config import InferConfig
from mri_seg.inference import segment
from mri_seg.inference.journal import COLUMNS, DICE_COLUMN
from mri_seg.inference.segment import error_row, one_line, segment_scan, unusable_row
from mri_seg.io.registry import discover, output_paths
from mri_seg.io.scan import ScanError
from mri_seg.utils.atomic import DiskFullError


class ConstantPredictor:
    """Every pixel has probability ``p`` (one pass); records the files it 'came from'."""

    checkpoint_paths = [Path("a.pt"), Path("b.pt")]
    checkpoint_sha256 = ["aa", "bb"]

    def __init__(self, p: float = 0.9, fail: Exception | None = None):
        self.p, self.fail = p, fail

    def predict_volume(self, volume: np.ndarray) -> np.ndarray:
        if self.fail is not None:
            raise self.fail
        return np.full(volume.shape[:3], self.p, np.float32)


def _scan(tmp_path: Path, name: str = "a.png", truth: np.ndarray | None = None):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / name), np.full((8, 10, 3), 60, np.uint8))
    if truth is not None:
        cv2.imwrite(str(folder / name.replace(".png", "_mask.png")), truth)
    (source,) = discover(folder).sources
    return source, output_paths(source, tmp_path / "out")


def test_ok_row_and_outputs(tmp_path):
    source, paths = _scan(tmp_path)
    row = segment_scan(ConstantPredictor(), source, paths, InferConfig())
    assert row["status"] == "ok" and row["message"] == "" and row["path"] == "a.png" and row["format"] == "png"
    assert row["tumour_pixels"] == 80 and row["slices_with_tumour"] == 1 and row["tumour_volume_mm3"] == ""
    assert row["checkpoints"] == "a.pt;b.pt" and row["checkpoint_sha256"] == "aa;bb"
    assert list(row)[: len(COLUMNS)] == COLUMNS and DICE_COLUMN not in row
    assert all(p.is_file() for p in paths.all(with_probs=False)) and not paths.probs[0].exists()


def test_dice_against_the_reference_mask_and_notes(tmp_path):
    truth = np.zeros((8, 10), np.uint8)
    truth[:, :5] = 255
    source, paths = _scan(tmp_path, truth=truth)
    row = segment_scan(ConstantPredictor(), source, paths, InferConfig(), with_truth=True)
    assert row["status"] == "ok" and row[DICE_COLUMN] == pytest.approx(2 * 40 / (80 + 40))
    cv2.imwrite(str(source.truth), np.zeros((8, 10, 3), np.uint8))  # a 3-channel reference: refused, a note
    row = segment_scan(ConstantPredictor(), source, paths, InferConfig(), with_truth=True)
    assert row["status"] == "ok" and row[DICE_COLUMN] == "" and "dice:" in row["message"]
    assert "expected a 1-channel mask" in row["message"]


def test_unreadable_scan_is_an_error_row_without_outputs(tmp_path):
    source, paths = _scan(tmp_path)
    source.path.write_bytes(b"not an image")
    row = segment_scan(ConstantPredictor(), source, paths, InferConfig())
    assert row["status"] == "error" and "not a readable image" in row["message"]
    assert not any(p.exists() for p in paths.all(with_probs=True))
    assert row["checkpoint_sha256"] == "aa;bb" and isinstance(row["seconds"], float)


def test_failure_after_writing_removes_only_this_attempts_outputs(tmp_path, monkeypatch):
    source, paths = _scan(tmp_path)
    paths.overlay.parent.mkdir(parents=True)
    paths.probs[0].write_bytes(b"earlier run")  # not this attempt's: kept

    def broken_overlay(*args, **kwargs):
        raise RuntimeError("cannot draw")

    monkeypatch.setattr(segment, "write_overlay", broken_overlay)
    row = segment_scan(ConstantPredictor(), source, paths, InferConfig())
    assert row["status"] == "error" and row["message"] == "RuntimeError: cannot draw"
    assert not paths.masks[0].exists() and paths.probs[0].read_bytes() == b"earlier run"


def test_predictor_error_is_one_line(tmp_path):
    source, paths = _scan(tmp_path)
    row = segment_scan(ConstantPredictor(fail=ValueError("bad\n  input")), source, paths, InferConfig())
    assert row["status"] == "error" and row["message"] == "ValueError: bad input"


def test_full_disk_stops_the_run(tmp_path, monkeypatch):
    source, paths = _scan(tmp_path)

    def full(path, *args, **kwargs):
        raise DiskFullError(path, OSError(28, "No space left on device"))

    monkeypatch.setattr(segment, "write_overlay", full)
    with pytest.raises(DiskFullError):
        segment_scan(ConstantPredictor(), source, paths, InferConfig())
    assert not paths.masks[0].exists()  # the mask written before is removed


def test_rows_before_segmenting(tmp_path):
    source, _ = _scan(tmp_path)
    row = error_row(source, with_truth=True)
    assert row["status"] == "error" and row["path"] == "a.png" and row[DICE_COLUMN] == ""

    class Unusable:
        path = tmp_path / "in" / "locked"
        status, reason = "error", "cannot be listed"

    row = unusable_row(Unusable(), tmp_path / "in", with_truth=False)
    assert (row["path"], row["format"], row["status"], row["message"]) == ("locked", "folder", "error", "cannot be listed")


def test_one_line():
    assert one_line(ScanError("x.png:\n bad")) == "x.png: bad"  # scan and file errors speak for themselves
    assert one_line(KeyError("k")) == "KeyError: 'k'"
    assert one_line(RuntimeError()) == "RuntimeError: RuntimeError"


def test_report_page_written_by_the_callers_writer_and_its_failure_is_a_note(tmp_path):
    source, paths = _scan(tmp_path)
    pages = []

    def write_page(out_dir, row, slices, mask, names):
        pages.append((out_dir, row["path"], row["status"], slices.shape, int(mask.sum()), names))

    row = segment_scan(ConstantPredictor(), source, paths, InferConfig(), out_dir=tmp_path / "out", write_page=write_page)
    assert row["status"] == "ok" and pages == [(tmp_path / "out", "a.png", "ok", (1, 8, 10, 3), 80, None)]
    segment_scan(ConstantPredictor(), source, paths, InferConfig(report=False), out_dir=tmp_path / "out",
                 write_page=write_page)  # fmt: skip
    assert len(pages) == 1  # infer.report off: no page

    def broken(*args):
        raise OSError("read-only")

    row = segment_scan(ConstantPredictor(), source, paths, InferConfig(), out_dir=tmp_path / "out", write_page=broken)
    assert row["status"] == "ok" and row["message"] == "report page: read-only"


class FlairChannelPredictor:
    """Probability = the slice's channel 0 / 255 (FLAIR there only in the FLAIR view); counts its calls."""

    checkpoint_paths = [Path("a.pt")]
    checkpoint_sha256 = ["aa"]

    def __init__(self):
        self.calls = 0

    def predict_volume(self, volume: np.ndarray) -> np.ndarray:
        self.calls += 1
        return (volume[..., 0] / 255.0).astype(np.float32)


def test_the_flair_view_is_predicted_only_where_used_and_the_scan_has_more_than_flair():
    from mri_seg.inference.segment import predict_flair_view
    from mri_seg.io.sequences import FLAIR_CHANNEL

    slices = np.zeros((2, 8, 8, 3), np.uint8)
    slices[..., FLAIR_CHANNEL] = 200
    slices[..., 0] = 10
    predictor = FlairChannelPredictor()
    assert predict_flair_view(predictor, slices, InferConfig().postprocess) is None and predictor.calls == 0  # off
    on = InferConfig()
    on.postprocess.flair_view_threshold = 0.7
    view = predict_flair_view(predictor, slices, on.postprocess)
    assert predictor.calls == 1 and view.shape == (2, 8, 8) and np.allclose(view, 200 / 255.0)
    flair_only = np.repeat(slices[..., FLAIR_CHANNEL : FLAIR_CHANNEL + 1], 3, axis=-1)
    assert predict_flair_view(predictor, flair_only, on.postprocess) is None and predictor.calls == 1


def test_segment_scan_adds_the_flair_views_larger_overlapping_component(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    image = np.zeros((16, 16, 3), np.uint8)  # OpenCV order: channel 0 = post, 1 = FLAIR, 2 = pre
    image[2:6, 2:6, 0] = 250  # what the 3-sequence input shows: 16 pixels
    image[2:10, 2:10, 1] = 250  # FLAIR shows the whole lesion: 64 pixels
    cv2.imwrite(str(folder / "a.png"), image)
    (source,) = discover(folder).sources
    cfg = InferConfig()
    cfg.postprocess.largest_only = True
    row = segment_scan(FlairChannelPredictor(), source, output_paths(source, tmp_path / "out"), cfg)
    assert row["status"] == "ok" and row["tumour_pixels"] == 16
    cfg.postprocess.flair_view_threshold = 0.7
    predictor = FlairChannelPredictor()
    row = segment_scan(predictor, source, output_paths(source, tmp_path / "out2"), cfg)
    assert row["status"] == "ok" and row["tumour_pixels"] == 64 and predictor.calls == 2


def test_flair_view_note_only_where_the_view_is_on():
    from mri_seg.inference.segment import flair_view_note

    pp = InferConfig().postprocess
    assert flair_view_note(pp) is None
    pp.flair_view_threshold = 0.7
    note = flair_view_note(pp)
    assert note is not None and "0.7" in note and "min ratio 1.5" in note and "predicted twice" in note
