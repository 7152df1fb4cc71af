"""What made a row of ``predictions.csv``: the checkpoint files, the mask-shaping settings, the input.

Every row records ``checkpoint_sha256`` (the model's checkpoint file(s), ';'-joined for
an ensemble), ``settings_hash`` (the ``infer`` settings that shape a mask, see
:func:`settings_hash`) and ``input_stamp`` (name, size and modification time of the
scan's files). A re-run keeps a scan's previous row only when all three are unchanged
(:func:`mri_seg.inference.journal.can_skip`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mri_seg.config import InferConfig, config_to_dict
from mri_seg.io.kaggle import truth_path
from mri_seg.io.registry import Source

# infer keys that never change a mask or its row (batching, which files are written, re-run policy): left out
# of settings_hash. Every other infer key (threshold, min component, TTA, tile size,
# overlap, blend, NIfTI orientation and sequence settings...) is in it.
NOT_MASK_SHAPING = ("tile_batch", "save_probabilities", "overwrite", "report")
PROVENANCE = ("checkpoint_sha256", "settings_hash", "input_stamp")


def settings_hash(cfg: InferConfig, device_type: str = "cpu") -> str:
    """Short sha256 of the settings that shape a mask: every ``infer`` key but
    :data:`NOT_MASK_SHAPING`, and the device type (CUDA predicts under autocast)."""
    values = {k: v for k, v in config_to_dict(cfg).items() if k not in NOT_MASK_SHAPING}
    payload = json.dumps({"infer": values, "device": device_type}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def input_stamp(source: Source, with_truth: bool) -> str:
    """Short sha256 of the name, size and modification time of the scan's files (and its
    reference masks with ``--with-truth``): a changed input is recomputed."""
    files = list(source.members) or [source.path]
    if with_truth:
        if source.format == "kaggle":  # one reference mask per slice
            files += [truth_path(m) for m in source.members]
        elif source.truth is not None:
            files.append(source.truth)
    h = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f.name}|missing\n".encode())
    return h.hexdigest()[:16]


def checkpoint_columns(predictor: Any) -> dict[str, str]:
    """The checkpoint files that made a row and their sha256 (';'-joined for an ensemble)."""
    return {
        "checkpoints": ";".join(str(p) for p in getattr(predictor, "checkpoint_paths", [])),
        "checkpoint_sha256": ";".join(getattr(predictor, "checkpoint_sha256", [])),
    }


def provenance_of(predictor: Any, cfg: InferConfig) -> dict[str, str]:
    """The run-wide provenance columns (the per-scan ``input_stamp`` is added per row)."""
    return {
        "checkpoint_sha256": checkpoint_columns(predictor)["checkpoint_sha256"],
        "settings_hash": settings_hash(cfg, getattr(getattr(predictor, "device", None), "type", "cpu")),
    }
