"""Reading scans and writing masks: TIFF/PNG/JPEG (OpenCV), NIfTI (nibabel), Kaggle patient folders.

Entry points: :func:`mri_seg.io.registry.discover`, :func:`read_source`, :func:`output_paths`,
:func:`write_outputs`; the :class:`mri_seg.io.scan.Scan` type, :class:`ReadOptions` (the model's
sequence order and the ``infer`` reading settings) and :func:`to_model_channels`.
"""

from mri_seg.io.registry import FILE_TYPES, Source, discover, file_type_of, output_paths, read_source, write_outputs
from mri_seg.io.options import ReadOptions
from mri_seg.io.scan import ChannelWarning, OrientationWarning, Scan, ScanError, ScanWarning, to_model_channels

__all__ = [
    "FILE_TYPES",
    "ChannelWarning",
    "OrientationWarning",
    "ReadOptions",
    "Scan",
    "ScanError",
    "ScanWarning",
    "Source",
    "discover",
    "file_type_of",
    "output_paths",
    "read_source",
    "to_model_channels",
    "write_outputs",
]
