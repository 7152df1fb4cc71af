"""Evaluation computation: predict a split (or every patient out-of-fold), score patients, summarise.

``scoring``: patient cases -> metric tables and summary (arrays in, tables out).
``prediction``: a run directory's split -> predicted patient cases, scored.
``cross_validation``: out-of-fold prediction with per-fold models.
``threshold_choice``: the deliverable's threshold, chosen on out-of-fold predictions.
``flow``: the evaluate and cv stages' one flow (settings, models, provenance, outputs).
Rendering (plots, HTML) lives in :mod:`mri_seg.reports`, which never runs a model; evaluation
never imports it (the stages pass the renderer in).
"""

from mri_seg.config.names import INPUT_SEQUENCES  # noqa: F401 (re-exported: eval.input_sequences)
