"""DICOM series written from a volume and a NIfTI affine, for tests and benchmarks.

``write_series`` stores an ``X x Y x Z`` volume (X: columns, Y: rows, Z: slices) with a RAS+
affine as one file per slice (MR Image Storage) or one enhanced multi-frame file, with
file names and InstanceNumbers shuffled, an optional rescale slope/intercept and an
optional compressed transfer syntax. The same voxels given as NIfTI:
``nib.Nifti1Image(volume, affine)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Study:
    """A study's identity: every identifying string a header may carry (the privacy test looks for them)."""

    patient_name: str = "Doe^Jane"
    patient_id: str = "PID-0001"
    birth_date: str = "19700101"
    accession: str = "ACC-0001"
    study_id: str = "STUDY-1"
    institution: str = "General Hospital"
    physician: str = "Smith^John"
    study_uid: str = field(default_factory=generate_uid)
    frame_uid: str = field(default_factory=generate_uid)

    def identifying(self) -> list[str]:
        return [self.patient_name, self.patient_id, self.birth_date, self.accession, self.study_id,
                self.institution, self.physician, self.study_uid]  # fmt: skip


def _ds(cls: str, study: Study, series_uid: str, number: int, description: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = cls
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = cls
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = study.patient_name, study.patient_id, study.birth_date
    ds.PatientSex = "F"
    ds.AccessionNumber, ds.StudyID = study.accession, study.study_id
    ds.InstitutionName, ds.ReferringPhysicianName = study.institution, study.physician
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = study.study_uid, study.frame_uid
    ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = "20200101", "120000", "20200101", "120000"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, number, description
    ds.Modality, ds.Manufacturer, ds.PositionReferenceIndicator = modality, "test", ""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    return ds


def _pixels(ds: Dataset, planes: np.ndarray) -> None:
    """``frames x rows x columns`` integer planes as the dataset's pixel data."""
    signed = planes.dtype.kind == "i"
    bits = 8 if planes.dtype.itemsize == 1 else 16
    ds.Rows, ds.Columns = int(planes.shape[1]), int(planes.shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, int(signed)
    data = np.ascontiguousarray(planes if len(planes) > 1 else planes[0])
    ds.PixelData = data.tobytes()


def stored_values(volume: np.ndarray, slope: float, intercept: float, dtype=np.int16) -> np.ndarray:
    """The stored integers whose modality transform gives ``volume`` exactly."""
    stored = (volume.astype(np.float64) - intercept) / slope
    assert np.array_equal(stored, np.round(stored)), "volume must be slope * integer + intercept"
    return stored.astype(dtype)


def write_series(
    folder: Path, volume: np.ndarray, affine: np.ndarray, study: Study, number: int, description: str, *,
    slope: float = 1.0, intercept: float = 0.0, stored_dtype=None, seed: int = 0, modality: str = "MR",
    transfer_syntax: str | None = None, enhanced: bool = False, extra: dict | None = None,
) -> list[Path]:  # fmt: skip
    """Write ``volume`` (``X x Y x Z`` real values) with ``affine`` (RAS+) as one DICOM series."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lps = LPS @ affine
    row_dir = lps[:3, 0] / np.linalg.norm(lps[:3, 0])
    col_dir = lps[:3, 1] / np.linalg.norm(lps[:3, 1])
    spacing = [float(np.linalg.norm(lps[:3, 1])), float(np.linalg.norm(lps[:3, 0]))]  # between rows, columns
    dtype = stored_dtype or (volume.dtype if volume.dtype.kind in "ui" and slope == 1 and intercept == 0 else np.int16)
    stored = volume if (slope == 1 and intercept == 0 and volume.dtype == dtype) else stored_values(
        volume, slope, intercept, dtype)  # fmt: skip
    planes = np.ascontiguousarray(stored.transpose(2, 1, 0))  # Z x rows x columns
    series_uid = generate_uid()
    iop = [f"{v:.10f}"[:16] for v in (*row_dir, *col_dir)]

    def position(k: int) -> list[str]:
        return [f"{v:.6f}" for v in lps[:3, 3] + k * lps[:3, 2]]

    order = list(range(planes.shape[0]))
    rng.shuffle(order)
    paths = []
    if enhanced:
        ds = _ds(ENHANCED_MR_IMAGE, study, series_uid, number, description, modality)
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), 1
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.NumberOfFrames = len(order)
        shared = Dataset()
        measures, orient, transform = Dataset(), Dataset(), Dataset()
        measures.PixelSpacing, measures.SliceThickness = [f"{s:.6f}" for s in spacing], "1"
        orient.ImageOrientationPatient = iop
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, intercept, "US"
        shared.PixelMeasuresSequence = Sequence([measures])
        shared.PlaneOrientationSequence = Sequence([orient])
        shared.PixelValueTransformationSequence = Sequence([transform])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        groups = []
        for k in order:
            g, pos, content = Dataset(), Dataset(), Dataset()
            pos.ImagePositionPatient = position(k)
            content.DimensionIndexValues = [1]
            g.PlanePositionSequence, g.FrameContentSequence = Sequence([pos]), Sequence([content])
            groups.append(g)
        ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        _pixels(ds, planes[order])
        path = folder / f"{rng.getrandbits(64):016x}"
        _save(ds, path, transfer_syntax)
        return [path]
    numbers = list(range(1, len(order) + 1))
    rng.shuffle(numbers)
    for k, instance in zip(range(planes.shape[0]), numbers):
        ds = _ds(MR_IMAGE, study, series_uid, number, description, modality)
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), instance
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient, ds.ImageOrientationPatient = position(k), iop
        ds.PixelSpacing, ds.SliceThickness = [f"{s:.6f}" for s in spacing], "1"
        if slope != 1 or intercept != 0:
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        _pixels(ds, planes[k : k + 1])
        path = folder / f"{rng.getrandbits(64):016x}"
        _save(ds, path, transfer_syntax)
        paths.append(path)
    return paths


def _save(ds: Dataset, path: Path, transfer_syntax: str | None) -> None:
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    ds.save_as(str(path), enforce_file_format=True)


def read_back(path: Path) -> Dataset:
    return pydicom.dcmread(str(path))
