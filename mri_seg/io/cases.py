"""Multi-file NIfTI cases: one file per sequence, BraTS or nnU-Net naming, read as ONE scan.

- BraTS: ``<case>_flair.nii.gz``, ``<case>_t1.nii.gz`` (pre-contrast), ``<case>_t1ce.nii.gz``
  (post-contrast; ``_t1gd`` also accepted), ``<case>_t2.nii.gz`` (not a model input:
  ignored, and said so in the ``sequences`` column); ``<case>_seg.nii.gz`` is the reference
  mask for ``--with-truth`` (any label > 0 is tumour).
- nnU-Net: ``<case>_0000.nii.gz``, ``_0001``, ...; what each channel number holds is
  declared by ``infer.nnunet_channels`` (default ``[flair, pre, post, t2]``, the order of the
  MSD / nnU-Net BrainTumour dataset). A group is a case only when it has ``_0000``, so a
  lone ``scan_2019.nii.gz`` stays a plain volume.

Files of one case are grouped by folder and case name. They must share the voxel grid
(shape and affine), else the case is an error row. The first file present of FLAIR, pre,
post (in that order) is the reference whose geometry and header the mask is written in, as
``<case>_mask.nii.gz`` (``.nii`` when the case's files are). Any missing model sequence is
replaced by FLAIR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mri_seg.io import nifti
from mri_seg.io.options import ReadOptions
from mri_seg.io.scan import Scan, ScanError
from mri_seg.io.sequences import canonical

BRATS_PATTERN = re.compile(r"^(?P<case>.+)_(?P<seq>flair|t1|t1ce|t1gd|t2|seg)\.nii(\.gz)?$", re.IGNORECASE)
NNUNET_PATTERN = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$")
TRUTH_KEY = "seg"  # BraTS reference segmentation
AFFINE_ATOL_MM = 1e-3  # header float rounding; far below any voxel size
REFERENCE_ORDER = ("flair", "pre", "post", "t2")


@dataclass(frozen=True)
class CaseFiles:
    """One case before reading: ``members`` maps a BraTS key (``flair``, ``t1``...) or an
    nnU-Net channel number (``"0000"``...) to its file."""

    folder: Path
    case: str
    kind: str  # brats | nnunet
    members: dict[str, Path]
    truth: Path | None = None


def parse_case_name(name: str) -> tuple[str, str, str] | None:
    """``(kind, case, key)`` for a BraTS / nnU-Net file name, else None."""
    m = BRATS_PATTERN.match(name)
    if m is not None:
        return "brats", m.group("case"), m.group("seq").lower()
    m = NNUNET_PATTERN.match(name)
    if m is not None:
        return "nnunet", m.group("case"), m.group("channel")
    return None


def member_key(name: str) -> str:
    """The member key (BraTS sequence key or nnU-Net channel number) of a case file name;
    ScanError for a name that is not a case file."""
    parsed = parse_case_name(name)
    if parsed is None:
        raise ScanError(f"{name}: not a BraTS / nnU-Net case file name")
    return parsed[2]


def group_cases(files: list[Path]) -> tuple[list[CaseFiles], list[Path]]:
    """Split ``files`` into cases and the files that are not part of one (returned in order)."""
    groups: dict[tuple[Path, str, str], dict[str, Path]] = {}
    for f in files:
        parsed = parse_case_name(f.name) if nifti.is_nifti(f) else None
        if parsed is not None:
            kind, case, key = parsed
            groups.setdefault((f.parent, kind, case), {}).setdefault(key, f)
    cases: list[CaseFiles] = []
    used: set[Path] = set()
    for (folder, kind, case), members in groups.items():
        truth = members.pop(TRUTH_KEY, None) if kind == "brats" else None
        if not members or (kind == "nnunet" and "0000" not in members):
            continue  # a lone `_seg` or `x_2019.nii.gz`: not a case
        cases.append(CaseFiles(folder, case, kind, dict(sorted(members.items())), truth))
        used.update(members.values())
        if truth is not None:
            used.add(truth)
    return cases, [f for f in files if f not in used]


def member_names(files: CaseFiles, options: ReadOptions) -> dict[str, Path]:
    """Sequence name -> file (nnU-Net channel numbers mapped by ``infer.nnunet_channels``)."""
    if files.kind == "brats":
        return {canonical(key) or key: path for key, path in files.members.items()}  # BraTS keys are sequence aliases
    named = {}
    for key, path in files.members.items():
        channel = int(key)
        if channel >= len(options.nnunet_channels):
            raise ScanError(f"{path}: channel {key} is not declared in infer.nnunet_channels "
                            f"({list(options.nnunet_channels)})")  # fmt: skip
        named[options.nnunet_channels[channel]] = path
    return named


def read_case(files: CaseFiles, options: ReadOptions) -> Scan:
    """All files of a case as one :class:`Scan` (``D x H x W x K``, channels named)."""
    named = member_names(files, options)
    order = [n for n in REFERENCE_ORDER if n in named]
    ref_path = named[order[0]]
    ref_data, layout, ref_image = nifti.load_volume(ref_path, options.nifti_axis)
    planes = []
    for name in order:
        path = named[name]
        if path == ref_path:
            data, image = ref_data, ref_image
        else:
            data, _, image = nifti.load_volume(path, options.nifti_axis)
            _check_same_grid(path, image, ref_path, ref_image)
        if data.ndim != 3:
            raise ScanError(f"{path}: a {files.kind} case needs one 3D volume per sequence, got shape {image.shape}")
        planes.append(data)
    stack = np.stack(planes, axis=-1)
    label = files.folder / files.case
    return Scan(path=label, format=files.kind, array=stack, geometry=nifti.volume_geometry(ref_image, layout),
                channels=tuple(order), channel_sources=tuple(named[n].name for n in order))  # fmt: skip


def _check_same_grid(path: Path, image, ref_path: Path, ref_image) -> None:
    if tuple(image.shape[:3]) != tuple(ref_image.shape[:3]):
        raise ScanError(f"{path}: shape {tuple(image.shape)} differs from {ref_path.name} "
                        f"{tuple(ref_image.shape)}; a case's sequences must share one voxel grid")  # fmt: skip
    if not np.allclose(image.affine, ref_image.affine, atol=AFFINE_ATOL_MM):
        raise ScanError(f"{path}: affine differs from {ref_path.name}'s; a case's sequences must share one "
                        "voxel grid (register/resample them first)")  # fmt: skip

