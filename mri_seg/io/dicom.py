"""DICOM studies read with pydicom: files -> studies -> series -> one case in the training layout.

- Discovery (:func:`is_dicom_file`, :func:`group_studies`): a file is DICOM when it has
  the ``DICM`` preamble (the extension does not matter); DICOMDIR files are skipped. Files
  are grouped by StudyInstanceUID (a study is one case, named ``study-<hash>``: a short
  sha256 of the UID, never a header value) and, when read, by SeriesInstanceUID.
- A series becomes a volume by geometry (:func:`build_series`): frames (files, or the
  frames of an enhanced multi-frame image, from its per-frame functional groups) sorted
  by ImagePositionPatient projected on the ImageOrientationPatient normal (never by
  InstanceNumber or file name), spacing from the positions, RescaleSlope/Intercept
  applied (unscaled 8/16-bit integers keep their dtype, like NIfTI and TIFF input; else
  float32). The volume's affine goes through :mod:`mri_seg.io.orientation` exactly like a
  NIfTI volume's, and the mask goes back to the series' own geometry.
- Refused series (one line naming the series, the study goes on without it): non-MR
  modality, mixed orientations (localizers are skipped with an info note instead),
  frames sharing a position, no geometry, a compressed transfer syntax without decoder
  (the message names ``pip install 'mri_seg[dicom-codecs]'``). Uneven or missing slice
  gaps beyond ``infer.dicom.gap_tolerance`` are a warning naming the gap.
- Series -> sequences (:func:`classify`, :func:`choose`): the ``infer.dicom.series_rules``
  regular expressions (case-insensitive) over SeriesDescription, ProtocolName, SequenceName, then the
  acquisition fallbacks (a long InversionTime is FLAIR; a short RepetitionTime is T1,
  post-contrast when ContrastBolusAgent is set). Two candidates: ``infer.dicom.tie_break``
  and a warning. No FLAIR: the study is an error row. Pre/post series on another voxel
  grid than the FLAIR are not resampled: FLAIR is used in their place, with a warning.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mri_seg.io.options import DicomSettings, ReadOptions
from mri_seg.io.orientation import index_layout, oriented_layout
from mri_seg.io.scan import OrientationWarning, Scan, ScanError, ScanWarning, require_scan_file

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
CODECS_EXTRA = "pip install 'mri_seg[dicom-codecs]'"
LOCALIZER = re.compile(r"locali[sz]er|scout|survey|pilot|3.?plane|tri.?plane", re.IGNORECASE)
ORIENTATION_ATOL = 1e-3  # direction cosines written as DS text
POSITION_ATOL_MM = 0.01
MODEL_ORDER = ("flair", "pre", "post")  # reference first: the FLAIR's grid is the case's grid
RULE_FIELDS = ("SeriesDescription", "ProtocolName", "SequenceName")


class DicomWarning(ScanWarning):
    """A series refused or adapted (one line naming it); the study goes on."""


class DicomNote(ScanWarning):
    """Information about a study's series (a localizer skipped): goes to ``message``, not ``warnings``."""


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` has the DICOM preamble (``DICM`` at byte 128), whatever its name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def short_hash(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def study_name(study_uid: str) -> str:
    """A study's name in every output: a short hash of its StudyInstanceUID (no header value)."""
    return f"study-{short_hash(study_uid)}"


def _quiet_read(path: Path, **kwargs: Any) -> Any:
    """``pydicom.dcmread`` with pydicom's own warnings silenced (they may quote header values)."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(str(path), **kwargs)


def group_studies(files: Iterable[Path]) -> tuple[dict[str, list[Path]], list[Path]]:
    """DICOM files by study name (``study-<hash>``; an unreadable file: ``dicom-file-<hash>``,
    whose reading then fails with its reason), and the DICOMDIR files (skipped)."""
    studies: dict[str, list[Path]] = {}
    dicomdirs: list[Path] = []
    for path in files:
        try:
            ds = _quiet_read(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
            sop_class = str(getattr(ds.file_meta, "MediaStorageSOPClassUID", ""))
            uid = str(ds.get("StudyInstanceUID", "") or "")
        except Exception:
            sop_class, uid = "", ""
        if sop_class == DICOMDIR_SOP_CLASS:
            dicomdirs.append(path)
            continue
        name = study_name(uid) if uid else f"dicom-file-{short_hash(str(path))}"
        studies.setdefault(name, []).append(path)
    return studies, dicomdirs


# ----------------------------------------------------------------------------- series geometry


@dataclass
class Frame:
    """One plane of a series: which file (and frame of a multi-frame file) and where it lies."""

    path: Path
    dataset: Any  # the file's header (pixels not loaded)
    index: int | None  # frame of a multi-frame file (0-based), None for a single-frame file
    position: np.ndarray
    orientation: np.ndarray
    spacing: tuple[float, float]  # PixelSpacing: (between rows, between columns) in mm
    shape: tuple[int, int]  # rows, columns
    slope: float = 1.0
    intercept: float = 0.0


@dataclass
class Series:
    uid: str
    label: str  # "series 5 'AX FLAIR'": how every message names it
    number: int
    description: str
    datasets: list[Any]
    paths: list[Path]
    frames: list[Frame] = field(default_factory=list)  # sorted by position along the normal
    problem: str = ""  # refused: why
    note: str = ""  # skipped as a localizer
    gap_warning: str = ""
    affine: np.ndarray | None = None  # RAS+ affine of the X (columns) x Y (rows) x Z (sorted frames) volume

    @property
    def usable(self) -> bool:
        return not self.problem and not self.note

    def value(self, keyword: str) -> Any:
        """A header value of the series: its first file, then an enhanced image's functional groups."""
        return _find(self.datasets[0], keyword)


def _find(ds: Any, keyword: str) -> Any:
    value = ds.get(keyword)
    if value not in (None, ""):
        return value
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in (ds.get(group) or [])[:1]:
            for element in item:
                if element.VR == "SQ":
                    for inner in element.value[:1]:
                        if inner.get(keyword) not in (None, ""):
                            return inner.get(keyword)
    return None


def series_label(ds: Any) -> str:
    number = ds.get("SeriesNumber")
    description = " ".join(str(ds.get("SeriesDescription", "") or "").split())[:64]
    return f"series {number if number not in (None, '') else '?'}" + (f" '{description}'" if description else "")


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) else None


def _item(ds: Any, sequence: str) -> Any:
    seq = ds.get(sequence)
    return seq[0] if seq else None


def _group_value(frame_group: Any, shared: Any, sequence: str, keyword: str) -> Any:
    for group in (frame_group, shared):
        item = _item(group, sequence) if group is not None else None
        if item is not None and item.get(keyword) is not None:
            return item.get(keyword)
    return None


def _frames_of(path: Path, ds: Any) -> list[Frame]:
    """The planes of one file: a single-frame image, or an enhanced image's per-frame functional groups."""
    shape = (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
    count = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        shared = _item(ds, "SharedFunctionalGroupsSequence")
        frames = []
        for k, group in enumerate(per_frame):
            position = _floats(_group_value(group, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
            orientation = _floats(_group_value(group, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
            spacing = _floats(_group_value(group, shared, "PixelMeasuresSequence", "PixelSpacing"), 2)
            if position is None or orientation is None or spacing is None:
                raise ScanError("an enhanced image frame without plane position, orientation or pixel spacing")
            slope = _group_value(group, shared, "PixelValueTransformationSequence", "RescaleSlope")
            intercept = _group_value(group, shared, "PixelValueTransformationSequence", "RescaleIntercept")
            frames.append(Frame(path, ds, k, position, orientation, (spacing[0], spacing[1]), shape,
                                float(slope if slope is not None else 1.0),
                                float(intercept if intercept is not None else 0.0)))  # fmt: skip
        return frames
    if count > 1:
        raise ScanError(f"a multi-frame image ({count} frames) without per-frame functional groups: its frames "
                        "have no positions")  # fmt: skip
    position = _floats(ds.get("ImagePositionPatient"), 3)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    if position is None or orientation is None or spacing is None:
        raise ScanError("no ImagePositionPatient, ImageOrientationPatient or PixelSpacing: the slices cannot be placed")
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    return [Frame(path, ds, None, position, orientation, (spacing[0], spacing[1]), shape,
                  float(slope if slope not in (None, "") else 1.0),
                  float(intercept if intercept not in (None, "") else 0.0))]  # fmt: skip


def _decoder_problem(ds: Any) -> str:
    """Why this file's pixel data cannot be decoded here, or ''."""
    from pydicom.pixels import get_decoder

    syntax = getattr(ds.file_meta, "TransferSyntaxUID", None)
    if syntax is None:
        return ""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"transfer syntax {syntax} has no pixel data decoder"
    if not decoder.is_available:
        return f"transfer syntax '{syntax.name}' needs a decoder that is not installed ({CODECS_EXTRA})"
    return ""


def _is_localizer(ds: Any) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    text = " ".join(str(ds.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName"))
    return "LOCALIZER" in image_type or bool(LOCALIZER.search(text))


def build_series(uid: str, items: list[tuple[Path, Any]], settings: DicomSettings) -> Series:
    """One series' frames in geometric order, its affine, or the reason it is refused/skipped."""
    first = items[0][1]
    series = Series(uid, series_label(first), int(first.get("SeriesNumber", 0) or 0),
                    str(first.get("SeriesDescription", "") or ""), [ds for _, ds in items], [p for p, _ in items])  # fmt: skip
    modality = str(first.get("Modality", "") or "")
    if modality != "MR":
        series.problem = f"modality {modality or 'not given'}, not MR"
        return series
    if _is_localizer(first):
        series.note = "skipped: a localizer"
        return series
    for _, ds in items:
        photometric = str(ds.get("PhotometricInterpretation", "") or "")
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or photometric not in ("MONOCHROME2", ""):
            series.problem = f"PhotometricInterpretation {photometric or '?'}: not a grayscale (MONOCHROME2) MR image"
            return series
        if "PixelData" not in ds and "FloatPixelData" not in ds and not ds.get("Rows"):
            series.problem = "no pixel data"
            return series
        decoder = _decoder_problem(ds)
        if decoder:
            series.problem = decoder
            return series
    try:
        frames = [f for path, ds in items for f in _frames_of(path, ds)]
    except ScanError as exc:
        series.problem = str(exc)
        return series
    orientations = np.array([f.orientation for f in frames])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_ATOL:
        count = len(np.unique(np.round(orientations, 2), axis=0))
        series.problem = f"mixed orientations within the series ({count} orientations in {len(frames)} frames)"
        return series
    if len({(f.shape, np.round(f.spacing, 4).tobytes()) for f in frames}) > 1:
        series.problem = "frames of different sizes or pixel spacings within the series"
        return series
    row_dir, col_dir = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row_dir, col_dir)
    depth = np.array([float(np.dot(f.position, normal)) for f in frames])
    order = np.argsort(depth, kind="stable")
    frames, depth = [frames[i] for i in order], depth[order]
    gaps = np.diff(depth)
    if len(gaps) and gaps.min() < POSITION_ATOL_MM:
        same = int((gaps < POSITION_ATOL_MM).sum()) + 1
        series.problem = (f"{same} frames share a slice position (several echoes, phases or time points in one "
                          "series?); cannot make one volume")  # fmt: skip
        return series
    series.frames = frames
    series.affine = _affine(frames, normal, gaps, settings, series)
    return series


def _affine(frames: list[Frame], normal: np.ndarray, gaps: np.ndarray, settings: DicomSettings, series: Series) -> np.ndarray:
    """RAS+ affine of the X (columns) x Y (rows) x Z (frames in order) volume."""
    first = frames[0]
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    if len(frames) > 1:
        median = float(np.median(gaps))
        off = np.abs(gaps - median) > settings.gap_tolerance * median
        step = (frames[-1].position - first.position) / (len(frames) - 1)
        if off.any():
            k = int(np.argmax(np.abs(gaps - median)))
            series.gap_warning = (f"uneven slice gaps: {gaps[k]:.3g} mm between slices {k} and {k + 1} (median "
                                  f"{median:.3g} mm; {int(off.sum())} gap(s) beyond the tolerance {settings.gap_tolerance:g}): "
                                  "a slice may be missing; the NIfTI mask's affine assumes the median gap, the DICOM SEG "
                                  "places every frame exactly")  # fmt: skip
            direction = frames[-1].position - first.position
            step = direction / np.linalg.norm(direction) * median
    else:
        thickness = first.dataset.get("SpacingBetweenSlices") or first.dataset.get("SliceThickness") or 1.0
        step = normal * float(thickness)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * first.spacing[1]  # columns advance along the row direction
    lps[:3, 1] = col_dir * first.spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = first.position
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS -> NIfTI's RAS


# ----------------------------------------------------------------------------- series -> sequences


def _rules(settings: DicomSettings) -> list[tuple[str, re.Pattern[str]]]:
    from mri_seg.io.sequences import canonical

    rules = []
    for item in settings.series_rules:
        name, _, pattern = item.partition(":")
        rules.append((canonical(name.strip()) or name.strip(), re.compile(pattern.strip(), re.IGNORECASE)))
    return rules


def classify(series: Series, settings: DicomSettings) -> tuple[str | None, str]:
    """``(sequence name or None, reason)`` for a usable series: the rules, then the fallbacks."""
    for name, rx in _rules(settings):
        for keyword in RULE_FIELDS:
            text = " ".join(str(series.value(keyword) or "").split())
            if text and rx.search(text):
                return name, f"{keyword} '{text[:64]}' matches the {name} rule"
    inversion = _number(series.value("InversionTime"))
    repetition = _number(series.value("RepetitionTime"))
    if inversion is not None and inversion >= settings.flair_min_inversion_ms:
        return "flair", f"InversionTime {inversion:g} ms >= {settings.flair_min_inversion_ms:g} ms"
    if repetition is not None and repetition <= settings.t1_max_repetition_ms and not inversion:
        if series.value("ContrastBolusAgent"):
            return "post", f"RepetitionTime {repetition:g} ms (T1) and ContrastBolusAgent set"
        return "pre", f"RepetitionTime {repetition:g} ms (T1), no ContrastBolusAgent"
    return None, "no rule matched"


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def choose(series: list[Series], settings: DicomSettings) -> dict[str, tuple[Series, str]]:
    """The series for each model sequence, with the reason; ties broken by ``settings.tie_break`` with a warning."""
    candidates: dict[str, list[tuple[Series, str]]] = {}
    for s in series:
        name, reason = classify(s, settings)
        if name is not None:
            candidates.setdefault(name, []).append((s, reason))
    chosen = {}
    for name, found in candidates.items():
        if settings.tie_break == "latest_series":
            found.sort(key=lambda c: (c[0].number, len(c[0].frames)), reverse=True)
        else:
            found.sort(key=lambda c: (len(c[0].frames), c[0].number), reverse=True)
        chosen[name] = found[0]
        if len(found) > 1 and name in MODEL_ORDER:
            others = ", ".join(f"{s.label} ({len(s.frames)} slices)" for s, _ in found[1:])
            warnings.warn(f"{len(found)} candidate series for {name}: chose {found[0][0].label} "
                          f"({len(found[0][0].frames)} slices; tie-break {settings.tie_break}) over {others}",
                          DicomWarning, stacklevel=2)  # fmt: skip
    return chosen


def same_grid(a: Series, b: Series) -> bool:
    if len(a.frames) != len(b.frames) or a.frames[0].shape != b.frames[0].shape:
        return False
    pa = np.array([f.position for f in a.frames])
    pb = np.array([f.position for f in b.frames])
    return bool(np.allclose(pa, pb, atol=POSITION_ATOL_MM * 10)
                and np.allclose(a.frames[0].orientation, b.frames[0].orientation, atol=ORIENTATION_ATOL)
                and np.allclose(a.frames[0].spacing, b.frames[0].spacing, atol=1e-3))  # fmt: skip


# ----------------------------------------------------------------------------- pixels


def _pixels(path: Path, label: str) -> np.ndarray:
    ds = _quiet_read(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except Exception as exc:
        problem = _decoder_problem(ds) or " ".join(str(exc).split())[:200]
        raise ScanError(f"{label}: pixel data cannot be decoded ({problem})") from exc


def load_volume(series: Series) -> np.ndarray:
    """The series as ``X (columns) x Y (rows) x Z (frames in order)`` with the modality transform applied.

    Unscaled 8/16-bit integers keep their dtype (as NIfTI and TIFF input do, so a DICOM copy of a
    TIFF volume segments exactly like it); anything else is float32.
    """
    cache: dict[Path, np.ndarray] = {}
    planes = []
    for f in series.frames:
        if f.path not in cache:
            cache[f.path] = _pixels(f.path, series.label)
        data = cache[f.path]
        plane = data[f.index] if f.index is not None else data
        if plane.shape != f.shape:
            raise ScanError(f"{series.label}: a frame of shape {plane.shape}, expected {f.shape}")
        planes.append(plane)
    stack = np.stack(planes, axis=0)
    unscaled = all(f.slope == 1.0 and f.intercept == 0.0 for f in series.frames)
    if not (unscaled and stack.dtype.kind in "ui" and stack.dtype.itemsize <= 2):
        slopes = np.array([f.slope for f in series.frames])[:, None, None]
        intercepts = np.array([f.intercept for f in series.frames])[:, None, None]
        stack = (stack.astype(np.float64) * slopes + intercepts).astype(np.float32)
    return np.ascontiguousarray(stack.transpose(2, 1, 0))


# ----------------------------------------------------------------------------- a study as one scan


def read_headers(paths: Iterable[Path], label: str) -> dict[str, list[tuple[Path, Any]]]:
    """The study's files by SeriesInstanceUID; an unreadable file is a warning naming it."""
    by_series: dict[str, list[tuple[Path, Any]]] = {}
    for path in paths:
        try:
            require_scan_file(path)
            ds = _quiet_read(path, stop_before_pixels=True)
        except Exception as exc:
            warnings.warn(f"{path}: not a readable DICOM file ({type(exc).__name__}); left out of {label}",
                          DicomWarning, stacklevel=2)  # fmt: skip
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not ds.get("StudyInstanceUID"):
            warnings.warn(f"{path}: a DICOM file without StudyInstanceUID; left out", DicomWarning, stacklevel=2)
            continue
        by_series.setdefault(uid or f"no-series-{short_hash(str(path))}", []).append((path, ds))
    return by_series


def study_series(paths: Iterable[Path], label: str, settings: DicomSettings) -> list[Series]:
    """Every series of a study, built and checked; notes and refusals emitted as warnings."""
    found = []
    for uid, items in read_headers(paths, label).items():
        series = build_series(uid, items, settings)
        if series.note:
            warnings.warn(f"{series.label}: {series.note}", DicomNote, stacklevel=2)
        elif series.problem:
            warnings.warn(f"{series.label}: refused: {series.problem}", DicomWarning, stacklevel=2)
        elif series.gap_warning:
            warnings.warn(f"{series.label}: {series.gap_warning}", DicomWarning, stacklevel=2)
        found.append(series)
    return sorted(found, key=lambda s: (s.number, s.uid))


def select_sequences(series: list[Series], label: object, settings: DicomSettings) -> dict[str, tuple[Series, str]]:
    """FLAIR (required) and whichever of pre/post share its voxel grid."""
    usable = [s for s in series if s.usable]
    chosen = choose(usable, settings)
    if "flair" not in chosen:
        names = "; ".join(f"{s.label}: {classify(s, settings)[1]}" for s in usable) or "none usable"
        raise ScanError(f"{label}: no FLAIR series among {len(series)} series ({names}); FLAIR is required "
                        "(infer.dicom.series_rules names the series)")  # fmt: skip
    flair = chosen["flair"][0]
    out = {"flair": chosen["flair"]}
    for name in ("pre", "post"):
        if name not in chosen:
            continue
        s, reason = chosen[name]
        if same_grid(s, flair):
            out[name] = (s, reason)
        else:
            warnings.warn(f"{s.label} ({name}) is on another voxel grid than the FLAIR {flair.label}; not "
                          "resampled: not used", DicomWarning, stacklevel=2)  # fmt: skip
    return out


def read_study(paths: Iterable[Path], label: Path, options: ReadOptions) -> Scan:
    """A study as one :class:`Scan`: ``D x H x W x K`` in the training layout, channels named
    (FLAIR first), geometry for the NIfTI mask (the FLAIR series') and the DICOM SEG."""
    settings = options.dicom
    series = study_series(paths, str(label), settings)
    if not series:
        raise ScanError(f"{label}: no readable DICOM file")
    chosen = select_sequences(series, label, settings)
    names = [n for n in MODEL_ORDER if n in chosen]
    volumes = [load_volume(chosen[n][0]) for n in names]
    flair = chosen["flair"][0]
    assert flair.affine is not None
    layout = oriented_layout(flair.affine)
    if layout is None:
        warnings.warn(f"{label}: {flair.label} has a degenerate orientation; sliced along its frames in index space",
                      OrientationWarning, stacklevel=2)  # fmt: skip
        layout = index_layout(2)
    stack = np.stack(volumes, axis=-1)
    geometry = _geometry(flair, stack.shape[:3], stack.dtype, layout)
    geometry["columns"] = {
        "series": "; ".join(f"{n}={chosen[n][0].label}" for n in names),
        "series_reason": "; ".join(f"{n}: {chosen[n][1]}" for n in names),
    }
    sources = tuple(chosen[n][0].label for n in names)
    return Scan(path=label, format="dicom", array=layout.forward(stack), geometry=geometry, channels=tuple(names),
                channel_sources=sources)  # fmt: skip


def _geometry(flair: Series, shape: tuple[int, ...], dtype: np.dtype, layout: Any) -> dict[str, Any]:
    """What the NIfTI and SEG writers need: the FLAIR volume's affine and header, its files and frame order."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_xyzt_units("mm")
    header.set_sform(flair.affine, code=1)  # scanner coordinates
    header.set_qform(flair.affine, code=1)
    voxel = tuple(float(v) for v in np.linalg.norm(np.asarray(flair.affine)[:3, :3], axis=0))
    return {
        "affine": np.asarray(flair.affine).copy(),
        "header": header,
        "image_class": nib.Nifti1Image,
        "layout": layout,
        "axis": layout.axis,
        "spatial_shape": tuple(int(s) for s in shape),
        "voxel_mm": voxel,
        "dicom_frames": [(f.path, f.index) for f in flair.frames],  # mask frame k <-> this file/frame
        "dicom_sources": _source_datasets(flair),
    }


def _source_datasets(series: Series) -> list[Any]:
    """The FLAIR's files in the mask's frame order (one file per frame, or the multi-frame file)."""
    seen: dict[Path, Any] = {}
    for f in series.frames:
        seen.setdefault(f.path, f.dataset)
    return list(seen.values())
