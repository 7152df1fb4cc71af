"""Export a trained model (a run's checkpoints, or one checkpoint) as a self-contained bundle.

:func:`mri_seg.export.bundle.export_bundle` writes the folder that
:mod:`mri_seg.training.bundle` reads (docs/reference/bundle.md): MONAI's bundle layout,
weights as state dicts and ONNX graphs, the inference settings as JSON, a model card.
"""
