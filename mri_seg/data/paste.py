"""Tumour copy-paste (``augment.tumour_paste``, off by default): another patient's tumour in a training slice.

With probability ``p`` a training slice receives the tumour of a tumour slice of another
patient (TumorCP, Yang et al., MICCAI 2021): the donor's pixels inside its mask, with their
own texture (cystic cores, rims, whatever that tumour looks like), placed where they were in
the donor slice (Kaggle slices are centred heads of one size; a left-right flip half the
time), and the target mask becomes the union of both tumours. Each fold model learns from
27 patients; pasting shows it each tumour's appearance in other brains and places, and
tumour-free slices then teach it that a tumour can be anywhere. Donors come from the same
height in the head (their slice's position in its volume within ``height_window`` of the
recipient's, as a fraction of the volume), so a tumour of the temporal lobe is not pasted
into a slice through the orbits.

A paste is refused (the dataset tries another donor, ``tries`` in all, then leaves the slice as it was)
when the donor tumour would fall outside the recipient's brain (its head mask, derived from
FLAIR as the skull-strip augmentation derives it, eroded by ``margin`` pixels so a tumour
never lands on the scalp) or touch the recipient's own tumour. The donor's intensities are
matched to the recipient's, sequence by sequence (the ratio of the two heads' median
intensities: Kaggle slices are scaled per slice), and its edge is feathered (a Gaussian of
``feather`` pixels outside the mask), so the model cannot find a pasted tumour by a step
in brightness at its border.

2.5D stacks: every stacked slice of the donor is pasted into the same stacked slice of the
recipient, each with its own mask (the donor's neighbours' tumour), so the context agrees;
the target is the centre slice's. Runs before the warps and intensity transforms of
:mod:`mri_seg.data.augment`, which then move and change the pasted tumour with the rest.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np

from mri_seg.config.schema import TumourPasteConfig
from mri_seg.data.augment import slice_head_mask
from mri_seg.io.sequences import FLAIR_CHANNEL

MATCH_LIMITS = (0.5, 2.0)  # a recipient / donor median ratio outside this is clipped: an odd head, not a scale
OUTSIDE_SHARE = 0.05  # the share of a pasted tumour that may fall outside the recipient's (eroded) head


@dataclass
class SliceHead:
    """One slice's head (``H x W`` bool, :func:`slice_head_mask` of its FLAIR) and each sequence's
    median intensity over it (``C``; None without a head): what placing and matching a tumour need."""

    mask: np.ndarray
    medians: np.ndarray | None

    @classmethod
    def of(cls, image: np.ndarray, flair_channel: int = FLAIR_CHANNEL) -> SliceHead:
        """The head of one ``H x W x C`` uint8 slice."""
        mask = slice_head_mask(image[..., flair_channel])
        medians = np.median(image[mask], axis=0).astype(np.float32) if mask.any() else None
        return cls(mask, medians)


@dataclass
class Donor:
    """A donor slice's model input (``H x W x C*(2k+1)`` uint8), each stacked slice's 0/1 mask
    (``H x W x (2k+1)``) and its head medians (:class:`SliceHead`)."""

    image: np.ndarray
    masks: np.ndarray
    medians: np.ndarray

    def flipped(self) -> Donor:
        """The donor mirrored left-right: its tumour in the other hemisphere."""
        return Donor(np.ascontiguousarray(self.image[:, ::-1]), np.ascontiguousarray(self.masks[:, ::-1]), self.medians)


def fits(mask: np.ndarray, head: np.ndarray, tumour: np.ndarray, margin: int = 4, min_pixels: int = 20) -> bool:
    """Whether ``tumour`` (``H x W``, a donor's centre mask where it would be pasted) fits a recipient slice:
    at least ``min_pixels``, at most ``OUTSIDE_SHARE`` (5%) of it outside the recipient's ``head`` eroded by ``margin`` pixels,
    and not touching the recipient's own tumour ``mask`` (dilated by one pixel)."""
    tumour = tumour > 0
    area = int(tumour.sum())
    if area < min_pixels or tumour.shape != head.shape:
        return False
    inner = head.astype(bool)
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        inner = cv2.erode(inner.astype(np.uint8), kernel) > 0
    if int((tumour & ~inner).sum()) > OUTSIDE_SHARE * area:
        return False
    own = cv2.dilate((mask > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return not (own & tumour).any()


def paste_tumour(
    image: np.ndarray,
    mask: np.ndarray,
    medians: np.ndarray,
    donor: Donor,
    channels_per_slice: int,
    feather: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (uint8 stack) and ``mask`` with ``donor``'s tumour pasted in (check :func:`fits` first).

    ``medians``: the recipient's centre slice's head medians (:class:`SliceHead`); the donor's
    pixels are scaled by recipient / donor median, sequence by sequence (clipped to ``MATCH_LIMITS``).
    Each stacked slice gets the donor's slice at the same offset, inside that slice's mask and a
    soft edge of ``feather`` pixels outside it; background (0) stays 0, tissue never becomes 0.
    """
    if image.shape != donor.image.shape:
        raise ValueError(f"donor input {donor.image.shape} does not match the slice's {image.shape}")
    width = image.shape[-1] // channels_per_slice
    factors = np.ones(channels_per_slice, np.float32)
    ok = (medians > 0) & (donor.medians > 0)
    factors[ok] = np.clip(medians[ok] / donor.medians[ok], *MATCH_LIMITS)
    out = image.copy()
    for b in range(width):
        region = (donor.masks[..., b] > 0).astype(np.float32)
        if not region.any():
            continue
        alpha = cv2.GaussianBlur(region, (0, 0), feather) if feather > 0 else region.copy()
        alpha = np.maximum(alpha, region)  # 1 inside the donor's tumour, a soft edge outside it
        rows, cols = np.nonzero(alpha > 1e-3)  # only the tumour's bounding box changes
        box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
        a = alpha[box][..., None]
        channels = slice(b * channels_per_slice, (b + 1) * channels_per_slice)
        recipient = image[box][..., channels].astype(np.float32)
        pasted = donor.image[box][..., channels].astype(np.float32) * factors
        blend = np.rint(a * pasted + (1.0 - a) * recipient)
        out[box[0], box[1], channels] = np.where(recipient > 0, np.clip(blend, 1, 255), 0)
    centre = (donor.masks[..., width // 2] > 0).astype(mask.dtype)
    return out, np.maximum(mask, centre)


class TumourPaste:
    """Decides when to paste, which donor and whether to mirror it (seeded); see the module docstring."""

    def __init__(self, cfg: TumourPasteConfig, channels_per_slice: int = 3, seed: int | None = None):
        self.cfg = cfg
        self.channels_per_slice = channels_per_slice
        self.rng = random.Random(seed)

    def set_seed(self, seed: int) -> None:
        self.rng.seed(seed)

    def fires(self) -> bool:
        return self.rng.random() < self.cfg.p

    def choose(self, donors: np.ndarray, donor_heights: np.ndarray, height: float) -> int | None:
        """A donor row among ``donors`` whose height in its volume is within the window of ``height``; None if none is."""
        near = donors[np.abs(donor_heights - height) <= self.cfg.height_window]
        return int(near[self.rng.randrange(len(near))]) if len(near) else None

    def mirror(self) -> bool:
        """Whether this donor goes to the other hemisphere (half the time)."""
        return self.rng.random() < 0.5

    def fits(self, mask: np.ndarray, head: np.ndarray, tumour: np.ndarray) -> bool:
        return fits(mask, head, tumour, self.cfg.margin, self.cfg.min_pixels)

    def paste(
        self, image: np.ndarray, mask: np.ndarray, medians: np.ndarray, donor: Donor
    ) -> tuple[np.ndarray, np.ndarray]:
        return paste_tumour(image, mask, medians, donor, self.channels_per_slice, self.cfg.feather)


def build_paste(cfg: TumourPasteConfig, enabled: bool, channels_per_slice: int = 3) -> TumourPaste | None:
    """The paste step of training augmentation, or None (``augment.enabled`` false or ``p`` 0)."""
    return TumourPaste(cfg, channels_per_slice) if enabled and cfg.p > 0 else None
