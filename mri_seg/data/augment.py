"""Training augmentation: albumentations 2.x joint image+mask transforms built from AugmentConfig.

Works on uint8 ``H x W x C`` images (intensity transforms expect uint8) and uint8
0/1 masks; normalisation happens afterwards (see :mod:`mri_seg.data.dataset`).

Before them, the dataset may paste another patient's tumour into the slice
(``augment.tumour_paste``, :mod:`mri_seg.data.paste`: it needs other slices, so it lives with the
dataset, not in this per-slice pipeline). Then two stages:

* geometric (flip, affine, elastic) move image and mask together; masks use
  nearest-neighbour interpolation so they stay binary, borders are filled with 0.
* in-tumour appearance (:class:`LesionCore`, ``augment.lesion``, off by default): the core
  of the slice's tumour darkened in every channel, leaving a bright rim, so that cystic or
  necrotic tumours (dark on FLAIR inside a bright rim, the ones the model under-segments)
  are seen in training; applied after the warps, to the mask the model is trained on.
* in-tumour T1 appearance (:class:`LesionT1Contrast`, ``augment.lesion_t1``, off by default):
  pre- and post-contrast rescaled inside the tumour (or a smooth part of it), each by its own
  factor, FLAIR unchanged: enhancing, dark or unchanged T1 inside a FLAIR lesion;
* a faint tumour (:class:`LesionFaint`, ``augment.lesion_faint``, off by default): FLAIR inside
  the tumour (or a smooth part of it) faded towards the median of the brain around it, its texture
  kept: the large tumours FLAIR shows only faintly (applied after the missing-sequence simulation
  below, so FLAIR's copies fade with it; FLAIR-only slices only with ``in_flair_only``);
* skull stripping (:class:`SkullStrip`, ``augment.skull_strip``, off by default): everything
  outside a head mask derived from the slice itself (Otsu, closing, largest component,
  holes filled), eroded by a random depth, set to background (0) in every channel, as other
  sites' skull-stripped scans arrive; the mask is unchanged.
* missing-sequence simulation (:class:`ReplaceWithFlair`): the dataset fills a
  patient's missing pre- or post-contrast sequence with a copy of FLAIR, and a
  1-channel input at inference is replicated the same way. A model that never saw
  such slices fails on those patients (on lgg-dev it missed whole tumours of
  FLAIR-only test patients), so training copies FLAIR over the other channels
  with probability ``augment.missing_sequence_p``; ``augment.flair_only_share`` is the
  share of those draws that lose every sequence but FLAIR (``uniform``: one sequence
  missing, either one, or both, equally often).
* intensity (brightness/contrast, gamma, Gaussian noise) change the image only,
  and are then re-masked: pixels that were 0 (background outside the head) are set
  back to 0. The ``zscore_nonzero`` normalisation computes its statistics over the
  non-zero pixels, so noise or a brightness shift in the background would change
  what "foreground" means between training and inference.

2.5D stacks (``C * (2k+1)`` channels): the geometric and brightness/contrast/gamma
transforms of albumentations 2.0.8 apply one set of parameters to every channel (tested:
each stacked slice is transformed exactly as a 3-channel image would be); Gaussian noise
is drawn per channel, as for the sequences of one slice; the missing-sequence simulation
acts per slice of the stack.

Every transform is built with ``strict=True``: albumentations 2.x only *warns* about
an unknown argument by default, strict mode turns that into an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from mri_seg.config import AugmentConfig
from mri_seg.io.sequences import FLAIR_CHANNEL
from mri_seg.preprocess import fill_holes


class ReplaceWithFlair(A.ImageOnlyTransform):
    """Copy the FLAIR channel over one or both other sequences, as the dataset does for missing ones.

    A 2.5D input stacks ``2k+1`` slices of ``channels_per_slice`` sequences each: the same
    sequences go missing in every slice of the stack (a patient lacks a sequence in all
    its slices), and each slice's own FLAIR is copied within that slice.
    """

    def __init__(
        self,
        flair_channel: int = FLAIR_CHANNEL,
        channels_per_slice: int = 3,
        flair_only_share: float | None = None,
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.flair_channel = flair_channel
        self.channels_per_slice = channels_per_slice
        self.flair_only_share = flair_only_share  # None: each case (one sequence missing, or all) equally often

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        shape = params["shape"]
        per_slice = self.channels_per_slice
        if len(shape) == 2 or per_slice < 2 or shape[-1] % per_slice:
            return {"replace": []}
        others = [c for c in range(per_slice) if c != self.flair_channel]
        if self.flair_only_share is None:
            choice = self.py_random.randrange(len(others) + 1)  # one sequence missing, or all of them
            return {"replace": others if choice == len(others) else [others[choice]]}
        if self.py_random.random() < self.flair_only_share:  # a FLAIR-only scan
            return {"replace": others}
        return {"replace": [others[self.py_random.randrange(len(others))]]}

    def apply(self, img: np.ndarray, replace: list[int], **params) -> np.ndarray:
        if not replace:
            return img
        out = img.copy()
        for first in range(0, img.shape[-1], self.channels_per_slice):  # each stacked slice
            for c in replace:
                out[..., first + c] = img[..., first + self.flair_channel]
        return out


class LesionCore(A.DualTransform):
    """Darken the core of the tumour (inside the mask) in every channel, smoothly, leaving a rim.

    The core is where the distance to the mask's border exceeds ``core`` x the largest such
    distance of its component; intensities there are multiplied by a factor drawn from
    ``darken`` (a dark, cyst-like core inside a bright FLAIR rim: the tumours the model misses).
    The mask is unchanged: the core is tumour.
    """

    def __init__(
        self,
        darken: Sequence[float] = (0.25, 0.7),
        core: Sequence[float] = (0.2, 0.6),
        min_pixels: int = 40,
        p: float = 0.3,
    ):
        super().__init__(p=p)
        self.darken = (float(darken[0]), float(darken[1]))
        self.core = (float(core[0]), float(core[1]))
        self.min_pixels = int(min_pixels)

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        mask = data.get("mask")
        if mask is None or int(np.count_nonzero(mask)) < self.min_pixels:
            return {"weight": None}
        m = (np.asarray(mask) > 0).astype(np.uint8)
        dist = cv2.distanceTransform(m, cv2.DIST_L2, 3)
        n, labels = cv2.connectedComponents(m, connectivity=8)
        frac = self.py_random.uniform(*self.core)
        core = np.zeros(m.shape, np.float32)
        for k in range(1, n):
            comp = labels == k
            dmax = float(dist[comp].max())
            if dmax < 2.0:
                continue
            core[comp & (dist >= frac * dmax)] = 1.0
        if not core.any():
            return {"weight": None}
        sigma = max(1.0, 0.1 * float(dist.max()))
        weight = cv2.GaussianBlur(core, (0, 0), sigma) * m
        factor = self.py_random.uniform(*self.darken)
        return {"weight": weight, "factor": factor}

    def apply(self, img: np.ndarray, weight: np.ndarray | None = None, factor: float = 1.0, **params) -> np.ndarray:
        if weight is None:
            return img
        scale = 1.0 - weight * (1.0 - factor)
        out = np.rint(img.astype(np.float32) * (scale[..., None] if img.ndim == 3 else scale))
        out = np.where(img > 0, np.clip(out, 1, 255), 0)  # never turn tissue into background (0)
        return out.astype(img.dtype)

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return mask


def tumour_region(m: np.ndarray, patchy: float, transform: A.BasicTransform) -> np.ndarray:
    """Float weights in [0, 1], inside the tumour ``m`` (uint8 0/1) only, soft-edged: all of the tumour or,
    with probability ``patchy``, the 30-80% of it where a smooth random field is high (a heterogeneous
    lesion); drawn from ``transform``'s generators (albumentations seeds them)."""
    region = m.astype(np.float32)
    if transform.py_random.random() < patchy:
        coarse = transform.random_generator.random((6, 6)).astype(np.float32)
        field = cv2.resize(coarse, (m.shape[1], m.shape[0]), interpolation=cv2.INTER_CUBIC)
        share = transform.py_random.uniform(0.3, 0.8)  # of the tumour
        cut = float(np.quantile(field[m > 0], 1.0 - share))
        region = ((field >= cut) & (m > 0)).astype(np.float32)
    return cv2.GaussianBlur(region, (0, 0), 1.5) * m  # soft edges, inside the tumour only


def _bounding_box(weight: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(weight)
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


class LesionT1Contrast(A.DualTransform):
    """Rescale the pre- and post-contrast sequences inside the tumour (all of it or a smooth part), FLAIR unchanged.

    Each T1 sequence gets its own factor, drawn log-uniformly from ``scale``: an enhancing
    part (post-contrast brighter), a cyst or necrosis (both darker), or nothing. The models
    otherwise learn the T1 look of typical LGG tissue, and on the tumours they miss the T1
    sequences mislead them: FLAIR alone segments three of the five hard patients better
    (docs/accuracy.md). With probability ``patchy`` only a random smooth part of the tumour
    changes (heterogeneous lesions). Every stacked slice of a 2.5D input gets the same
    change; the mask is unchanged. Needs ``channels_per_slice`` >= 2 (a sequence besides FLAIR).
    """

    def __init__(
        self,
        scale: Sequence[float] = (0.5, 2.0),
        patchy: float = 0.5,
        flair_channel: int = FLAIR_CHANNEL,
        channels_per_slice: int = 3,
        min_pixels: int = 40,
        p: float = 0.3,
    ):
        super().__init__(p=p)
        self.scale = (float(scale[0]), float(scale[1]))
        self.patchy = float(patchy)
        self.flair_channel = flair_channel
        self.channels_per_slice = channels_per_slice
        self.min_pixels = int(min_pixels)

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        mask = data.get("mask")
        per_slice = self.channels_per_slice
        shape = params["shape"]
        if mask is None or len(shape) == 2 or per_slice < 2 or shape[-1] % per_slice:
            return {"weight": None}
        m = (np.asarray(mask) > 0).astype(np.uint8)
        if int(m.sum()) < self.min_pixels:
            return {"weight": None}
        weight = tumour_region(m, self.patchy, self)
        lo, hi = np.log(self.scale[0]), np.log(self.scale[1])
        factors = {
            c: float(np.exp(self.py_random.uniform(lo, hi))) for c in range(per_slice) if c != self.flair_channel
        }
        return {"weight": weight, "factors": factors}

    def apply(
        self, img: np.ndarray, weight: np.ndarray | None = None, factors: dict | None = None, **params
    ) -> np.ndarray:
        if weight is None or not factors:
            return img
        box = _bounding_box(weight)  # only the tumour's bounding box changes
        w = weight[box][..., None]
        out = img.copy()
        for c, f in factors.items():
            channels = list(range(c, img.shape[-1], self.channels_per_slice))  # this sequence in each stacked slice
            part = img[box][..., channels]
            scaled = np.rint(part.astype(np.float32) * (1.0 + w * (f - 1.0)))
            out[box[0], box[1], channels] = np.where(part > 0, np.clip(scaled, 1, 255), 0)  # tissue never becomes 0
        return out

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return mask


class LesionFaint(A.DualTransform):
    """Fade FLAIR inside the tumour (all of it or a smooth part) towards the brain around it: a faint lesion.

    With ``ref`` the median FLAIR of a ``ring`` of tissue around the tumour, FLAIR inside becomes
    ``ref + (x - ref) * f`` (``f`` drawn from ``fade``), so its texture stays and its contrast drops:
    the large tumours that FLAIR shows only faintly, which the models find in part (TCGA_CS_5396,
    docs/accuracy.md). Each stacked slice's FLAIR gets the same weights with its own ``ref``; a
    sequence that is a copy of FLAIR (a missing one, :class:`ReplaceWithFlair`, which runs before this)
    fades with it, the other sequences and the mask are unchanged. With ``in_flair_only`` false a
    FLAIR-only slice (every sequence a copy of FLAIR) is left as it is: nothing would show the faded
    tumour, and the models would learn to call tissue that looks like brain.
    """

    def __init__(
        self,
        fade: Sequence[float] = (0.3, 0.8),
        patchy: float = 0.5,
        ring: int = 5,
        flair_channel: int = FLAIR_CHANNEL,
        channels_per_slice: int = 3,
        min_pixels: int = 40,
        in_flair_only: bool = False,
        p: float = 0.3,
    ):
        super().__init__(p=p)
        self.fade = (float(fade[0]), float(fade[1]))
        self.patchy = float(patchy)
        self.ring = int(ring)
        self.flair_channel = flair_channel
        self.channels_per_slice = channels_per_slice
        self.min_pixels = int(min_pixels)
        self.in_flair_only = bool(in_flair_only)

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        mask = data.get("mask")
        if mask is None:
            return {"weight": None}
        m = (np.asarray(mask) > 0).astype(np.uint8)
        if int(m.sum()) < self.min_pixels:
            return {"weight": None}
        size = 2 * self.ring + 1
        ring = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > m
        return {"weight": tumour_region(m, self.patchy, self), "ring": ring, "factor": self.py_random.uniform(*self.fade)}

    def apply(
        self, img: np.ndarray, weight: np.ndarray | None = None, ring: np.ndarray | None = None, factor: float = 1.0,
        **params,
    ) -> np.ndarray:  # fmt: skip
        if weight is None or ring is None:
            return img
        copies = self._flair_copies(img)
        if not self.in_flair_only and copies and all(len(c) == self.channels_per_slice - 1 for c in copies.values()):
            return img  # a FLAIR-only slice: no sequence would show the faded tumour
        box = _bounding_box(weight)
        w = weight[box]
        out = img.copy()
        for c in copies if img.ndim == 3 else [self.flair_channel]:
            plane = img if img.ndim == 2 else img[..., c]
            around = plane[ring & (plane > 0)]
            if around.size == 0:
                continue  # no tissue around the tumour in this stacked slice: nothing to fade to
            ref = float(np.median(around))
            part = plane[box].astype(np.float32)
            faded = np.rint(ref + (part - ref) * (1.0 - w * (1.0 - factor)))
            faded = np.where(part > 0, np.clip(faded, 1, 255), 0)  # tissue never becomes background
            if img.ndim == 2:
                out[box] = faded
            else:
                out[box[0], box[1], [c, *copies[c]]] = faded[..., None]  # FLAIR and its copies alike
        return out

    def _flair_copies(self, img: np.ndarray) -> dict[int, list[int]]:
        """Each stacked slice's FLAIR channel -> that slice's other channels that equal it (missing sequences)."""
        if img.ndim == 2:
            return {}
        per_slice = self.channels_per_slice
        out = {}
        for first in range(0, img.shape[-1] - per_slice + 1, per_slice):
            flair = first + self.flair_channel
            others = [first + c for c in range(per_slice) if c != self.flair_channel]
            out[flair] = [c for c in others if np.array_equal(img[..., c], img[..., flair])]
        return out

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return mask


def slice_head_mask(flair: np.ndarray) -> np.ndarray:
    """``H x W`` bool: the head in one uint8 FLAIR slice, from the image alone.

    Otsu, closed, the largest component, holes filled. Cheap and rough on purpose: it varies
    a little from slice to slice, as brain masks of other tools do. FLAIR, not the brightest
    channel: some patients' other sequences have a bright constant background.
    """
    flair = np.asarray(flair).astype(np.uint8, copy=False)
    if not flair.any():
        return np.zeros(flair.shape, bool)
    _, head = cv2.threshold(flair, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    head = cv2.morphologyEx(head, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(head, connectivity=8)
    if n < 2:
        return np.zeros(flair.shape, bool)
    return fill_holes(labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))


def brain_keep_mask(flair: np.ndarray, depth: int, min_cover: float = 0.3) -> np.ndarray | None:
    """The pixels a skull strip of ``depth`` keeps: :func:`slice_head_mask` eroded by ``depth``
    pixels; None when the derived mask is implausible (covers under ``min_cover`` of FLAIR's
    non-zero pixels: a slice through the neck, odd contrast)."""
    head = slice_head_mask(flair)
    if head.sum() < min_cover * max(int(np.count_nonzero(flair)), 1):
        return None
    if depth > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * depth + 1, 2 * depth + 1))
        head = cv2.erode(head.astype(np.uint8), kernel).astype(bool)
    return head


def strip_outside(image: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``H x W (x C)`` image with every pixel outside ``keep`` set to 0 (in every channel)."""
    return np.where(keep[..., None] if image.ndim == 3 else keep, image, 0).astype(image.dtype)


class SkullStrip(A.DualTransform):
    """Set everything outside the (eroded) head of the slice to 0 in every channel: a skull-stripped scan.

    The head mask is :func:`slice_head_mask` of the (centre slice's) FLAIR, eroded by a depth
    drawn from ``erode`` (pixels at the model's resolution) so the scalp and some of the rim
    go too; the tumour mask is unchanged (pixels of tumour outside the derived brain stay
    tumour). A head mask covering less than ``min_cover`` of FLAIR's non-zero pixels is taken
    for a failure of the derivation (a slice through the neck, odd contrast): the slice is left alone.
    """

    def __init__(
        self, erode: Sequence[int] = (1, 6), flair_channel: int = FLAIR_CHANNEL, channels_per_slice: int = 3,
        min_cover: float = 0.3, p: float = 0.3,
    ):  # fmt: skip
        super().__init__(p=p)
        self.erode = (int(erode[0]), int(erode[1]))
        self.flair_channel = flair_channel
        self.channels_per_slice = channels_per_slice
        self.min_cover = min_cover

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        image = data["image"]
        if image.ndim == 2:
            flair = image
        else:
            centre = (image.shape[-1] // self.channels_per_slice) // 2  # the centre slice of a 2.5D stack
            flair = image[..., min(centre * self.channels_per_slice + self.flair_channel, image.shape[-1] - 1)]
        return {"keep": brain_keep_mask(flair, self.py_random.randint(*self.erode), self.min_cover)}

    def apply(self, img: np.ndarray, keep: np.ndarray | None = None, **params) -> np.ndarray:
        if keep is None or not keep.any():  # nothing recognisable as a head: leave the slice alone
            return img
        return strip_outside(img, keep)

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return mask


def _geometric(cfg: AugmentConfig, channels_per_slice: int = 3) -> list[A.BasicTransform]:
    # shared by every warp: linear for the image, nearest for the mask (stays binary), zero borders
    warp = dict(
        interpolation=cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=0,
        strict=True,
    )
    out: list[A.BasicTransform] = []
    if cfg.hflip_p > 0:
        out.append(A.HorizontalFlip(p=cfg.hflip_p, strict=True))
    aff = cfg.affine
    if aff.p > 0:
        out.append(
            A.Affine(
                scale=(float(aff.scale[0]), float(aff.scale[1])),
                rotate=(-aff.rotate, aff.rotate),
                translate_percent=(-aff.translate, aff.translate),
                p=aff.p,
                **warp,
            )
        )
    el = cfg.elastic
    if el.p > 0:
        out.append(
            A.ElasticTransform(
                alpha=el.alpha,
                sigma=el.sigma,
                p=el.p,
                **warp,
            )
        )
    if cfg.lesion.p > 0:  # after the warps: the core is found in the mask the model is trained on
        out.append(
            LesionCore(darken=cfg.lesion.darken, core=cfg.lesion.core, min_pixels=cfg.lesion.min_pixels, p=cfg.lesion.p)
        )
    if cfg.lesion_t1.p > 0:
        out.append(
            LesionT1Contrast(
                scale=cfg.lesion_t1.scale, patchy=cfg.lesion_t1.patchy, channels_per_slice=channels_per_slice,
                p=cfg.lesion_t1.p,
            )
        )
    if cfg.skull_strip.p > 0:  # last: what it removes stays background through the intensity transforms
        out.append(SkullStrip(erode=cfg.skull_strip.erode, channels_per_slice=channels_per_slice, p=cfg.skull_strip.p))
    return out


def _intensity(cfg: AugmentConfig, channels_per_slice: int = 3) -> list[A.BasicTransform]:
    it = cfg.intensity
    out: list[A.BasicTransform] = []
    if cfg.missing_sequence_p > 0:
        share = None if cfg.flair_only_share == "uniform" else float(cfg.flair_only_share)
        out.append(
            ReplaceWithFlair(channels_per_slice=channels_per_slice, flair_only_share=share, p=cfg.missing_sequence_p)
        )
    if cfg.lesion_faint.p > 0:  # after the missing sequences: it fades FLAIR's copies too and sees FLAIR-only slices
        faint = cfg.lesion_faint
        out.append(
            LesionFaint(
                fade=faint.fade, patchy=faint.patchy, ring=faint.ring, channels_per_slice=channels_per_slice,
                min_pixels=faint.min_pixels, in_flair_only=faint.in_flair_only, p=faint.p,
            )
        )
    if it.p > 0:
        out.append(
            A.RandomBrightnessContrast(
                brightness_limit=(-it.brightness, it.brightness),
                contrast_limit=(-it.contrast, it.contrast),
                p=it.p,
                strict=True,
            )
        )
        out.append(A.RandomGamma(gamma_limit=(float(it.gamma[0]), float(it.gamma[1])), p=it.p, strict=True))
    if it.noise_p > 0 and it.noise_std[1] > 0:
        out.append(
            A.GaussNoise(std_range=(float(it.noise_std[0]), float(it.noise_std[1])), p=it.noise_p, strict=True)
        )
    return out


class Augmenter:
    """Callable ``(image uint8 HxWxC, mask uint8 HxW) -> (image, mask)``; see module docstring."""

    flair_channel = FLAIR_CHANNEL

    def __init__(self, cfg: AugmentConfig, seed: int | None = None, channels_per_slice: int = 3):
        self.geometric = A.Compose(
            _geometric(cfg, channels_per_slice), mask_interpolation=cv2.INTER_NEAREST, seed=seed, strict=True,
            save_applied_params=True, additional_targets={"head": "mask"},
        )
        self.strip_depth = (cfg.skull_strip.erode[0] + cfg.skull_strip.erode[1]) // 2  # for the stripped statistics
        self.intensity = A.Compose(
            _intensity(cfg, channels_per_slice), seed=seed, strict=True, save_applied_params=True
        )
        self.replaced_sequences: list[int] = []  # sequences the last call replaced by FLAIR (per slice)
        self.stripped = False  # whether the last call skull-stripped the slice
        self.head: np.ndarray | None = None  # the head masks given to the last call, moved with the image

    def set_seed(self, seed: int) -> None:
        """Reseed both pipelines (albumentations 2.x has its own generators, not np.random)."""
        self.geometric.set_random_seed(seed)
        self.intensity.set_random_seed(seed + 1)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, head: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``head``: optional ``H x W (x B)`` uint8 head masks of the image's slices; moved by the same
        warps as the mask and left in :attr:`head` (``zscore_head`` without deriving them again)."""
        if image.dtype != np.uint8:
            raise TypeError(f"augmentation expects a uint8 image, got {image.dtype}")
        out = self.geometric(image=image, mask=mask, **({} if head is None else {"head": head}))
        image, mask = out["image"], out["mask"]
        self.head = out.get("head") if head is not None else None
        self.stripped = any(
            name == SkullStrip.__name__ and params.get("keep") is not None for name, params in out["applied_transforms"]
        )  # a per-volume normalisation must then use the stripped volume's statistics, as inference of such a scan does
        background = image == 0
        out = self.intensity(image=image, mask=mask)  # the mask: where LesionFaint fades (unchanged by all of them)
        image = out["image"]
        self.replaced_sequences = [
            c
            for name, params in out["applied_transforms"]
            if name == ReplaceWithFlair.__name__
            for c in params["replace"]
        ]  # a per-volume normalisation must then use FLAIR's statistics for them, as inference of such a scan does
        return np.where(background, np.uint8(0), image).astype(np.uint8, copy=False), mask


def build_augmentation(cfg: AugmentConfig, seed: int | None = None, channels_per_slice: int = 3) -> Augmenter | None:
    """The training pipeline, or ``None`` when ``augment.enabled`` is false (val/test never augment).

    ``channels_per_slice``: sequences per slice of a 2.5D stack (``data.context_slices``).
    """
    return Augmenter(cfg, seed=seed, channels_per_slice=channels_per_slice) if cfg.enabled else None
