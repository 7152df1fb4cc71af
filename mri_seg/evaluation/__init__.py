"""Evaluation computation: predict a split (or every patient out-of-fold), score patients, summarise.

``core``: patient cases -> metric tables and summary (arrays in, tables out), and feeding them
from a run directory. ``cross_validation``: out-of-fold prediction with per-fold models.
Rendering (plots, HTML) lives in :mod:`mri_seg.reports`, which never runs a model.
"""

INPUT_SEQUENCES = ("all", "flair_only")  # eval.input_sequences (kept here: importing it loads no model code)
