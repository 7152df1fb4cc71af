"""Reading scans and writing masks: TIFF/PNG/JPEG (OpenCV), NIfTI (nibabel), Kaggle patient folders,
DICOM studies (pydicom; masks also as DICOM SEG with highdicom).

Entry points: :func:`mri_seg.io.registry.discover`, :func:`~mri_seg.io.registry.read_source`,
:func:`~mri_seg.io.registry.output_paths`, :func:`~mri_seg.io.registry.write_outputs`; the
:class:`mri_seg.io.scan.Scan` type, :class:`mri_seg.io.options.ReadOptions` (the model's
sequence order and the ``infer`` reading settings) and :func:`mri_seg.io.scan.to_model_channels`.

Import them from their modules: this package file imports nothing, so its modules import
each other without a cycle through it.
"""
