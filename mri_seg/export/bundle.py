"""Write a model bundle (docs/reference/bundle.md) from a run's checkpoints or one checkpoint file.

The bundle is written into a temporary sibling folder and renamed into place, so a kill
leaves either no bundle or a complete one. Nothing in it names the run directory: members
are named by fold, the threshold choice is re-keyed to the bundle's own member files, and
the model card quotes the run's figures instead of linking to them.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mri_seg.config import Config, config_to_dict
from mri_seg.errors import StageError
from mri_seg.evaluation.threshold_choice import read_choice
from mri_seg.export.metadata import build_metadata
from mri_seg.export.model_card import RunFacts, model_card, run_facts
from mri_seg.inference.backends import onnx_graph
from mri_seg.inference.predictor import check_members, load_weights, round_up, strip_prefixes
from mri_seg.models import build_model, size_divisor
from mri_seg.training.bundle import FORMAT, FORMAT_VERSION, INFERENCE_FILE, METADATA_FILE, MODELS_DIR, README_FILE
from mri_seg.training.checkpoint import checkpoint_config, checkpoint_sequences, load_checkpoint, resolve_checkpoints
from mri_seg.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from mri_seg.utils.hashing import file_sha256


@dataclass
class Member:
    """One ensemble member as it goes into the bundle."""

    name: str  # file stem in models/: fold<K>, or model for a single checkpoint
    state: dict[str, Any]
    source_sha256: str
    files: dict[str, str] = field(default_factory=dict)  # weights/onnx -> models/<name>.<ext>


def member_names(states: list[dict[str, Any]]) -> list[str]:
    """``fold<K>`` per member when every member has a distinct fold, else ``member<i>``; ``model`` alone."""
    if len(states) == 1:
        return ["model"]
    folds = [s.get("fold") for s in states]
    if all(isinstance(f, int) for f in folds) and len(set(folds)) == len(folds):
        return [f"fold{f}" for f in folds]
    return [f"member{i}" for i in range(len(states))]


def load_members(checkpoints: list[Path]) -> list[Member]:
    states = [load_checkpoint(p) for p in checkpoints]
    check_members(states, checkpoints)
    return [
        Member(name, state, file_sha256(path))
        for name, state, path in zip(member_names(states), states, checkpoints)
    ]


def weights_bytes(state: dict[str, Any]) -> bytes:
    """The model's state dict alone (tensors, no optimizer), as ``torch.load(weights_only=True)`` reads it."""
    weights = {k: v.detach().to("cpu").contiguous() for k, v in strip_prefixes(state["model"]).items()}
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    return buffer.getvalue()


def member_graph(state: dict[str, Any], config: Config, where: str) -> bytes:
    """The member's network as an ONNX graph (traced at its training tile size; batch, height, width dynamic)."""
    model = build_model(config.model)
    load_weights(model, strip_prefixes(state["model"]), where)
    tile = round_up(int(round(config.data.image_size * config.data.scale)), size_divisor(config.model))
    return onnx_graph(model, int(config.model.in_channels), tile)


def write_member_files(root: Path, member: Member, config: Config, with_onnx: bool) -> dict[str, Any]:
    """``models/<name>.pt`` (and ``.onnx``) of one member; its entry in ``configs/mri_seg.json``."""
    weights_rel = f"{MODELS_DIR}/{member.name}.pt"
    atomic_write_bytes(root / weights_rel, weights_bytes(member.state))
    entry: dict[str, Any] = {
        "name": member.name, "weights": weights_rel, "weights_sha256": file_sha256(root / weights_rel),
        "onnx": None, "onnx_sha256": None,
        "config": config_to_dict(config), "normalisation": dict(member.state["normalisation"]),
        "sequences": list(checkpoint_sequences(member.state)), "epoch": member.state.get("epoch"),
        "fold": member.state.get("fold"), "best_metric": member.state.get("best_metric"),
        "train_patients": list(member.state.get("train_patients") or []), "source_sha256": member.source_sha256,
    }  # fmt: skip
    if with_onnx:
        onnx_rel = f"{MODELS_DIR}/{member.name}.onnx"
        atomic_write_bytes(root / onnx_rel, member_graph(member.state, config, member.name))
        entry.update(onnx=onnx_rel, onnx_sha256=file_sha256(root / onnx_rel))
    return entry


def bundle_choice(given: Path, members: list[Member], entries: list[dict[str, Any]]) -> tuple[dict | None, str]:
    """The run's out-of-fold threshold choice (if it applies to these checkpoints), keyed to the bundle's files."""
    records = [{"sha256": m.source_sha256} for m in members]
    choice, note = read_choice([given], records)
    if choice is None:
        return None, note
    choice = {k: v for k, v in choice.items() if k != "path"}
    choice["members"] = sorted(e["weights_sha256"] for e in entries)
    return choice, ""


def measured_with(config: Config, choice: dict | None) -> dict[str, Any]:
    """The post-processing the bundle's figures were measured with: the run's ``eval.postprocess``
    with the chosen threshold (for the record: ``infer`` applies its own ``infer`` config plus
    the chosen threshold, exactly as with the run's checkpoints folder)."""
    post = dict(config_to_dict(config)["eval"]["postprocess"])
    if choice is not None:
        post.update(choice.get("fixed_options") or {})
        post["threshold"] = choice["threshold"]
        for key in ("keep_ratio", "grow_threshold"):
            if choice.get(key) is not None:
                post[key] = choice[key]
        flair_only = choice.get("flair_only") or {}
        if flair_only.get("threshold") is not None:
            post["flair_only_threshold"] = flair_only["threshold"]
        if flair_only.get("keep_ratio") is not None:
            post["flair_only_keep_ratio"] = flair_only["keep_ratio"]
    return post


def export_bundle(
    given: Path, out: Path, checkpoint_name: str | None = None, overwrite: bool = False, with_onnx: bool = True,
    version: str = "0.1.0", authors: str = "", copyright_text: str = "",
) -> Path:  # fmt: skip
    """Write the bundle of ``given`` (RUN/checkpoints, a fold folder or a .pt) to ``out``; returns ``out``."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise StageError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    checkpoints = resolve_checkpoints([given], checkpoint_name)
    members = load_members(checkpoints)
    config = checkpoint_config(members[0].state)
    facts = run_facts(given)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / MODELS_DIR).mkdir(parents=True)
        entries = [write_member_files(tmp, m, checkpoint_config(m.state), with_onnx) for m in members]
        choice, note = bundle_choice(given, members, entries)
        spec = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "mri_seg_version": members[0].state.get("version"),
            "members": entries, "postprocess_choice": choice, "postprocess_choice_note": note,
            "measured_with": measured_with(config, choice),
        }  # fmt: skip
        _write_monai_model_files(tmp, entries)
        atomic_write_json(tmp / INFERENCE_FILE, spec)
        metadata = build_metadata(config, entries, choice, facts, version, authors, copyright_text)
        atomic_write_json(tmp / METADATA_FILE, metadata)
        atomic_write_text(tmp / README_FILE, model_card(config, entries, choice, facts, metadata))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_monai_model_files(root: Path, entries: list[dict[str, Any]]) -> None:
    """MONAI's required ``models/model.pt`` (and ``model.onnx``): the first member, when members have other names."""
    first = entries[0]
    if first["name"] == "model":
        return
    shutil.copyfile(root / first["weights"], root / MODELS_DIR / "model.pt")
    if first.get("onnx"):
        shutil.copyfile(root / first["onnx"], root / MODELS_DIR / "model.onnx")


__all__ = ["RunFacts", "export_bundle", "member_names"]
