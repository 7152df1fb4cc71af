"""The evaluation figures (reports/plots.py) from in-memory tables: real PNGs, sized by their content, the right colours."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mri_seg.evaluation.scoring import MontageSlice
from mri_seg.reports.plots import (
    DPI,
    HARD_COLOUR,
    PAIR_COLOURS,
    dice_by_patient_png,
    dice_vs_size_png,
    montage_png,
    paired_differences_png,
    uncertainty_vs_dice_png,
    volume_axis,
    volume_scatter_png,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image(png: bytes) -> np.ndarray:
    """The PNG decoded to an ``h x w x 3`` RGB array."""
    assert png.startswith(PNG_MAGIC)
    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None
    return bgr[..., ::-1]


def _pixels_of(rgb: np.ndarray, colour: str, tol: int = 30) -> int:
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb.astype(int) - target).max(axis=-1) <= tol).sum())


def _patients(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "patient_id": [f"TCGA_XX_{i:04d}_20000101" for i in range(n)],
        "dice": rng.uniform(0.2, 0.95, n),
        "true_volume": rng.integers(100, 120_000, n),
        "pred_volume": rng.integers(0, 120_000, n),
        "uncertainty": np.linspace(0.05, 0.6, n),
    })  # fmt: skip


def test_each_plot_is_a_png_about_its_figure_size():
    patients = _patients(6)
    # (png, figure inches): tight bounding boxes trim margins and add rotated labels, so within a factor
    for png, (w_in, h_in) in [
        (volume_scatter_png(patients), (5, 5)),
        (dice_vs_size_png(patients), (6, 4)),
        (uncertainty_vs_dice_png(patients, 0.3), (6, 4)),
        (dice_by_patient_png(patients), (6, 4)),
    ]:
        h, w = _image(png).shape[:2]
        assert 0.6 * w_in * DPI < w < 1.4 * w_in * DPI and 0.6 * h_in * DPI < h < 1.8 * h_in * DPI


def test_dice_by_patient_widens_with_the_patients():
    narrow = _image(dice_by_patient_png(_patients(5))).shape[1]
    wide = _image(dice_by_patient_png(_patients(60))).shape[1]
    assert narrow == pytest.approx(6 * DPI, rel=0.25)  # at least 6 inches
    assert wide == pytest.approx((0.22 * 60 + 2) * DPI, rel=0.2)  # 0.22 inch per bar


def test_montage_grid_and_contour_colours():
    truth = np.zeros((32, 32), bool)
    truth[8:20, 8:20] = True
    pred = np.zeros((32, 32), bool)
    pred[12:26, 12:26] = True
    flair = np.full((32, 32), 60, np.uint8)
    one_row = [MontageSlice(i, flair, truth, pred, 0.5) for i in range(4)]
    two_rows = [MontageSlice(i, flair, truth, pred, 0.5) for i in range(6)]
    a, b = _image(montage_png(one_row, "one row")), _image(montage_png(two_rows, "two rows"))
    assert a.shape[1] == pytest.approx(b.shape[1], rel=0.05)  # four columns either way
    assert b.shape[0] > 1.5 * a.shape[0]  # a second row of panels (figure height 2.5 inches per row + 0.6)
    assert _pixels_of(a, "#00e000") > 100 and _pixels_of(a, "#ff2a2a") > 100  # truth green, prediction red
    only_truth = _image(montage_png([MontageSlice(0, flair, truth, np.zeros_like(pred), 1.0)], "no prediction"))
    assert _pixels_of(only_truth, "#00e000") > 50
    assert _pixels_of(only_truth, "#ff2a2a") < _pixels_of(a, "#ff2a2a") // 4  # only the legend's short line
    empty = _image(montage_png([], "nothing"))
    assert empty.shape[0] > 50 and empty.shape[1] > 50  # still a picture ("no tumour slices")


def test_uncertainty_plot_marks_flagged_patients_red():
    patients = _patients(8)
    none_flagged = _image(uncertainty_vs_dice_png(patients, threshold=0.9))
    some_flagged = _image(uncertainty_vs_dice_png(patients, threshold=0.2, review={"spearman_uncertainty_dice": -0.4}))
    # points are drawn at alpha 0.85 over white: red where R is high and G, B are low
    def reddish(rgb: np.ndarray) -> int:
        return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 120) & (rgb[..., 2] < 120)).sum())

    assert reddish(some_flagged) > reddish(none_flagged) + 100  # (the legend's red marker is in both)


def test_volume_axis_ticks_read_as_thousands():
    fig = Figure()
    ax = fig.add_subplot()
    ax.set_xlim(0, 120_000)
    volume_axis(ax.xaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert 3 <= len(labels) <= 6 and "100,000" in labels
    formatter = ax.xaxis.get_major_formatter()
    assert formatter(12000, None) == "12,000" and formatter(1.5e6, None) == "1.5M"


def _differences(pairs: int, hard: bool) -> pd.DataFrame:
    rows = []
    for k in range(pairs):
        for i, volume in enumerate((2_000, 5_000, 20_000, 50_000)):
            rows.append({"pair": f"r{k} vs b{k}", "true_volume": volume, "diff": 0.05 * (i - 1.5) + 0.1 * k, "hard": hard and i == 3})
    return pd.DataFrame(rows)


def test_paired_differences_one_colour_per_pair_hard_patients_ringed():
    one = _image(paired_differences_png(_differences(1, hard=False)))
    two = _image(paired_differences_png(_differences(2, hard=False), small_below=3_000))
    assert _pixels_of(one, PAIR_COLOURS[0]) > 50 and _pixels_of(one, PAIR_COLOURS[1]) == 0
    assert _pixels_of(two, PAIR_COLOURS[0]) > 50 and _pixels_of(two, PAIR_COLOURS[1]) > 50  # the second pair's own colour
    ringed = _image(paired_differences_png(_differences(1, hard=True)))
    assert ringed.shape == one.shape  # the same layout: the only change is the ring round the hard patient
    darker = (one.astype(int) - ringed.astype(int)).sum(axis=-1) > 150
    assert darker.sum() > 20 and _pixels_of(ringed[darker], HARD_COLOUR, tol=100) > 10
