"""Reading an exported model bundle (``python -m mri_seg.pipelines.export``): a checkpoint folder too.

A bundle is a folder in MONAI's bundle layout (docs/reference/bundle.md)::

    configs/metadata.json          MONAI bundle metadata (network_data_format, versions, ...)
    configs/mri_seg.json           what inference needs, as data: members, their configs, the threshold
    models/fold<K>.pt              each member's state dict (tensors only: torch.load(weights_only=True))
    models/fold<K>.onnx            each member's ONNX graph (the onnxruntime backend)
    docs/README.md                 the model card: training data, recipe, measured figures

Loading never executes anything from the bundle: the JSON files are read as data, weights
with ``weights_only=True`` (or as ONNX graphs), and every member file's sha256 is checked
against ``configs/mri_seg.json`` before it is used. A bundle that is incomplete, tampered
with or truncated is refused with one line (:class:`BundleError`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mri_seg.training.checkpoint import CheckpointError
from mri_seg.utils.hashing import file_sha256

METADATA_FILE = "configs/metadata.json"
INFERENCE_FILE = "configs/mri_seg.json"
README_FILE = "docs/README.md"
MODELS_DIR = "models"
FORMAT = "mri_seg-bundle"
FORMAT_VERSION = 1

# MONAI's bundle specification (mb_specification): the metadata keys a bundle must have, and their JSON types.
METADATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": str, "changelog": dict, "monai_version": str, "pytorch_version": str, "numpy_version": str,
    "required_packages_version": dict, "optional_packages_version": dict, "task": str, "description": str,
    "authors": (str, list), "copyright": str, "network_data_format": dict,
}  # fmt: skip
# A tensor format specifier in network_data_format.inputs/outputs.
TENSOR_TYPES: dict[str, type | tuple[type, ...]] = {
    "type": str, "format": str, "modality": str, "num_channels": int, "spatial_shape": list, "dtype": str,
    "value_range": list, "is_patch_data": bool, "channel_def": dict,
}  # fmt: skip


class BundleError(CheckpointError):
    """The folder is not a usable, intact model bundle."""


def is_bundle(folder: str | Path) -> bool:
    """Whether ``folder`` is an exported bundle (it has ``configs/metadata.json``)."""
    return (Path(folder) / METADATA_FILE).is_file()


def bundle_root_of(path: str | Path) -> Path | None:
    """The bundle a member file ``ROOT/models/<name>.pt`` belongs to, or None."""
    path = Path(path)
    root = path.parent.parent
    return root if path.parent.name == MODELS_DIR and is_bundle(root) else None


def metadata_problems(meta: Any) -> list[str]:
    """Where ``meta`` departs from MONAI's required metadata keys and types (empty: none)."""
    if not isinstance(meta, dict):
        return ["metadata is not a JSON object"]
    problems = [f"'{k}' missing" for k in METADATA_TYPES if k not in meta]
    problems += [
        f"'{k}' is {type(meta[k]).__name__}, expected {_type_names(t)}"
        for k, t in METADATA_TYPES.items()
        if k in meta and not isinstance(meta[k], t)
    ]
    fmt = meta.get("network_data_format")
    if isinstance(fmt, dict):
        for side in ("inputs", "outputs"):
            tensors = fmt.get(side)
            if not isinstance(tensors, dict) or not tensors:
                problems.append(f"network_data_format.{side} missing or empty")
                continue
            for name, spec in tensors.items():
                where = f"network_data_format.{side}.{name}"
                if not isinstance(spec, dict):
                    problems.append(f"{where} is not an object")
                    continue
                problems += [f"{where}.{k} missing" for k in TENSOR_TYPES if k not in spec]
                problems += [
                    f"{where}.{k} is {type(spec[k]).__name__}, expected {_type_names(t)}"
                    for k, t in TENSOR_TYPES.items()
                    if k in spec and (not isinstance(spec[k], t) or (t is int and isinstance(spec[k], bool)))
                ]
    return problems


def _type_names(t: type | tuple[type, ...]) -> str:
    return " or ".join(x.__name__ for x in (t if isinstance(t, tuple) else (t,)))


def _read_json(root: Path, rel: str) -> Any:
    path = root / rel
    if not path.is_file():
        raise BundleError(f"{root}: not a usable model bundle: {rel} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{root}: not a usable model bundle: {rel} is not valid JSON ({exc})") from exc


def read_bundle(folder: str | Path, check_files: bool = True) -> dict[str, Any]:
    """``configs/mri_seg.json`` of a checked bundle: metadata keys and types, format, and (with
    ``check_files``) every member file present with the sha256 recorded for it."""
    root = Path(folder)
    problems = metadata_problems(_read_json(root, METADATA_FILE))
    if problems:
        raise BundleError(f"{root}: {METADATA_FILE} does not follow MONAI's bundle metadata: {'; '.join(problems)}")
    spec = _read_json(root, INFERENCE_FILE)
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise BundleError(f"{root}: {INFERENCE_FILE} is not an {FORMAT} description")
    if spec.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{root}: bundle format version {spec.get('format_version')!r}; this mri_seg reads {FORMAT_VERSION}"
        )
    members = spec.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
        raise BundleError(f"{root}: {INFERENCE_FILE} lists no members")
    for member in members:
        for key in ("weights", "weights_sha256", "config", "normalisation", "sequences"):
            if key not in member:
                raise BundleError(f"{root}: a member in {INFERENCE_FILE} has no '{key}'")
        if check_files:
            check_member_file(root, member, "weights")
            if member.get("onnx"):
                check_member_file(root, member, "onnx")
    return spec


def member_path(root: Path, rel: Any) -> Path:
    """``root/rel`` for a member file named in the bundle, refusing names that leave the bundle."""
    if not isinstance(rel, str) or not rel.startswith(f"{MODELS_DIR}/") or ".." in Path(rel).parts or "\\" in rel:
        raise BundleError(f"{root}: member file name {rel!r} is not inside {MODELS_DIR}/")
    return root / rel


def check_member_file(root: Path, member: dict[str, Any], kind: str) -> Path:
    """The member's ``kind`` file (weights / onnx), refused unless its sha256 is the recorded one."""
    path = member_path(root, member[kind])
    if not path.is_file():
        raise BundleError(f"{root}: not a usable model bundle: {member[kind]} is missing")
    if file_sha256(path) != member.get(f"{kind}_sha256"):
        raise BundleError(
            f"{path}: sha256 differs from the one recorded in {INFERENCE_FILE} (the file was changed or truncated)"
        )
    return path


def bundle_member_files(folder: str | Path) -> list[Path]:
    """The weight files of a checked bundle, in member order (what ``--checkpoint MODEL_DIR`` means)."""
    root = Path(folder)
    return [root / m["weights"] for m in read_bundle(root)["members"]]


def load_bundle_member(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A bundle member as a checkpoint state (model, config, normalisation, sequences, epoch, fold...):
    weights read with ``weights_only=True`` after their sha256 is checked, the rest from the JSON."""
    path = Path(path)
    root = bundle_root_of(path)
    if root is None:
        raise BundleError(f"{path} is not a member of a model bundle")
    spec = read_bundle(root, check_files=False)
    matches = [m for m in spec["members"] if isinstance(m.get("weights"), str) and root / m["weights"] == path]
    if not matches:
        raise BundleError(f"{path} is not listed in {root / INFERENCE_FILE}")
    member = matches[0]
    check_member_file(root, member, "weights")
    try:
        weights = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt file (after a matching sha256: written corrupt)
        raise BundleError(f"cannot read bundle weights {path}: {exc}") from exc
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise BundleError(f"{path} is not a state dict of tensors")
    onnx = member.get("onnx")
    return {
        "model": weights, "config": member["config"], "normalisation": member["normalisation"],
        "sequences": member["sequences"], "epoch": member.get("epoch"), "fold": member.get("fold"),
        "best_metric": member.get("best_metric"), "train_patients": member.get("train_patients", []),
        "version": spec.get("mri_seg_version"), "onnx": str(member_path(root, onnx)) if onnx else None,
        "onnx_sha256": member.get("onnx_sha256"), "bundle": str(root),
    }  # fmt: skip


def bundle_choice(folder: str | Path) -> dict[str, Any] | None:
    """The threshold choice stored in a bundle (the run's ``postprocess.json``, re-keyed to the bundle's files)."""
    choice = read_bundle(folder, check_files=False).get("postprocess_choice")
    return choice if isinstance(choice, dict) else None
