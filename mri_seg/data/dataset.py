"""Torch dataset of manifest slices: read (cv2) -> resize by data.scale -> augment (uint8) -> normalise.

Order and why (every step but reading and augmenting is a function of :mod:`mri_seg.preprocess`,
the preprocessing the predictor runs too):

1. read the uint8 slice and mask (:func:`mri_seg.io.images.read_slice` / ``read_mask``, cv2);
2. resize by ``data.scale`` (:func:`~mri_seg.preprocess.resize_pair`: ``INTER_AREA`` for
   images, ``INTER_NEAREST`` for masks);
   with ``data.cache_in_memory`` the *resized* uint8 arrays are cached once, up front
   (workers forked later share them copy-on-write), and each row's 2.5D stack on first use;
   both read-only (every epoch reads them again; augmentation and paste work on copies);
3. augment the uint8 image jointly with the mask (albumentations' intensity transforms
   are defined on uint8);
   with ``augment.tumour_paste``, first another patient's tumour is pasted into the
   slice (:mod:`mri_seg.data.paste`; the stacked slices each get the donor's own);
4. normalise with :func:`mri_seg.preprocess.normalise_image` (channel-first: the tensor's layout) -- last, so the model
   always sees exactly what inference computes from an un-augmented image
   (``zscore_volume``: with the patient's statistics, computed once over its resized
   slices by :func:`mri_seg.preprocess.volume_stats`, as inference does per scan;
   ``zscore_head``: also its head threshold, :class:`mri_seg.preprocess.Head`; each slice's
   head mask is derived once from its un-augmented FLAIR, as inference derives it from the
   scan's, and moved by the augmentation's warps with the image).

2.5D (``data.context_slices = k > 0``): step 3 starts from the slice stacked with its
``k`` neighbours on either side (same patient, slice_index order, end slices replicated)
by :func:`mri_seg.preprocess.stack_context` -- the function inference uses -- read from
the cache; augmentation then moves all stacked channels together, and the mask is the
centre slice's.

Items: ``{"image": float32 CxHxW, "mask": float32 1xHxW (0/1), "patient_id": str,
"slice_index": int, "index": int}``. ``native_mask(i)`` returns the mask at its native
size, used by validation to score predictions resized back to native resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from mri_seg.config import Config
from mri_seg.data.augment import Augmenter, brain_keep_mask, build_augmentation, strip_outside
from mri_seg.data.manifest import manifest_for_split
from mri_seg.data.paste import Donor, SliceHead, TumourPaste, build_paste
from mri_seg.io.images import read_mask, read_slice
from mri_seg.preprocess import (
    HEAD_NORMALISATIONS,
    VOLUME_NORMALISATIONS,
    Head,
    channels_per_slice,
    check_normalisation,
    context_indices,
    normalise_image,
    resize_pair,
    stack_context,
    volume_stats,
)


class SliceDataset(Dataset):
    """2D slices of one split; see module docstring."""

    def __init__(
        self,
        frame: pd.DataFrame,
        scale: float = 1.0,
        normalisation: str = "zscore_nonzero",
        augment: Augmenter | None = None,
        cache_in_memory: bool = True,
        keep_native_masks: bool = False,
        progress: bool = False,
        context_slices: int = 0,
        paste: TumourPaste | None = None,
    ):
        self.frame = frame.sort_values(["patient_id", "slice_index"]).reset_index(drop=True)
        self.scale = float(scale)
        if context_slices < 0:
            raise ValueError(f"data.context_slices must be >= 0, got {context_slices}")
        self.context_slices = int(context_slices)
        self.normalisation = normalisation
        self.augment = augment
        self.paste = paste
        self.patient_ids = self.frame["patient_id"].astype(str).tolist()
        self.slice_indices = self.frame["slice_index"].astype(int).tolist()
        self.has_tumour = self.frame["has_tumour"].astype(bool).to_numpy()
        self._volume_of = self._patient_ranges()
        self._heights = self._relative_heights()
        self._donors = np.flatnonzero(self.has_tumour)  # rows a pasted tumour comes from, and their heights
        self._donor_heights = self._heights[self._donors]
        self._slice_heads: dict[int, SliceHead] = {}  # row -> its head and medians (tumour paste, cached)
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._inputs: dict[int, np.ndarray] = {}  # row -> its stacked 2.5D input (with the cache; read-only)
        self._native: list[np.ndarray] | None = None
        check_normalisation(normalisation)  # fail early on an unknown method
        if cache_in_memory or keep_native_masks:
            self._fill_cache(cache_in_memory, keep_native_masks, progress)
        # patient's first row -> its volume's 2 x C (mean, std) and head (zscore_head; else None)
        self._norm: dict[int, tuple[np.ndarray, Head | None]] = {}
        self._stripped_norm: dict[int, tuple[np.ndarray, Head | None]] = {}  # the skull-stripped volume's (on first use)
        self._head_masks: dict[int, np.ndarray] = {}  # row -> its slice's uint8 head mask (zscore_head, cached)
        if normalisation in VOLUME_NORMALISATIONS:
            for start, stop in dict.fromkeys(self._volume_of):
                self._norm[start] = self._volume_normalisation([self.raw(j)[0] for j in range(start, stop)])

    def _volume_normalisation(self, slices: list[np.ndarray]) -> tuple[np.ndarray, Head | None]:
        """A volume's statistics (and head, for ``zscore_head``), as inference computes them for a scan."""
        head = Head.of_volume(slices, slices[0].shape[2]) if self.normalisation in HEAD_NORMALISATIONS else None
        return volume_stats(slices, head=head), head

    def _patient_ranges(self) -> list[tuple[int, int]]:
        """Per row, ``(start, stop)`` of its patient's rows (contiguous: the frame is sorted by patient)."""
        ranges: list[tuple[int, int]] = []
        ids = self.patient_ids
        start = 0
        for i in range(1, len(ids) + 1):
            if i == len(ids) or ids[i] != ids[start]:
                ranges += [(start, i)] * (i - start)
                start = i
        return ranges

    def _relative_heights(self) -> np.ndarray:
        """Per row, its slice's position in its patient's volume: 0 the first slice, 1 the last."""
        return np.array([(i - a) / max(b - a - 1, 1) for i, (a, b) in enumerate(self._volume_of)], np.float32)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.frame.iloc[i]
        try:
            image = read_slice(row["image_path"])
            mask = read_mask(row["mask_path"])
        except Exception as exc:  # name the slice; the reader's message says what is wrong
            raise ValueError(f"cannot read slice {row['image_path']} / its mask: {exc}") from exc
        if image.shape[:2] != mask.shape[:2]:
            raise ValueError(f"{row['mask_path']}: mask {mask.shape[:2]} does not match image {image.shape[:2]}")
        if image.ndim == 2:
            image = image[:, :, None]
        return image, mask.astype(np.uint8)

    def _fill_cache(self, images: bool, native: bool, progress: bool) -> None:
        cache, natives = [], []
        for i in tqdm(range(len(self.frame)), desc="caching slices", disable=not progress, leave=False):
            image, mask = self._read(i)
            if native:
                natives.append(mask.astype(bool))
            if images:
                pair = resize_pair(image, mask, self.scale)
                for a in pair:
                    a.flags.writeable = False  # shared by every epoch (and forked workers): never written
                cache.append(pair)
        self._cache = cache if images else None
        self._native = natives if native else None

    def __len__(self) -> int:
        return len(self.frame)

    def set_seed(self, seed: int) -> None:
        """Reseed the augmentation (called per epoch and in each DataLoader worker)."""
        if self.augment is not None:
            self.augment.set_seed(seed)
        if self.paste is not None:
            self.paste.set_seed(seed + 2)  # the augmentation's two pipelines take seed and seed + 1

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Resized uint8 image (HxWxC) and 0/1 uint8 mask, before augmentation."""
        if self._cache is not None:
            return self._cache[i]
        return resize_pair(*self._read(i), self.scale)

    def volume_slices(self, i: int) -> "_PatientSlices":
        """Row ``i``'s patient as a lazy sequence of resized uint8 slices, and ``i``'s position in it."""
        start, stop = self._volume_of[i]
        return _PatientSlices(self, start, stop)

    def model_input(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Resized uint8 input (slice ``i`` stacked with its context when k > 0) and its 0/1 mask.

        With the in-memory cache, a row's stack is built once and kept, read-only (every epoch
        reads it again; the augmentation and the paste work on copies)."""
        image, mask = self.raw(i)
        if not self.context_slices:
            return image, mask
        stacked = self._inputs.get(i)
        if stacked is None:
            start, _ = self._volume_of[i]
            stacked = stack_context(self.volume_slices(i), self.context_slices, [i - start])[0]
            if self._cache is not None:
                stacked.flags.writeable = False
                self._inputs[i] = stacked
        return stacked, mask

    def _context_rows(self, i: int) -> list[int]:
        """The rows of the slices stacked in row ``i``'s model input (its neighbours, ends replicated)."""
        start, stop = self._volume_of[i]
        return [start + j for j in context_indices(stop - start, i - start, self.context_slices)]

    def context_masks(self, i: int) -> np.ndarray:
        """``H x W x (2k+1)`` uint8: the 0/1 mask of each slice of row ``i``'s model input."""
        return np.stack([self.raw(r)[1] for r in self._context_rows(i)], axis=2)

    def pasted(self, i: int, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row ``i``'s input with a tumour of another patient pasted in (:mod:`mri_seg.data.paste`), when
        the paste fires and one of ``tumour_paste.tries`` donors fits; else as it was."""
        if self.paste is None or not self.paste.fires():
            return image, mask
        head = self._slice_head(i)
        if head.medians is None:  # no recognisable head: nowhere to put a tumour
            return image, mask
        for _ in range(self.paste.cfg.tries):
            d = self.paste.choose(self._donors, self._donor_heights, float(self._heights[i]))
            if d is None:
                break
            mirror = self.paste.mirror()
            tumour = self.raw(d)[1]
            if mirror:
                tumour = tumour[:, ::-1]
            medians = self._slice_head(d).medians
            if self.patient_ids[d] == self.patient_ids[i] or medians is None or not self.paste.fits(mask, head.mask, tumour):
                continue
            donor = Donor(self.model_input(d)[0], self.context_masks(d), medians)
            return self.paste.paste(image, mask, head.medians, donor.flipped() if mirror else donor)
        return image, mask

    def _slice_head(self, i: int) -> SliceHead:
        """Row ``i``'s head and its medians (:class:`mri_seg.data.paste.SliceHead` of its un-augmented slice), cached."""
        if i not in self._slice_heads:
            self._slice_heads[i] = SliceHead.of(self.raw(i)[0])
        return self._slice_heads[i]

    def native_mask(self, i: int) -> np.ndarray:
        """Boolean mask at the slice's native size."""
        if self._native is not None:
            return self._native[i]
        return self._read(i)[1].astype(bool)

    def volume_stats(self, i: int, replaced: list[int] | None = None, stripped: bool = False) -> np.ndarray | None:
        """Row ``i``'s patient (mean, std) per input channel for ``zscore_volume`` (else None).

        Sequences the augmentation replaced by FLAIR take FLAIR's statistics (inference of
        a FLAIR-only scan computes them from the replicated FLAIR); a skull-stripped slice
        takes those of the patient's volume stripped the same way (inference of a stripped
        scan computes them without the scalp); 2.5D stacks repeat them per stacked slice.
        """
        if self.normalisation not in VOLUME_NORMALISATIONS:
            return None
        start = self._volume_of[i][0]
        stats = (self._stripped_volume(start) if stripped else self._norm[start])[0].copy()
        if replaced:
            assert self.augment is not None, "only the augmentation replaces sequences"
            for c in replaced:
                stats[:, c] = stats[:, self.augment.flair_channel]
        return np.tile(stats, (1, 2 * self.context_slices + 1))

    def head_masks(self, i: int) -> np.ndarray | None:
        """``H x W x (2k+1)`` uint8: the head mask of each slice of row ``i``'s model input
        (``zscore_head``; else None), each derived once from its un-augmented slice, as inference
        derives it from the scan; the augmentation then moves them with the image."""
        head = self.head(i)
        if head is None:
            return None
        rows = self._context_rows(i)
        for r in rows:
            if r not in self._head_masks:
                self._head_masks[r] = head.masks(self.raw(r)[0])[:, :, 0].astype(np.uint8)
        return np.stack([self._head_masks[r] for r in rows], axis=2)

    def head(self, i: int, stripped: bool = False) -> Head | None:
        """Row ``i``'s patient's head (``zscore_head``; else None): that of the volume stripped
        the same way for a skull-stripped slice, as inference of a stripped scan derives it."""
        if self.normalisation not in HEAD_NORMALISATIONS:
            return None
        start = self._volume_of[i][0]
        return (self._stripped_volume(start) if stripped else self._norm[start])[1]

    def _stripped_volume(self, start: int) -> tuple[np.ndarray, Head | None]:
        """The patient's normalisation with every slice skull-stripped at the augmentation's middle depth."""
        if start not in self._stripped_norm:
            assert self.augment is not None, "only the augmentation strips slices"
            depth, flair = self.augment.strip_depth, self.augment.flair_channel

            def stripped(image: np.ndarray) -> np.ndarray:
                keep = brain_keep_mask(image[..., flair], depth)
                return image if keep is None else strip_outside(image, keep)

            _, stop = self._volume_of[start]
            self._stripped_norm[start] = self._volume_normalisation([stripped(self.raw(j)[0]) for j in range(start, stop)])
        return self._stripped_norm[start]

    def __getitem__(self, i: int) -> dict:
        image, mask = self.model_input(i)
        head_masks = self.head_masks(i)
        replaced: list[int] = []
        stripped = False
        if self.augment is not None:
            image, mask = self.pasted(i, image, mask)
            image, mask = self.augment(image, mask, head_masks)
            replaced, stripped = self.augment.replaced_sequences, self.augment.stripped
            # a skull-stripped slice: its head is what the strip kept, derived again from the image
            head_masks = None if stripped else self.augment.head
        image = normalise_image(
            image, self.normalisation, self.volume_stats(i, replaced, stripped), head=self.head(i, stripped),
            head_masks=head_masks, channels_first=True,
        )
        return {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy((mask > 0).astype(np.float32)[None]),
            "patient_id": self.patient_ids[i],
            "slice_index": self.slice_indices[i],
            "index": i,
        }


class _PatientSlices:
    """One patient's resized uint8 slices in slice order, read from the dataset's cache on access."""

    def __init__(self, dataset: SliceDataset, start: int, stop: int):
        self.dataset, self.start, self.stop = dataset, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, j: int) -> np.ndarray:
        if not 0 <= j < len(self):
            raise IndexError(j)
        return self.dataset.raw(self.start + j)[0]


def build_dataset(
    run_dir: str | Path, split: str, cfg: Config, train: bool, progress: bool = False
) -> SliceDataset:
    """Dataset of ``split`` in a prepared+split run dir; ``train`` switches augmentation on
    (validation/test: no augmentation, native masks kept for native-resolution scoring)."""
    frame = manifest_for_split(run_dir, split)
    if frame.empty:
        raise ValueError(f"{Path(run_dir) / 'splits.csv'}: split '{split}' has no slices")
    return dataset_from_frame(frame, cfg, train, progress)


def dataset_from_frame(frame: pd.DataFrame, cfg: Config, train: bool, progress: bool = False) -> SliceDataset:
    """Dataset of the manifest rows ``frame`` (e.g. one cross-validation fold's patients)."""
    k = cfg.data.context_slices
    sequences = channels_per_slice(cfg.model.in_channels, k)  # the missing-sequence simulation acts per slice
    return SliceDataset(
        frame,
        scale=cfg.data.scale,
        normalisation=cfg.data.normalisation,
        augment=build_augmentation(cfg.augment, channels_per_slice=sequences) if train else None,
        cache_in_memory=cfg.data.cache_in_memory,
        keep_native_masks=not train,
        progress=progress,
        context_slices=k,
        paste=build_paste(cfg.augment.tumour_paste, train and cfg.augment.enabled, sequences),
    )
