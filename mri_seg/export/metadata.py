"""``configs/metadata.json``: MONAI's bundle metadata (mb_specification) for an mri_seg model."""

from __future__ import annotations

from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any

import monai
import numpy as np
import torch

from mri_seg.config import Config
from mri_seg.io.sequences import DESCRIPTION
from mri_seg.models import size_divisor

if TYPE_CHECKING:
    from mri_seg.export.model_card import RunFacts

# The schema MONAI's model zoo uses (verify_metadata downloads it: not reachable offline).
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
RUNTIME_PACKAGES = ("nibabel", "opencv-python-headless", "onnxruntime")
NORMALISATION_TEXT = {
    "zscore_nonzero": "z-score of each slice over its nonzero pixels, per channel",
    "zscore_volume": "z-score over the patient volume's nonzero pixels, per channel (statistics of the resized slices)",
    "zscore_head": "z-score over the patient volume's head (a mask derived from FLAIR: threshold at 10% of the volume's 2-98th percentile range, "
    "closed, components of at least a tenth of the largest, holes filled), per channel; 0 outside the head",
}


def _version(name: str) -> str | None:
    try:
        return package_metadata.version(name)
    except package_metadata.PackageNotFoundError:
        return None


def _tta_text(post: Any) -> str:
    """How the passes were made, for the description: flip TTA and test-time rotations where on."""
    parts = (["flip"] if post.tta_flip else []) + ([f"rotations {list(post.tta_rotations)} deg"] if post.tta_rotations else [])
    return f" and {' + '.join(parts)} TTA" if parts else ""


def channel_def(sequences: list[str], context_slices: int) -> dict[str, str]:
    """Input channel -> its sequence by name and its slice offset (2.5D: slices i-k .. i+k, each all sequences)."""
    out: dict[str, str] = {}
    for block, offset in enumerate(range(-context_slices, context_slices + 1)):
        where = "the slice" if offset == 0 else f"slice i{offset:+d}"
        for c, name in enumerate(sequences):
            out[str(block * len(sequences) + c)] = f"{name} ({DESCRIPTION.get(name, name)} MR), {where}"
    return out


def build_metadata(
    config: Config, entries: list[dict[str, Any]], choice: dict | None, facts: "RunFacts", version: str,
    authors: str, copyright_text: str,
) -> dict[str, Any]:  # fmt: skip
    """The metadata dict: MONAI's required keys, the network's input/output format, mri_seg's extras."""
    first = entries[0]
    sequences = list(first["sequences"])
    k = int(config.data.context_slices)
    divisor = size_divisor(config.model)
    method = first["normalisation"].get("method", config.data.normalisation)
    threshold = choice["threshold"] if choice else config.infer.postprocess.threshold
    packages = {name: v for name in RUNTIME_PACKAGES if (v := _version(name))}
    n = len(entries)
    return {
        "schema": SCHEMA_URL,
        "version": version,
        "changelog": {version: f"exported by mri_seg {_version('mri_seg') or ''}".strip()},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"mri_seg": str(_version("mri_seg") or "0.1.0"), **packages},
        "optional_packages_version": {},
        "name": f"mri_seg {config.model.name} brain tumour segmentation",
        "task": "Brain MRI lower-grade glioma (FLAIR abnormality) segmentation, 2D slices",
        "description": (
            f"{'An ensemble of ' + str(n) + ' ' if n > 1 else 'A '}MONAI {config.model.name} "
            f"model{'s' if n > 1 else ''} trained with mri_seg on {facts.data_text()}. Inputs are axial slices of "
            f"{', '.join(sequences)} (2.5D: {2 * k + 1} slices), resized by {config.data.scale:g}; outputs a tumour "
            f"probability per pixel, averaged over members{_tta_text(config.infer.postprocess)}"
            f", thresholded at {threshold:g}. Run it with `python -m mri_seg.pipelines.infer --checkpoint MODEL_DIR` "
            "(models/model.pt alone is only the first member). See docs/README.md for the measured accuracy."
        ),
        "authors": authors or "mri_seg export (fill in with --authors)",
        "copyright": copyright_text or "unspecified (fill in with --copyright)",
        "intended_use": "Research only; not a medical device. Check every mask.",
        "data_source": facts.source_text(),
        "data_type": "tiff/png/jpeg slices, NIfTI volumes",
        "image_classes": f"{len(channel_def(sequences, k))} channels: {', '.join(sequences)} per slice, z-scored",
        "label_classes": "single channel, 1 is tumour (FLAIR abnormality), 0 is everything else",
        "pred_classes": "single channel: tumour probability after sigmoid (the network outputs the logit)",
        "eval_metrics": facts.metrics(),
        "references": [
            "Buda M, Saha A, Mazurowski MA. Association of genomic subtypes of lower-grade gliomas with shape features "
            "automatically extracted by a deep learning algorithm. Computers in Biology and Medicine, 2019."
        ],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image", "format": "magnitude", "modality": "MR",
                    "num_channels": int(config.model.in_channels),
                    "spatial_shape": [f"{divisor}*n", f"{divisor}*m"], "dtype": "float32", "value_range": [],
                    "is_patch_data": True, "channel_def": channel_def(sequences, k),
                    "sequences": sequences, "context_slices": k, "spatial_scale": float(config.data.scale),
                    "training_size": int(round(config.data.image_size * config.data.scale)),
                    "normalisation": {"method": method, "text": NORMALISATION_TEXT.get(method, method)},
                }  # fmt: skip
            },
            "outputs": {
                "pred": {
                    "type": "image", "format": "segmentation", "modality": "n/a", "num_channels": 1,
                    "spatial_shape": [f"{divisor}*n", f"{divisor}*m"], "dtype": "float32", "value_range": [],
                    "is_patch_data": True, "channel_def": {"0": "tumour logit (sigmoid: probability)"},
                    "threshold": threshold,
                }  # fmt: skip
            },
        },
        "mri_seg": {
            "members": [e["name"] for e in entries],
            "inference": "configs/mri_seg.json",
            "threshold_source": "cv (out-of-fold)" if choice else "config",
        },
    }
