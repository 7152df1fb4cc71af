"""One registry of the supported file types: how to read a scan, how to write its outputs.

Types: ``tiff`` (.tif/.tiff), ``png``, ``jpeg`` (.jpg/.jpeg), ``nifti`` (.nii/.nii.gz),
``kaggle`` (a patient folder of Kaggle-named TIFF slices, grouped into one volume), and
``brats`` / ``nnunet`` (one NIfTI file per sequence, grouped into one case: :mod:`mri_seg.io.cases`),
``dicom`` (a DICOM study: files found by their preamble, whatever their names, grouped by
StudyInstanceUID into one case named ``study-<hash>``: :mod:`mri_seg.io.dicom`; outputs a NIfTI
mask in the FLAIR series' geometry and a DICOM SEG: :mod:`mri_seg.io.dicom_seg`).
Every scan is read into the training layout with channels in the model's sequence order
(:func:`read_source` with :class:`mri_seg.io.options.ReadOptions`).
Masks are written in the input's format and geometry, except JPEG inputs, whose masks
and probability maps are PNG (JPEG is lossy: a 0/255 mask would not survive it).

Discovery (:func:`discover`) walks a folder recursively (or takes one file), groups
Kaggle slices by patient folder and BraTS / nnU-Net files by case, treats every other
supported file as one scan, and
skips hidden entries, ``*_mask.*`` files (reference masks) and excluded folders (the
output folder when it lies inside the input folder).

Discovery never fails on a strange tree: linked folders are followed, each real folder
once (a link loop becomes a ``skipped`` entry in :attr:`Discovery.unusable`); a folder
that cannot be listed becomes an ``error`` entry; a broken link, link loop or special
file (FIFO, socket, device) with a scan's name stays a scan whose reading fails with a
one-line :class:`ScanError` (:func:`mri_seg.io.scan.unusable_reason`), so it gets its
own error row and the rest of the batch goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from mri_seg.io import cases, dicom, dicom_seg, images, kaggle, nifti
from mri_seg.io.options import ReadOptions, as_options
from mri_seg.io.scan import Scan, ScanError
from mri_seg.io.sequences import to_model


@dataclass(frozen=True)
class FileType:
    """How one file type is read and how its outputs are written (arrays are ``D x H x W``)."""

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[Path, ReadOptions], Scan] | None  # None: read by read_source (grouped types)
    write_mask: Callable[[list[Path], np.ndarray, Scan], None]
    write_prob: Callable[[list[Path], np.ndarray, Scan], None]
    mask_ext: str  # file extension of the written mask / probability files ("" = per-slice Kaggle files)


def _image_writer(write: Callable[[Path, np.ndarray], None]) -> Callable[[list[Path], np.ndarray, Scan], None]:
    def _write(paths: list[Path], volume: np.ndarray, scan: Scan) -> None:
        if len(paths) != len(volume):
            raise ScanError(f"{scan.path}: {len(volume)} slices for {len(paths)} output files")
        for path, plane in zip(paths, volume):
            write(path, plane)

    return _write


def _nifti_writer(write: Callable[[Path, np.ndarray, Scan], None]) -> Callable[[list[Path], np.ndarray, Scan], None]:
    def _write(paths: list[Path], volume: np.ndarray, scan: Scan) -> None:
        (path,) = paths
        write(path, volume, scan)

    return _write


def _read_image_as(fmt: str) -> Callable[[Path, ReadOptions], Scan]:
    def _read(path: Path, options: ReadOptions | None = None) -> Scan:
        return images.read_image(path, fmt)

    return _read


def _read_nifti(path: Path, options: ReadOptions | None = None) -> Scan:
    return nifti.read_nifti(path, options)


_MASK_IMG = _image_writer(images.write_mask_image)
_PROB_IMG = _image_writer(images.write_prob_image)

FILE_TYPES: dict[str, FileType] = {
    "tiff": FileType("tiff", (".tif", ".tiff"), _read_image_as("tiff"), _MASK_IMG, _PROB_IMG, ".tif"),
    "png": FileType("png", (".png",), _read_image_as("png"), _MASK_IMG, _PROB_IMG, ".png"),
    "jpeg": FileType("jpeg", (".jpg", ".jpeg"), _read_image_as("jpeg"), _MASK_IMG, _PROB_IMG, ".png"),
    "nifti": FileType(
        "nifti",
        (".nii", ".nii.gz"),
        _read_nifti,
        _nifti_writer(nifti.write_mask_nifti),
        _nifti_writer(nifti.write_prob_nifti),
        "",  # same as the input (.nii or .nii.gz)
    ),
    "kaggle": FileType("kaggle", (), None, _MASK_IMG, _PROB_IMG, ".tif"),  # read via read_source
    **{
        kind: FileType(kind, (), None, _nifti_writer(nifti.write_mask_nifti), _nifti_writer(nifti.write_prob_nifti), "")
        for kind in ("brats", "nnunet")  # one NIfTI per sequence, read via read_source
    },
    "dicom": FileType("dicom", (), None, lambda paths, mask, scan: _write_dicom_mask(paths, mask, scan),
                      _nifti_writer(nifti.write_prob_nifti), ".nii.gz"),  # a study, read via read_source
}


def _write_dicom_mask(paths: list[Path], mask: np.ndarray, scan: Scan) -> None:
    """A DICOM study's mask: NIfTI in the FLAIR series' geometry, then the DICOM SEG (same voxels)."""
    nifti_path, seg_path = paths
    nifti.write_mask_nifti(nifti_path, mask, scan)
    dicom_seg.write_seg(seg_path, nifti.to_spatial(np.asarray(mask, dtype=bool), scan), scan)


def file_type_of(path: str | Path) -> str | None:
    """Registry key for a file name, or None when the type is not supported."""
    name = Path(path).name.lower()
    for key, ft in FILE_TYPES.items():
        if any(name.endswith(s) for s in ft.suffixes):
            return key
    return None


def file_base(path: Path) -> str:
    """File name without its (possibly double) extension."""
    return nifti.nifti_stem(path) if nifti.is_nifti(path) else path.stem


# ----------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class Source:
    """One scan to segment, before reading: where it is and how its outputs are named.

    ``rel``: path relative to the input root, mirrored under the output folder and used
    as the scan's id in ``predictions.csv`` (a BraTS / nnU-Net case: ``<folder>/<case>``).
    ``members``: a Kaggle volume's slice files, or a case's sequence files.
    ``truth``: reference mask file of a 2D image / NIfTI volume / case, when one lies beside it.
    """

    path: Path
    rel: PurePosixPath
    format: str
    members: tuple[Path, ...] = ()
    truth: Path | None = None
    base: str = ""  # output base name (file base, disambiguated when two inputs share it)


@dataclass(frozen=True)
class Unusable:
    """A folder discovery could not search: ``status`` error (unreadable) or skipped (link loop)."""

    path: Path
    status: str
    reason: str


@dataclass
class Discovery:
    sources: list[Source]
    input_files: set[Path] = field(default_factory=set)  # every file seen under the input (resolved)
    skipped: list[Path] = field(default_factory=list)  # files of unsupported types
    unusable: list[Unusable] = field(default_factory=list)  # folders that could not be searched, and why


def _resolve(path: Path) -> Path:
    """``path.resolve()``, or the absolute path when it cannot be resolved (link loop)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 on a symlink loop
        return path.absolute()


def _walk(root: Path, exclude: list[Path], unusable: list[Unusable]) -> list[Path]:
    """Every visible file under ``root``; linked folders followed, each real folder searched once."""
    files: list[Path] = []
    searched: set[tuple[int, int]] = set()

    def unreadable(exc: OSError) -> None:
        reason = f"folder cannot be read ({exc.strerror or exc}); the scans in it were not searched"
        unusable.append(Unusable(Path(exc.filename or root), "error", reason))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        here = Path(dirpath)
        try:
            st = os.stat(here)
            key = (st.st_dev, st.st_ino)
        except OSError:
            key = None
        if key is not None and key in searched:  # reached again through a folder link
            unusable.append(Unusable(here, "skipped", "link to a folder already searched (a symbolic link loop "
                                                      "or a second path to it); not searched twice"))  # fmt: skip
            dirnames[:] = []
            continue
        if key is not None:
            searched.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and _resolve(here / d) not in exclude)
        files += [here / f for f in sorted(filenames) if not f.startswith(".")]
    return files


def _is_mask_name(path: Path) -> bool:
    return file_base(path).lower().endswith("_mask")


def _sibling_truth(path: Path, fmt: str, present: set[Path]) -> Path | None:
    """``<base>_mask.<ext>`` beside a 2D image / NIfTI volume (same extension preferred)."""
    base = file_base(path)
    if fmt == "nifti":
        candidates = [path.with_name(f"{base}_mask{nifti.nifti_suffix(path)}")]
        candidates += [path.with_name(f"{base}_mask{s}") for s in (".nii.gz", ".nii")]
    else:
        candidates = [path.with_name(f"{base}_mask{path.suffix}")]
        candidates += [path.with_name(f"{base}_mask{s}") for s in (".png", ".tif", ".tiff")]
    return next((c for c in candidates if c in present), None)


def discover(input_path: str | Path, exclude: list[Path] | None = None) -> Discovery:
    """Find the scans under ``input_path`` (a folder, searched recursively, or one file)."""
    input_path = Path(input_path)
    exclude = [Path(e).resolve() for e in exclude or []]
    if input_path.is_file():
        # one file: its folder's files are its neighbours (reference masks) and are never written over
        root, files = input_path.parent, [input_path]
        neighbours = [p for p in root.iterdir() if p.is_file()]
        unusable: list[Unusable] = []
    elif input_path.is_dir():
        unusable = []
        root, files = input_path, _walk(input_path, exclude, unusable)
        neighbours = files
    else:
        raise FileNotFoundError(f"input not found: {input_path}")
    present = set(neighbours)
    found = Discovery(sources=[], input_files={_resolve(f) for f in neighbours}, unusable=unusable)
    case_groups, files = cases.group_cases(files)
    groups: dict[tuple[Path, str], list[Path]] = {}
    dicom_files: list[Path] = []
    for f in files:
        parsed = kaggle.parse_kaggle_name(f.name)
        if parsed is not None:
            if not parsed[2]:
                groups.setdefault((f.parent, parsed[0]), []).append(f)
            continue
        fmt = file_type_of(f)
        if fmt is None:
            if dicom.is_dicom_file(f):
                dicom_files.append(f)
            else:
                found.skipped.append(f)
            continue
        if _is_mask_name(f):
            continue
        rel = PurePosixPath(f.relative_to(root).as_posix())
        found.sources.append(Source(f, rel, fmt, truth=_sibling_truth(f, fmt, present), base=file_base(f)))
    for (folder, prefix), members in groups.items():
        rel_folder = folder.relative_to(root).as_posix() if folder != root else folder.name
        rel = PurePosixPath(rel_folder) if folder.name == prefix else PurePosixPath(rel_folder) / prefix
        if input_path.is_file():  # one Kaggle slice given directly: a one-slice volume
            rel = PurePosixPath(prefix)
        found.sources.append(Source(folder, rel, "kaggle", tuple(kaggle.sort_slices(members)), base=prefix))
    found.sources += [_case_source(c, root, present) for c in case_groups]
    studies, dicomdirs = dicom.group_studies(dicom_files)
    found.skipped += dicomdirs
    for name, members in studies.items():  # named by a hash, never by a header value or the input's folders
        found.sources.append(Source(root / name, PurePosixPath(name), "dicom", tuple(members), base=name))
    found.sources = _disambiguate(sorted(found.sources, key=lambda s: str(s.rel)))
    return found


def _case_source(case: cases.CaseFiles, root: Path, present: set[Path]) -> Source:
    """A BraTS / nnU-Net case: id ``<folder>/<case>``; truth ``_seg`` (BraTS) or ``<case>_mask.nii[.gz]``."""
    rel = PurePosixPath((case.folder / case.case).relative_to(root).as_posix())
    members = tuple(case.members.values())
    truth = case.truth
    if truth is None:  # also when one file of the case was given as the input
        names = [f"{case.case}_seg" if case.kind == "brats" else None, f"{case.case}_mask"]
        candidates = [case.folder / f"{n}{s}" for n in names if n for s in (".nii.gz", ".nii")]
        truth = next((c for c in candidates if c in present), None)
    return Source(case.folder / case.case, rel, case.kind, members, truth, base=case.case)


def _disambiguate(sources: list[Source]) -> list[Source]:
    """Two files with the same base in one folder (``x.png``, ``x.tif``): use the full name as base."""
    seen: dict[tuple[str, str], int] = {}
    for s in sources:
        if s.format != "kaggle":
            key = (str(s.rel.parent), s.base)
            seen[key] = seen.get(key, 0) + 1
    out = []
    for s in sources:
        if s.format != "kaggle" and seen[(str(s.rel.parent), s.base)] > 1:
            s = Source(s.path, s.rel, s.format, s.members, s.truth, s.path.name.replace(".", "_"))
        out.append(s)
    return out


def read_source(source: Source, options: ReadOptions | int | str | None = None) -> Scan:
    """Read a discovered scan: training layout, channels in ``options.model``'s order.

    ``options`` may also be just the NIfTI slice axis (``auto`` or 0/1/2), other settings default.
    Channel adaptations (a missing sequence replaced by FLAIR, alpha dropped) are
    :class:`mri_seg.io.scan.ChannelWarning` warnings; ``scan.sequences`` records them.
    """
    options = as_options(options)
    if source.format == "kaggle":
        raw = kaggle.read_kaggle_volume(source.path, list(source.members))
    elif source.format in ("brats", "nnunet"):
        raw = cases.read_case(_case_files(source), options)
    elif source.format == "dicom":
        raw = dicom.read_study(source.members, source.path, options)
    else:
        read = FILE_TYPES[source.format].read
        if read is None:  # only the grouped types (handled above) have no reader of their own
            raise ScanError(f"{source.path}: file type {source.format} has no reader")
        raw = read(source.path, options)
    return to_model(raw, options.model)


def _case_files(source: Source) -> cases.CaseFiles:
    members = {cases.member_key(p.name): p for p in source.members}
    return cases.CaseFiles(source.path.parent, source.base, source.format, members, source.truth)


def read_truth(source: Source, scan: Scan) -> np.ndarray | None:
    """Reference mask as ``D x H x W`` bool in the scan's slice order, or None when there is none."""
    if source.format == "kaggle":
        return kaggle.read_kaggle_truth(scan)
    if source.truth is None:
        return None
    if source.format in ("nifti", "brats", "nnunet"):
        return nifti.read_nifti_mask(source.truth, scan)
    mask = images.read_mask(source.truth)
    if mask.shape != scan.array.shape[:2]:
        raise ScanError(f"{source.truth}: mask size {mask.shape} != image size {scan.array.shape[:2]}")
    return mask[None]


# ----------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class OutputPaths:
    """Where one scan's outputs go (lists: one file per 2D image / NIfTI, one per Kaggle slice)."""

    masks: list[Path]
    probs: list[Path]
    overlay: Path

    def all(self, with_probs: bool) -> list[Path]:
        return [*self.masks, *(self.probs if with_probs else []), self.overlay]


def output_paths(source: Source, out_dir: Path) -> OutputPaths:
    """Output file names for ``source`` under ``out_dir``, mirroring the input tree."""
    if source.format == "kaggle":
        folder = out_dir / source.rel
        stems = [m.stem for m in source.members]
        return OutputPaths(
            [folder / f"{s}_mask.tif" for s in stems],
            [folder / f"{s}_prob.tif" for s in stems],
            folder / f"{source.base}_overlay.png",
        )
    folder = out_dir / source.rel.parent
    if source.format == "dicom":  # NIfTI mask + DICOM SEG
        return OutputPaths(
            [folder / f"{source.base}_mask.nii.gz", folder / f"{source.base}_seg.dcm"],
            [folder / f"{source.base}_prob.nii.gz"],
            folder / f"{source.base}_overlay.png",
        )
    ext = FILE_TYPES[source.format].mask_ext or nifti.nifti_suffix(source.members[0] if source.members else source.path)
    return OutputPaths(
        [folder / f"{source.base}_mask{ext}"],
        [folder / f"{source.base}_prob{ext}"],
        folder / f"{source.base}_overlay.png",
    )


def write_outputs(source: Source, scan: Scan, paths: OutputPaths, mask: np.ndarray, prob: np.ndarray | None) -> None:
    """Write the mask (and probabilities when given) of a scan in its input's format."""
    ft = FILE_TYPES[source.format]
    ft.write_mask(paths.masks, mask, scan)
    if prob is not None:
        ft.write_prob(paths.probs, prob, scan)
