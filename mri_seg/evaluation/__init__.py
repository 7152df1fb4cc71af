"""Evaluation computation: predict a split (or every patient out-of-fold), score patients, summarise.

``core``: patient cases -> metric tables and summary (arrays in, tables out), and feeding them
from a run directory. ``cross_validation``: out-of-fold prediction with per-fold models.
Rendering (plots, HTML) lives in :mod:`mri_seg.reports`, which never runs a model.
"""

from mri_seg.config.names import INPUT_SEQUENCES  # noqa: F401 (re-exported: eval.input_sequences)
