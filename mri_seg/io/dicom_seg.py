"""A study's mask as a DICOM Segmentation (highdicom), referencing the FLAIR series it was aligned to.

BINARY, one segment "Tumor" (SNOMED CT 108369006 "Neoplasm", category 49755003
"Morphologically Abnormal Structure"), algorithm identification = mri_seg's version and
the sha256 of the checkpoint file(s) (``AlgorithmParameters``). Every source frame gets a
segmentation frame, empty or not (``omit_empty_frames=False``: viewers such as OHIF then
align the SEG frame by frame, monai-deploy-app-sdk #397). The SEG copies the patient and
study modules of its source images, as the standard requires: it is the one output that
holds identifying data.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mri_seg.io.scan import Scan, ScanError
from mri_seg.utils.atomic import atomic_write_bytes

SEG_SERIES_NUMBER = 9900
SEGMENT_LABEL = "Tumor"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mri_seg")
    except PackageNotFoundError:
        return "0+unknown"


def source_frames(mask_xyz: np.ndarray, scan: Scan) -> np.ndarray:
    """The spatial ``X x Y x Z`` mask as the FLAIR's frames (``frames x rows x columns``), in the
    order of the source files (one per frame) or of the multi-frame file's own frames."""
    sorted_frames = np.ascontiguousarray(mask_xyz.transpose(2, 1, 0))
    where = scan.geometry["dicom_frames"]
    indices = [index for _, index in where]
    if all(i is None for i in indices):
        return sorted_frames
    if len({path for path, _ in where}) != 1 or any(i is None for i in indices):
        raise ScanError(f"{scan.path}: a series of several multi-frame files: no DICOM SEG written")
    out = np.zeros_like(sorted_frames)
    out[np.asarray(indices, dtype=int)] = sorted_frames
    return out


def build_seg(mask_xyz: np.ndarray, scan: Scan) -> Any:
    """The ``highdicom.seg.Segmentation`` of a study's mask (spatial ``X x Y x Z``, FLAIR geometry)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    provenance = scan.geometry.get("provenance", {})
    version = _version()
    algorithm = hd.AlgorithmIdentificationSequence(
        name="mri_seg", family=codes.cid7162.ArtificialIntelligence, version=version[:64],
        parameters={"checkpoint_sha256": provenance.get("checkpoint_sha256", "") or "unknown"},
    )  # fmt: skip
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
    )  # fmt: skip
    frames = source_frames(np.asarray(mask_xyz, dtype=bool), scan).astype(np.uint8)
    sources = scan.geometry["dicom_sources"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's notes may quote header values
        return hd.seg.Segmentation(
            source_images=sources, pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
            series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="mri_seg", manufacturer_model_name="mri_seg tumour segmentation",
            software_versions=version, device_serial_number="none", omit_empty_frames=False,
            series_description="mri_seg tumour mask",
        )  # fmt: skip


def write_seg(path: str | Path, mask_xyz: np.ndarray, scan: Scan) -> None:
    """Write the study's DICOM SEG atomically."""
    seg = build_seg(mask_xyz, scan)
    buffer = io.BytesIO()
    seg.save_as(buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
