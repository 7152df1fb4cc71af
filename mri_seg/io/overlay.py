"""Overlay PNGs: the predicted contour drawn on the FLAIR-like channel (channel 1).

A 2D scan gets one overlay; a volume gets a montage of the slices with the most
predicted tumour (evenly spaced slices when there is none), in slice order, each
labelled with its index. Overlays are downscaled so their longer side is at most
``MAX_SIDE`` pixels (``MONTAGE_TILE_SIDE`` per montage tile): they are for looking at;
the mask files carry the full result.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mri_seg.io.images import write_image
from mri_seg.io.sequences import FLAIR_CHANNEL

MONTAGE_SLICES = 8
MONTAGE_COLUMNS = 4
MAX_SIDE = 1024
MONTAGE_TILE_SIDE = 384
CONTOUR_BGR = (0, 0, 255)  # red


def to_gray8(channel: np.ndarray) -> np.ndarray:
    """Window one channel to uint8 by its 1st-99th percentile (any input dtype and range)."""
    channel = np.asarray(channel, dtype=np.float32)
    lo, hi = np.percentile(channel, [1, 99]) if channel.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((channel - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def overlay_slice(
    image: np.ndarray, mask: np.ndarray, label: str | None = None, max_side: int = MAX_SIDE
) -> np.ndarray:
    """``H x W x C`` slice + ``H x W`` mask -> BGR uint8 picture with the mask contour."""
    channel = image[:, :, min(FLAIR_CHANNEL, image.shape[2] - 1)]
    gray = to_gray8(channel)
    factor = min(1.0, max_side / max(gray.shape))
    mask8: np.ndarray = mask.astype(np.uint8)
    if factor < 1.0:
        size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        mask8 = cv2.resize(mask8, size, interpolation=cv2.INTER_NEAREST)
    picture = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(mask8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(picture.shape[:2]) / 256))
    cv2.drawContours(picture, contours, -1, CONTOUR_BGR, thickness)
    if label:
        cv2.putText(picture, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return picture


def montage_indices(mask: np.ndarray, n: int = MONTAGE_SLICES) -> list[int]:
    """Slices with the most predicted tumour (in slice order); evenly spaced if none has any."""
    depth = mask.shape[0]
    area = mask.reshape(depth, -1).sum(axis=1)
    if area.max(initial=0) == 0:
        return sorted(set(np.linspace(0, depth - 1, min(n, depth)).round().astype(int).tolist()))
    order = np.argsort(-area, kind="stable")[:n]
    return sorted(int(i) for i in order if area[i] > 0)


def make_overlay(slices: np.ndarray, mask: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """``D x H x W x C`` scan + ``D x H x W`` mask -> one picture (a montage when ``D > 1``).

    ``names``: how each slice is labelled (default: its 0-based index along the slice axis).
    """
    if slices.shape[0] == 1:
        return overlay_slice(slices[0], mask[0])
    names = names or [str(i) for i in range(slices.shape[0])]
    tiles = [
        overlay_slice(slices[i], mask[i], f"slice {names[i]}", MONTAGE_TILE_SIDE) for i in montage_indices(mask)
    ]
    cols = min(MONTAGE_COLUMNS, len(tiles))
    rows = -(-len(tiles) // cols)
    h, w = tiles[0].shape[:2]
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return sheet


def write_overlay(path: str | Path, slices: np.ndarray, mask: np.ndarray, names: list[str] | None = None) -> None:
    write_image(Path(path), make_overlay(slices, mask, names))
