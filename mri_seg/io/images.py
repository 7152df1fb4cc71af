"""2D image files (TIFF, PNG, JPEG) read and written with OpenCV.

Channel order: images are read exactly like the training slices
(:func:`read_slice`: ``IMREAD_UNCHANGED`` through :func:`decode_image`), i.e. a
3-channel file comes back in OpenCV's BGR order. The model was trained on that
order, so every image input goes through the same call and the same order.
Bytes are read with numpy and decoded with ``cv2.imdecode`` (same decoder, any file
name, OpenCV's log lines silenced in favour of one clear error).
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np

from mri_seg.io.scan import PageWarning, Scan, ScanError, require_scan_file
from mri_seg.utils.atomic import atomic_write_bytes
from mri_seg.utils.opencv import quiet_opencv

MASK_ON = 255  # 2D masks are written 0/255 like the Kaggle masks
PROB_MAX = 65535  # probabilities as 16-bit images: p * 65535


def decode_image(path: str | Path) -> np.ndarray:
    """Decode an image file as OpenCV would read it (IMREAD_UNCHANGED, BGR order).

    TIFFs whose samples per pixel OpenCV would silently reduce (2, or more than 4) or
    cannot decode are read with tifffile instead, so the channel rules see the real
    channel count.

    Decisions (issue 11): a multi-page TIFF is segmented from its first full-resolution
    page with a :class:`PageWarning` naming the page count (the warning reaches the
    scan's ``warnings`` column; store volumes as NIfTI or one slice per file). CMYK
    images (4-component JPEG, separated TIFF) are refused: converting ink densities back
    to three MRI sequences is a guess that decodes differently from the same pixels
    saved as RGB, so the model would see intensities it was never trained on.
    """
    path = require_scan_file(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ScanError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if _jpeg_components(data) == 4:
        raise ScanError(f"{path}: CMYK JPEG; save the scan as grayscale or RGB (CMYK cannot be mapped back to "
                        "MRI sequences faithfully)")  # fmt: skip
    image = _cv2_decode(data)
    if path.suffix.lower() in (".tif", ".tiff") and data.size:
        spp, pages, cmyk = _tiff_info(data)
        if cmyk:
            raise ScanError(f"{path}: CMYK (separated) TIFF; save the scan as grayscale or RGB")
        if pages > 1:
            warnings.warn(f"{path}: multi-page TIFF ({pages} full-size pages); only page 1 was segmented "
                          "(store a volume as NIfTI or one slice per file)", PageWarning, stacklevel=2)  # fmt: skip
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


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # JPEG start-of-frame markers
_SEPARATED = 5  # TIFF PhotometricInterpretation of CMYK
_MAX_PAGES = 100_000  # IFD chain walk limit (a looping chain in a damaged file)


def _jpeg_components(data: np.ndarray) -> int | None:
    """Number of colour components of a JPEG (3 YCbCr/RGB, 4 CMYK/YCCK), None when not a JPEG."""
    raw = data[:65536].tobytes()
    if raw[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _SOF_MARKERS:
            return raw[i + 9] if i + 9 < len(raw) else None
        if marker == 0xDA:  # scan data before any frame header
            return None
        i += 2 + int.from_bytes(raw[i + 2 : i + 4], "big")
    return None


def _tiff_info(data: np.ndarray) -> tuple[int | None, int, bool]:
    """(samples per pixel of page 1, full-resolution page count, CMYK) of a TIFF.

    Read from the header (prepare decodes every slice); tifffile for BigTIFF or an
    unusual layout; ``(None, 1, False)`` when unparsable.
    """
    try:
        return _classic_tiff_info(data)
    except (ValueError, IndexError, struct.error):
        pass
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data.tobytes())) as tif:
            first = tif.pages[0]
            pages = sum(1 for p in tif.pages if not getattr(p, "is_reduced", False))
            return int(first.samplesperpixel), max(pages, 1), int(first.photometric) == _SEPARATED
    except Exception:
        return None, 1, False


def _classic_tiff_info(data: np.ndarray) -> tuple[int, int, bool]:
    """:func:`_tiff_info` of a classic TIFF from its IFD chain (tags 254, 262, 277); ValueError otherwise."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2].tobytes())
    buf = data.data  # the file's bytes (a memoryview, no copy)
    if order is None or struct.unpack_from(order + "H", buf, 2)[0] != 42:
        raise ValueError("not a classic TIFF")
    ifd: int = struct.unpack_from(order + "I", buf, 4)[0]
    seen: set[int] = set()
    pages = 0
    first: dict[int, int] | None = None
    while ifd and ifd not in seen and len(seen) < _MAX_PAGES:
        seen.add(ifd)
        count = struct.unpack_from(order + "H", buf, ifd)[0]
        tags: dict[int, int] = {}
        for k in range(count):
            tag, kind = struct.unpack_from(order + "HH", buf, ifd + 2 + 12 * k)
            if tag in (254, 262, 277):
                tags[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), buf, ifd + 10 + 12 * k)[0]
        if first is None:
            first = tags
        if not tags.get(254, 0) & 1:  # NewSubfileType bit 0: a reduced-resolution copy (thumbnail)
            pages += 1
        ifd = struct.unpack_from(order + "I", buf, ifd + 2 + 12 * count)[0]
    first = first or {}
    return int(first.get(277, 1)), max(pages, 1), first.get(262) == _SEPARATED


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


def _decode_as(path: str | Path, what: str) -> np.ndarray:
    """:func:`decode_image`, its error saying which kind of file could not be read."""
    try:
        return decode_image(path)
    except ScanError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise ScanError(f"{path}: unreadable {what} ({reason})") from exc


def read_slice(path: str | Path) -> np.ndarray:
    """A training slice: ``H x W x 3`` uint8, channels in OpenCV order; ScanError naming the file otherwise."""
    image = _decode_as(path, "image")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ScanError(f"{path}: expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    return image


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file (training label or ``--with-truth`` reference) as ``H x W`` bool: any non-zero pixel is tumour.

    One channel only, as the Kaggle masks (prepare reports other masks as ``mask_channels``
    defects): a 3-channel file is refused rather than guessed at (a colour overlay saved
    as ``*_mask.png`` would otherwise read as tumour wherever it is not black).
    """
    mask = _decode_as(path, "mask")
    if mask.ndim != 2:
        raise ScanError(f"{path}: expected a 1-channel mask, got shape {mask.shape}")
    return mask > 0


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
