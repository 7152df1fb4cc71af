"""Segmentation networks (MONAI), chosen by ``model.name``: see :mod:`mri_seg.models.factory`."""

from mri_seg.models.factory import ARCHITECTURES, build_model, size_divisor

__all__ = ["ARCHITECTURES", "build_model", "size_divisor"]
