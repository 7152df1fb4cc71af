"""Slice pictures for the HTML pages: a FLAIR JPEG and a transparent contour PNG per slice.

The pages stack the contour PNG over the JPEG, so "overlay off" only hides one image.
Both are downscaled so the longer side is at most ``max_side`` pixels (a page shows a
slice at screen size; the mask files carry the full result), and written atomically.
Truth contours are green and drawn wider, predicted ones red on top, the colours of the
report's montages (:mod:`mri_seg.reports.plots`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mri_seg.io.overlay import to_gray8
from mri_seg.utils.atomic import atomic_write_bytes

TRUTH_RGBA = (0, 224, 0, 255)  # green (plots.TRUE_COLOUR)
PRED_RGBA = (255, 42, 42, 255)  # red (plots.PRED_COLOUR)
JPEG_QUALITY = 85
DEFAULT_MAX_SIDE = 512
THUMB_SIDE = 128
WINDOW_SAMPLE = 1_000_000  # voxels sampled for a volume's display window


@dataclass(frozen=True)
class SliceFiles:
    """File names (relative to the page's folder) of one slice's pictures."""

    image: str
    overlay: str


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) scaled down so the longer side is at most ``max_side`` (never up)."""
    factor = min(1.0, max_side / max(height, width, 1))
    return max(1, round(height * factor)), max(1, round(width * factor))


def volume_window(channel: np.ndarray) -> tuple[float, float]:
    """1st-99th percentile of a whole volume's channel: one window for every slice, so
    brightness does not jump while scrolling."""
    values = np.asarray(channel).ravel()
    values = values[:: max(1, values.size // WINDOW_SAMPLE)].astype(np.float32)  # a sample is enough
    values = values[values != 0] if np.any(values) else values
    lo, hi = (float(v) for v in np.percentile(values, [1, 99])) if values.size else (0.0, 1.0)
    return lo, hi if hi > lo else lo + 1.0


def windowed(channel: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return np.clip((np.asarray(channel, np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def gray_picture(
    channel: np.ndarray, max_side: int = DEFAULT_MAX_SIDE, window: tuple[float, float] | None = None
) -> np.ndarray:
    """One channel (any dtype) -> uint8 picture, windowed (default: the slice's 1st-99th
    percentile), downscaled."""
    gray = to_gray8(channel) if window is None else windowed(channel, window)
    h, w = fit_size(gray.shape[0], gray.shape[1], max_side)
    if (h, w) != gray.shape:
        gray = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
    return gray


def contour_rgba(shape: tuple[int, int], truth: np.ndarray | None, pred: np.ndarray | None) -> np.ndarray:
    """Transparent ``h x w x 4`` (RGBA) picture with the truth and prediction contours."""
    h, w = shape
    canvas = np.zeros((h, w, 4), np.uint8)
    thickness = max(1, round(max(h, w) / 256))
    for mask, colour, width in ((truth, TRUTH_RGBA, thickness + 1), (pred, PRED_RGBA, thickness)):
        if mask is None or not np.any(mask):
            continue
        small: np.ndarray = np.asarray(mask, np.uint8)
        if small.shape != (h, w):
            small = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, colour, width)
    return canvas


def encode_jpeg(gray: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def encode_png_rgba(rgba: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def thumbnail_jpeg(
    channel: np.ndarray, mask: np.ndarray | None, side: int = THUMB_SIDE, window: tuple[float, float] | None = None
) -> bytes:
    """A small JPEG: the slice with the predicted contour burnt in (for index tables)."""
    gray = gray_picture(channel, side, window)
    rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    overlay = contour_rgba(gray.shape, None, mask)
    drawn = overlay[..., 3] > 0
    rgb[drawn] = overlay[drawn][:, [2, 1, 0]]  # RGBA -> BGR
    ok, data = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def write_slice_pictures(
    folder: Path,
    stem: str,
    channel: np.ndarray,
    truth: np.ndarray | None,
    pred: np.ndarray | None,
    max_side: int = DEFAULT_MAX_SIDE,
    window: tuple[float, float] | None = None,
) -> SliceFiles:
    """Write ``<stem>.jpg`` (FLAIR) and ``<stem>_overlay.png`` (contours) into ``folder``."""
    gray = gray_picture(channel, max_side, window)
    image, overlay = f"{stem}.jpg", f"{stem}_overlay.png"
    atomic_write_bytes(folder / image, encode_jpeg(gray))
    atomic_write_bytes(folder / overlay, encode_png_rgba(contour_rgba(gray.shape, truth, pred)))
    return SliceFiles(image, overlay)
