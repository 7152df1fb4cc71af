"""Validation by patient, at native resolution, reduced across DDP ranks.

The model runs at the training scale; probabilities are resized back (bilinear) to
each slice's native size, thresholded at 0.5 and compared with the native mask -- the
same thing inference does, so the val Dice is the Dice users will get.

Each rank scores its shard and fills per-slice counts (intersection, predicted,
true pixels) into a tensor indexed by the global slice index; one ``all_reduce``
gives every rank all counts. A patient's volume Dice is then
``2 * sum(I) / (sum(P) + sum(T))`` over its slices -- exactly
:func:`mri_seg.metrics.dice_score` of the stacked volumes, with the same empty-case
convention (both empty -> 1.0), without gathering the volumes themselves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from mri_seg.data.dataset import SliceDataset
from mri_seg.postprocess import postprocess, to_native_size
from mri_seg.training.distributed import DistContext, all_reduce_sum
from mri_seg.training.runtime import Precision

THRESHOLD = 0.5


def dice_from_counts(intersection: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Element-wise Dice from pixel counts; 1.0 where prediction and truth are both empty."""
    intersection, pred, truth = (np.asarray(a, dtype=np.float64) for a in (intersection, pred, truth))
    total = pred + truth
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total == 0, 1.0, 2.0 * intersection / np.where(total == 0, 1.0, total))


def patient_dice(counts: np.ndarray, patient_ids: list[str]) -> dict[str, float]:
    """Volume Dice per patient from per-slice ``counts`` rows ``[I, P, T]``."""
    ids = np.asarray(patient_ids)
    out = {}
    for pid in dict.fromkeys(patient_ids):  # first-seen order
        i, p, t = counts[ids == pid].sum(axis=0)
        out[str(pid)] = float(dice_from_counts(i, p, t))
    return out


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    loader: DataLoader,
    dataset: SliceDataset,
    loss_fn: torch.nn.Module,
    precision: Precision,
    device: torch.device,
    ctx: DistContext,
    channels_last: bool = False,
) -> dict:
    """Val loss, mean/median patient Dice, mean slice Dice (and per-patient Dice); ``channels_last``:
    the batches in the model's memory format (``train.channels_last``)."""
    model.eval()
    counts = torch.zeros(len(dataset), 3, dtype=torch.float64, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of batch loss * n, n]
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        masks = batch["mask"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            logits = model(images)
        loss, _ = loss_fn(logits.float(), masks)
        loss_sum += torch.tensor([loss.item() * len(images), len(images)], dtype=torch.float64, device=device)
        probs = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        for i, prob in zip(batch["index"].tolist(), probs):
            truth = dataset.native_mask(i)
            pred = postprocess(to_native_size(prob, *truth.shape), THRESHOLD, 0)  # what inference does
            counts[i] = torch.tensor([(pred & truth).sum(), pred.sum(), truth.sum()], dtype=torch.float64)
    all_reduce_sum(counts, ctx)
    all_reduce_sum(loss_sum, ctx)
    c = counts.cpu().numpy()
    per_patient = patient_dice(c, dataset.patient_ids)
    values = np.array(list(per_patient.values()))
    return {
        "val_loss": float(loss_sum[0] / loss_sum[1].clamp(min=1)),
        "val_patient_dice_mean": float(values.mean()),
        "val_patient_dice_median": float(np.median(values)),
        "val_slice_dice": float(dice_from_counts(c[:, 0], c[:, 1], c[:, 2]).mean()),
        "patient_dice": per_patient,
    }
