"""2D image files (TIFF, PNG, JPEG) read and written with OpenCV.

Channel order: images are read exactly like the training slices
(``cv2.imread(path, IMREAD_UNCHANGED)`` in :mod:`mri_seg.data.kaggle_lgg`), i.e. a
3-channel file comes back in OpenCV's BGR order. The model was trained on that
order, so every image input goes through the same call and the same order.
Bytes are read with numpy and decoded with ``cv2.imdecode`` (same decoder, any file
name, OpenCV's log lines silenced in favour of one clear error).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np

from mri_seg.io.scan import Scan, ScanError
from mri_seg.utils.atomic import atomic_write_bytes
from mri_seg.utils.opencv import quiet_opencv

MASK_ON = 255  # 2D masks are written 0/255 like the Kaggle masks
PROB_MAX = 65535  # probabilities as 16-bit images: p * 65535


def decode_image(path: str | Path) -> np.ndarray:
    """Decode an image file as OpenCV would read it (IMREAD_UNCHANGED, BGR order).

    TIFFs whose samples per pixel OpenCV would silently reduce (2, or more than 4) or
    cannot decode are read with tifffile instead, so the channel rules see the real
    channel count. Multi-page TIFFs: first page only.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ScanError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    image = _cv2_decode(data)
    if path.suffix.lower() in (".tif", ".tiff") and data.size:
        spp = _tiff_samples_per_pixel(data)
        if image is None or (spp is not None and spp not in (1, 3, 4)):
            image = _tifffile_decode(data)
    if image is None:
        raise ScanError(f"{path}: not a readable image (corrupt, empty or unsupported encoding)")
    return image


def _cv2_decode(data: np.ndarray) -> np.ndarray | None:
    """``cv2.imdecode`` with OpenCV's own log lines silenced (the caller reports one clear error)."""
    if not data.size:
        return None
    with quiet_opencv():
        try:
            return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        except cv2.error:
            return None


def _tiff_samples_per_pixel(data: np.ndarray) -> int | None:
    """SamplesPerPixel of the first page (read from the header: prepare decodes every slice)."""
    try:
        return _classic_tiff_samples(data)
    except (ValueError, IndexError, struct.error):
        pass
    import tifffile  # BigTIFF or an unusual layout

    try:
        with tifffile.TiffFile(io.BytesIO(data.tobytes())) as tif:
            return int(tif.pages[0].samplesperpixel)
    except Exception:
        return None


def _classic_tiff_samples(data: np.ndarray) -> int:
    """Tag 277 of a classic TIFF's first IFD (1 when absent, the TIFF default); ValueError otherwise."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2].tobytes())
    if order is None or struct.unpack_from(order + "H", data, 2)[0] != 42:
        raise ValueError("not a classic TIFF")
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    for k in range(struct.unpack_from(order + "H", data, ifd)[0]):
        tag, kind = struct.unpack_from(order + "HH", data, ifd + 2 + 12 * k)
        if tag == 277:
            return struct.unpack_from(order + ("H" if kind == 3 else "I"), data, ifd + 10 + 12 * k)[0]
    return 1


def _tifffile_decode(data: np.ndarray) -> np.ndarray | None:
    """TIFFs OpenCV reads wrongly or not at all; 3/4 channels flipped to match OpenCV's BGR."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data.tobytes())) as tif:
            image = tif.pages[0].asarray()
    except Exception:
        return None
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = np.concatenate([image[..., 2::-1], image[..., 3:]], axis=-1)
    return image if image.ndim in (2, 3) else None


def read_image(path: str | Path, fmt: str) -> Scan:
    """A 2D image as a :class:`Scan` with an ``H x W x C`` array."""
    path = Path(path)
    image = decode_image(path)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        raise ScanError(f"{path}: expected a 2D image, got array shape {image.shape}")
    return Scan(path=path, format=fmt, array=image, geometry={"size": image.shape[:2]})


def read_mask_image(path: str | Path) -> np.ndarray:
    """A reference mask image as ``H x W`` bool (any non-zero pixel is tumour)."""
    image = decode_image(path)
    if image.ndim == 3:
        image = image.max(axis=2)
    return image > 0


def encode(path: Path, image: np.ndarray) -> bytes:
    """Encode with the codec of ``path``'s suffix (checked: OpenCV fails silently otherwise)."""
    ok, buffer = cv2.imencode(path.suffix.lower(), image)
    if not ok:
        raise ScanError(f"{path}: OpenCV could not encode a {image.dtype} {image.shape} image")
    return buffer.tobytes()


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an image atomically in the format given by the suffix."""
    path = Path(path)
    atomic_write_bytes(path, encode(path, image))


def write_mask_image(path: str | Path, mask: np.ndarray) -> None:
    """``H x W`` bool mask as 0/255 uint8 (TIFF or PNG; never JPEG, which is lossy)."""
    write_image(path, np.where(np.asarray(mask, dtype=bool), MASK_ON, 0).astype(np.uint8))


def write_prob_image(path: str | Path, prob: np.ndarray) -> None:
    """``H x W`` probabilities in [0, 1] as a 16-bit image (value / 65535)."""
    scaled = np.rint(np.clip(prob, 0.0, 1.0) * PROB_MAX).astype(np.uint16)
    write_image(path, scaled)
