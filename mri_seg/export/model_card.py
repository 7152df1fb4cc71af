"""``docs/README.md`` of a bundle: what the model is, what it was trained on, how good it measured.

The facts come from the run directory the checkpoints were exported from (when there is
one): its manifest and split (patients, slices, institutions each member trained on) and
``eval/cv/summary.json`` / ``eval/test/summary.json`` (out-of-fold and test patient Dice
with their 95% bootstrap CIs). The card quotes them; it never links back to the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mri_seg.config import Config
from mri_seg.rundir import RunDir


@dataclass
class RunFacts:
    """What the run directory says about the exported model (empty where there is no run)."""

    patients: int = 0
    slices: int = 0
    tumour_slices: int = 0
    institutions: list[str] = field(default_factory=list)
    folds: int = 0
    test_patients: int = 0
    cv: dict[str, Any] = field(default_factory=dict)  # eval/cv/summary.json
    test: dict[str, Any] = field(default_factory=dict)  # eval/test/summary.json

    def data_text(self) -> str:
        if not self.patients:
            return "data not recorded in the export (a checkpoint file without its run directory)"
        return (
            f"{self.patients} patients ({self.slices} slices, {self.tumour_slices} with tumour) from "
            f"{len(self.institutions)} institutions ({', '.join(self.institutions)})"
        )

    def source_text(self) -> str:
        if not self.patients:
            return "unknown"
        return "Kaggle LGG MRI Segmentation (TCGA lower-grade glioma, Buda et al. 2019): " + self.data_text()

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, summary in (("oof", self.cv), ("test", self.test)):
            for stat in ("mean", "median"):
                value = summary.get(f"dice_{stat}")
                if isinstance(value, (int, float)):
                    out[f"{name}_patient_dice_{stat}"] = round(float(value), 4)
        return out


def find_run_dir(given: Path) -> Path | None:
    """The run directory above ``given`` (RUN/checkpoints, RUN/checkpoints/fold<K>, or a .pt in them)."""
    for candidate in [given, *given.resolve().parents][:4]:
        if (candidate / "manifest.csv").is_file() and (candidate / "splits.csv").is_file():
            return candidate
    return None


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_facts(given: Path) -> RunFacts:
    """The facts of the run ``given`` belongs to; trained-on patients from the checkpoints' records."""
    root = find_run_dir(Path(given))
    if root is None:
        return RunFacts()
    run = RunDir(root)
    try:
        manifest = pd.read_csv(run.manifest, usecols=["patient_id", "institution", "has_tumour"])
        splits = pd.read_csv(run.splits)
    except (OSError, ValueError):
        return RunFacts()
    dev = set(splits.loc[splits["split"] != "test", "patient_id"])
    used = manifest[manifest["patient_id"].isin(dev)]
    return RunFacts(
        patients=int(used["patient_id"].nunique()), slices=int(len(used)),
        tumour_slices=int(used["has_tumour"].astype(str).str.lower().eq("true").sum()),
        institutions=sorted(map(str, used["institution"].dropna().unique())),
        folds=int(splits.loc[splits["split"] != "test", "fold"].nunique()) if "fold" in splits else 0,
        test_patients=int((splits["split"] == "test").sum()),
        cv=_read_summary(run.eval_dir("cv") / "summary.json"), test=_read_summary(run.eval_dir("test") / "summary.json"),
    )  # fmt: skip


def _loss_text(loss: str, bce_topk: float, boundary_weight: float = 0.0) -> str:
    notes = [] if bce_topk >= 1.0 else [f"its BCE term over the hardest {100 * bce_topk:g}% of each batch's pixels"]
    if boundary_weight > 0:
        notes.append(f"a boundary loss term weighted {boundary_weight:g}")
    return f"loss {loss}" + (f" ({'; '.join(notes)})" if notes else "")


def _ema_text(decay: float) -> str:
    return f", weights averaged over its steps (EMA, decay {decay:g}; the average ships)" if decay > 0 else ""


def _flair_only_text(choice: dict | None) -> str:
    """The FLAIR-only scans' own threshold, where cv chose one (mri_seg.postprocess.for_flair_only)."""
    flair_only = (choice or {}).get("flair_only")
    if not flair_only:
        return ""
    keep = f", keep_ratio {flair_only['keep_ratio']:g}" if flair_only.get("keep_ratio") else ""
    return f"; a FLAIR-only scan: threshold {flair_only['threshold']:g}{keep} (chosen on the out-of-fold FLAIR view)"


def _rule_text(rule: str, bright_quantile: float) -> str:
    """How the kept component is chosen, where it is not by its voxels (``postprocess.component_rule``)."""
    if rule == "mass":
        return ", the component with the most summed probability"
    if rule == "bright":
        return f", the component with the most voxels at or above the {bright_quantile:g} quantile of the head's FLAIR"
    return ""


def _flair_view_text(threshold: float, min_ratio: float) -> str:
    if threshold <= 0.0:
        return ""
    return (
        f", FLAIR view (each scan also predicted with FLAIR in every channel; its components at probability >= "
        f"{threshold:g} that overlap the kept tumour and are >= {min_ratio:g}x its size are added)"
    )


def _grow_text(configured: float, choice: dict | None) -> str:
    """The hysteresis step of the post-processing, in words ("" when it is off)."""
    grow = choice.get("grow_threshold") if choice and choice.get("grow_threshold") is not None else configured
    if not grow:
        return ""
    chosen = ", chosen with the threshold" if choice and choice.get("grow_threshold") is not None else ""
    return f", kept components grown into the connected voxels of probability >= {grow:g} (hysteresis{chosen})"


def _dice_row(label: str, summary: dict[str, Any]) -> str:
    if "dice_mean" not in summary:
        return f"| {label} | not measured (no summary in the run) |"
    ci = summary.get("dice_ci95") or [float("nan"), float("nan")]
    return (
        f"| {label} | {summary.get('n_patients', '?')} | {summary['dice_mean']:.3f} ({ci[0]:.3f}-{ci[1]:.3f}) | "
        f"{summary.get('dice_median', float('nan')):.3f} | {summary.get('options', {}).get('threshold', '?')} |"
    )


def model_card(
    config: Config, entries: list[dict[str, Any]], choice: dict | None, facts: RunFacts, metadata: dict[str, Any]
) -> str:
    """The bundle's README: data, recipe, measured figures, how to run it, its limits."""
    fmt = metadata["network_data_format"]["inputs"]["image"]
    post = config.eval.postprocess
    threshold = choice["threshold"] if choice else config.infer.postprocess.threshold
    source = (
        f"chosen on out-of-fold predictions of {choice.get('n_patients', '?')} patients (cv)"
        if choice
        else "configured; no cv choice applied to these checkpoints"
    )
    members = "\n".join(
        f"| {e['name']} | {e.get('fold')} | {e.get('epoch')} | {len(e.get('train_patients') or [])} | "
        f"`{e['weights_sha256'][:16]}...` |"
        for e in entries
    )
    lines = [
        f"# {metadata['name']}",
        "",
        metadata["description"],
        "",
        "## Training data",
        "",
        f"{facts.data_text()}.",
        (f"Cross-validated in {facts.folds} folds; {facts.test_patients} test patients were never trained on or "
         "used for any choice." if facts.folds else ""),
        "",
        "## Measured accuracy (patient-level Dice, 95% bootstrap CI)",
        "",
        "| figure | patients | mean (95% CI) | median | threshold |",
        "| --- | --- | --- | --- | --- |",
        _dice_row("out-of-fold (each patient by the fold model that never saw it)", facts.cv),
        _dice_row("test split (the ensemble)", facts.test),
        "",
        "## Recipe",
        "",
        f"- network: MONAI `{config.model.name}`, channels {list(config.model.channels)}, strides "
        f"{list(config.model.strides)}, {config.model.num_res_units} residual unit(s), {config.model.norm} norm",
        f"- input: {fmt['num_channels']} channels = sequences {', '.join(fmt['sequences'])} x "
        f"{2 * fmt['context_slices'] + 1} slices (context {fmt['context_slices']}), slices resized by "
        f"{fmt['spatial_scale']:g} ({config.data.image_size} -> {fmt['training_size']} px), {fmt['normalisation']['text']}",
        f"- training: {config.train.epochs} epochs, batch {config.train.batch_size}, lr {config.train.lr:g} "
        f"({config.train.scheduler}), {_loss_text(config.train.loss, config.train.bce_topk, config.train.boundary_weight)}, seed {config.train.seed}, ships the "
        f"{config.train.ship_checkpoint} epoch{_ema_text(config.train.ema_decay)}",
        f"- post-processing: threshold {threshold:g} ({source}), flip TTA {post.tta_flip}"
        + (f", TTA rotations {list(post.tta_rotations)} degrees" if post.tta_rotations else "")
        + ", largest component only "
        f"{post.largest_only}"
        + _rule_text(post.component_rule, post.bright_quantile)
        + (f" (keep_ratio {choice['keep_ratio']:g}, chosen with the threshold)" if choice and choice.get("keep_ratio") else "")
        + _grow_text(post.grow_threshold, choice)
        + _flair_view_text(post.flair_view_threshold, post.flair_view_min_ratio)
        + (", enclosed holes filled per slice" if post.fill_holes else "")
        + f", min component {post.min_component_pixels} px / {post.min_component_voxels} voxels"
        + _flair_only_text(choice),
        "",
        "## Members",
        "",
        "| member | fold | epoch | training patients | weights sha256 |",
        "| --- | --- | --- | --- | --- |",
        members,
        "",
        "## Use",
        "",
        "```bash",
        "pip install 'mri_seg[onnx]'",
        "python -m mri_seg.pipelines.infer --checkpoint MODEL_DIR --input SCANS --output OUT",
        "python -m mri_seg.pipelines.infer --checkpoint MODEL_DIR --input SCANS --output OUT --set infer.backend=onnxruntime",
        "```",
        "",
        "Loading reads `configs/*.json` as data and the weights with `torch.load(weights_only=True)` (or the ONNX "
        "graphs), after checking each file's sha256 against `configs/mri_seg.json`.",
        "",
        "## Limits",
        "",
        "Research use only; not a medical device. Trained on one public dataset's FLAIR abnormalities in lower-grade "
        "gliomas: other tumours, scanners or protocols are untested. Check every mask; the review flag in "
        "`predictions.csv` marks the scans whose passes disagree most.",
        "",
    ]
    return "\n".join(lines)
