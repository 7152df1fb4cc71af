"""A tiny cross-validated run (untrained fold checkpoints, a threshold choice, eval summaries) and
scans to segment, for the export / bundle / backend tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.config import Config
from mri_seg.utils.hashing import file_sha256

PATIENTS = [f"TCGA_{inst}_{i:04d}_20000101" for inst, i in [("CS", 1), ("CS", 2), ("DU", 3), ("HT", 4), ("FG", 5)]]


def recipe_like_config() -> Config:
    """tiny_config with the CPU recipe's input: 2.5D (1 neighbour each side), volume z-score, half scale."""
    cfg = tiny_config(scale=0.5)
    cfg.data.context_slices = 1
    cfg.model.in_channels = 9
    cfg.data.normalisation = "zscore_volume"
    cfg.train.ship_checkpoint = "last"
    return cfg


def make_run(root: Path, folds: int = 2, threshold: float = 0.55) -> Path:
    """RUN with manifest, splits, fold checkpoints, postprocess.json (for these checkpoints) and summaries."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in PATIENTS:
        for s in range(1, 5):
            rows.append({"patient_id": p, "case_id": p[:12], "institution": p.split("_")[1], "slice_index": s,
                         "has_tumour": s % 2 == 0})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    splits = [{"patient_id": p, "split": "test" if i == 4 else "train", "fold": i % folds if i < 4 else -1}
              for i, p in enumerate(PATIENTS)]  # fmt: skip
    pd.DataFrame(splits).to_csv(root / "splits.csv", index=False)
    ckpts = root / "checkpoints"
    files = []
    for fold in range(folds):
        path = write_untrained_checkpoint(ckpts / f"fold{fold}" / "last.pt", recipe_like_config(), seed=fold)
        import torch

        state = torch.load(path, weights_only=True)
        state.update(fold=fold, train_patients=[p for i, p in enumerate(PATIENTS[:4]) if i % folds != fold])
        torch.save(state, path)
        files.append(path)
    choice = {"threshold": threshold, "n_patients": 4, "members": sorted(file_sha256(f) for f in files),
              "sweep": {}, "fixed_options": {"largest_only": True}}  # fmt: skip
    (ckpts / "postprocess.json").write_text(json.dumps(choice))
    for name, mean in (("cv", 0.71), ("test", 0.74)):
        (root / "eval" / name).mkdir(parents=True)
        summary = {"n_patients": 4, "dice_mean": mean, "dice_median": mean + 0.05, "dice_ci95": [mean - 0.1, mean + 0.1],
                   "options": {"threshold": threshold}}  # fmt: skip
        (root / "eval" / name / "summary.json").write_text(json.dumps(summary))
    return root


def make_scans(root: Path) -> Path:
    """A Kaggle patient folder (5 slices), a large PNG (tiled) and a NIfTI volume."""
    rng = np.random.default_rng(0)
    patient = root / "TCGA_ZZ_0001_20000101"
    patient.mkdir(parents=True)
    yy, xx = np.mgrid[:64, :64]
    for i in range(1, 6):
        img = rng.integers(20, 80, (64, 64, 3)).astype(np.uint8)
        img[(yy - 30) ** 2 + (xx - 25 - i) ** 2 < 100] = 220
        cv2.imwrite(str(patient / f"TCGA_ZZ_0001_20000101_{i}.tif"), img)
    cv2.imwrite(str(root / "big.png"), rng.integers(0, 255, (300, 260, 3)).astype(np.uint8))
    nib.save(nib.Nifti1Image(rng.normal(100, 30, (24, 20, 6)).astype(np.float32), np.eye(4)), str(root / "vol.nii.gz"))
    return root


def masks(out: Path) -> dict[str, np.ndarray]:
    """Every mask infer wrote under ``out``, decoded (NIfTI .gz bytes carry a timestamp)."""
    found: dict[str, np.ndarray] = {}
    for path in sorted(out.rglob("*_mask.*")):
        rel = str(path.relative_to(out))
        found[rel] = np.asarray(nib.load(str(path)).dataobj) if ".nii" in path.name else cv2.imread(str(path), -1)
    return found


def require_onnxruntime() -> None:
    """Skip (fail in CI: MRI_SEG_REQUIRE_ONNX) without onnx and onnxruntime (pip install 'mri_seg[onnx]')."""
    import importlib.util

    from ci_switches import REQUIRE_ONNX, unavailable

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        unavailable(f"{' and '.join(missing)} not installed (pip install 'mri_seg[onnx]')", REQUIRE_ONNX)


def output_bytes(out: Path) -> dict[str, bytes]:
    """The bytes of every mask and probability map infer wrote under ``out`` (NIfTI: gzip mtime 0)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted([*out.rglob("*_mask.*"), *out.rglob("*_prob.*")])}
