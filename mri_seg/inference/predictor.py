"""Slice -> tumour probability map, for any slice size, with bounded memory.

A :class:`Predictor` repeats the training preprocessing exactly, with the functions the
training dataset uses (:mod:`mri_seg.preprocess`): resize by the checkpoint's ``data.scale``
(:func:`~mri_seg.preprocess.resize_image`: ``INTER_AREA``, in the input's dtype, size
rounded to the nearest pixel), then the checkpoint's normalisation. Every batch then goes
through MONAI's ``sliding_window_inference`` (tile = the training slice size unless
``infer.tile_size`` says otherwise, gaussian blending, ``infer.tile_batch`` tiles per
forward pass): a slice no larger than the tile is one zero-padded window (0 is the
normalised background) cropped back, a larger one is tiled and stitched on the CPU, so a
4096x4096 slice never holds more than ``tile_batch`` tiles of activations on the device.
Probabilities are resized back to the input size (``INTER_LINEAR``). Optional TTA
(:mod:`mri_seg.inference.tta`: a horizontal flip, small rotations) averages more passes; :meth:`Predictor.iter_passes` /
``predict_volume(..., return_passes=True)`` give the passes separately (for the
review-flag uncertainty). On CUDA the same code runs under autocast with channels_last.
``infer.backend: onnxruntime`` runs each member's forward pass on its ONNX graph instead
(:mod:`mri_seg.inference.backends`, CPU); everything around it is this same code.

2.5D models (``data.context_slices = k``): a volume's slice ``i`` is given to the model
stacked with its neighbours ``i-k .. i+k`` by :func:`mri_seg.preprocess.stack_context`,
the function the training dataset uses, so :meth:`Predictor.predict_volume` must get the
whole volume in slice order. Images passed one by one (``predict_proba``,
``predict_proba_batch``) are 1-slice volumes: their neighbours are themselves. The same
holds for ``data.normalisation: zscore_volume``: its statistics are those of the volume
given to ``predict_volume`` (computed as the training dataset does, over the resized
slices), or of the image alone.

Two opt-in adaptations to scans unlike the training data (:mod:`mri_seg.preprocess`): a
background stored as a constant other than 0 is found on the slices' outer frame and
treated as 0 is in training (``infer.background: border``); and where the caller gives the
slice spacing (``slice_spacing_mm``: NIfTI, DICOM), the 2.5D neighbours are taken
:func:`~mri_seg.preprocess.context_step` slices apart (``infer.context_mm`` > 0).

Ensembles (:meth:`Predictor.from_checkpoints`): several members, e.g. the fold models of
a cross-validated run. Every member's every test-time pass is one pass; the probability
is the mean over all passes, so members are averaged before thresholding. Members must
see the same input: they must agree on :data:`MEMBER_KEYS` (one-line error naming the
member and the key otherwise); their architectures may differ.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from mri_seg.config import Config, InferConfig, get_dotted
from mri_seg.inference.backends import BackendError, Forward, onnx_forward, torch_forward
from mri_seg.inference.tta import Pass, run_passes, tta_passes
from mri_seg.io.scan import ScanError, replace_nonfinite, to_model_channels
from mri_seg.io.sequences import TRAINING_SEQUENCES
from mri_seg.models import build_model, size_divisor
from mri_seg.postprocess import to_native_size
from mri_seg.preprocess import (
    HEAD_NORMALISATIONS,
    VOLUME_NORMALISATIONS,
    Head,
    border_background,
    channels_per_slice,
    check_normalisation,
    context_indices,
    context_step,
    normalise_image,
    resize_image,
    scaled_size,
    volume_stats,
)
from mri_seg.training.checkpoint import (
    CheckpointError,
    checkpoint_config,
    checkpoint_sequences,
    file_sha256,
    load_checkpoint,
)
from mri_seg.utils.device import resolve_device

# Largest |intensity| accepted: the per-image z-score runs in float32, where squares of
# values beyond ~1e19 overflow (std = inf turns the slice into zeros, i.e. an empty mask).
MAX_ABS_INTENSITY = 1e15


# Resized slices kept between a volume's statistics pass and its normalisation (bytes, input dtype).
RESIZED_BUDGET = 256 * 1024 * 1024

# What every ensemble member must agree on: what its input is made of.
MEMBER_KEYS = (
    "model.in_channels", "data.scale", "data.image_size", "normalisation", "data.context_slices", "sequences",
)  # fmt: skip


class EnsembleError(ValueError):
    """Checkpoints that cannot be averaged (they expect different inputs)."""


def member_signature(state: dict) -> dict[str, object]:
    """The :data:`MEMBER_KEYS` values of a loaded checkpoint (None where it has no such setting)."""
    config = state["config"]
    out: dict[str, object] = {}
    for key in MEMBER_KEYS:
        if key == "normalisation":
            out[key] = (state.get("normalisation") or {}).get("method", config["data"].get("normalisation"))
        elif key == "sequences":
            out[key] = list(checkpoint_sequences(state))  # the training default for older checkpoints
        else:
            out[key] = get_dotted(config, key)
    return out


def check_members(states: Sequence[dict], paths: Sequence[Path]) -> None:
    """Refuse members whose input settings differ from the first member's."""
    reference = member_signature(states[0])
    for state, path in zip(states[1:], paths[1:]):
        for key, value in member_signature(state).items():
            if value != reference[key]:
                raise EnsembleError(
                    f"ensemble member {path} differs from {paths[0]} in {key}: {value!r} != {reference[key]!r}"
                )


def member_record(path: str | Path, state: dict, sha256: str | None = None) -> dict[str, object]:
    """What summaries record about one ensemble member: its file (resolved), the file's sha256
    (computed unless given), and the checkpoint's epoch, fold and best metric."""
    path = Path(path)
    return {
        "path": str(path.resolve()), "sha256": sha256 or file_sha256(path), "epoch": state.get("epoch"),
        "fold": state.get("fold"), "best_metric": state.get("best_metric"),
    }  # fmt: skip


def round_up(value: int, divisor: int) -> int:
    return max(divisor, int(math.ceil(value / divisor)) * divisor)


def windows_per_slice(height: int, width: int, tile: int, overlap: float) -> int:
    """How many tiles ``sliding_window_inference`` cuts one slice into (MONAI's grid)."""
    step = max(1, int(tile * (1.0 - overlap)))
    per_dim = [1 if s <= tile else math.ceil((s - tile) / step) + 1 for s in (height, width)]
    return per_dim[0] * per_dim[1]


def strip_prefixes(state: dict) -> dict:
    """Weights saved from a DDP-wrapped or compiled model carry ``module.`` / ``_orig_mod.`` prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_weights(model: torch.nn.Module, weights: dict, path: str | Path) -> None:
    """``load_state_dict`` with a one-line error when the weights do not fit the architecture.

    (torch lists every missing/unexpected/mis-shaped tensor on dozens of lines.)
    """
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or shapes:
        example = (shapes or missing or unexpected)[0]
        detail = f"e.g. {example}"
        if example in shapes:
            detail += f" is {tuple(weights[example].shape)} in the file, {tuple(own[example].shape)} in the model"
        raise CheckpointError(
            f"{path}: weights do not match the model its config describes ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(shapes)} of another shape; {detail})"
        )
    model.load_state_dict(weights)


class Predictor:
    """Probability maps from a trained model; see the module docstring for the steps.

    ``model``: one model, or several (an ensemble sharing ``config``'s input settings).
    ``config``: the config the model was trained with (model, data.scale,
    data.image_size). ``infer_cfg``: tiling, TTA (``postprocess.tta_flip``, ``tta_rotations``); defaults
    to :class:`InferConfig` defaults. ``sequences``: the model's input sequences in channel
    order (the checkpoint's record; readers deliver scans in this order).
    ``checkpoint_paths``/``checkpoint_sha256``: the files the members came from (empty for
    models built in code).
    """

    sequences: tuple[str, ...] = TRAINING_SEQUENCES

    def __init__(
        self,
        model: torch.nn.Module | Sequence[torch.nn.Module],
        config: Config,
        infer_cfg: InferConfig | None = None,
        normalisation: str = "zscore_nonzero",
        device: str | torch.device = "auto",
        member_configs: Sequence[Config] | None = None,
        graphs: Sequence[dict[str, str | None]] | None = None,
    ) -> None:
        self.config = config
        self.infer_cfg = infer_cfg if infer_cfg is not None else InferConfig()
        self.normalisation = normalisation
        self.backend = self.infer_cfg.backend
        # onnxruntime runs on the CPU (its CPU execution provider)
        self.device = resolve_device("cpu" if self.backend == "onnxruntime" else device)
        self.cuda = self.device.type == "cuda"
        self.in_channels = int(config.model.in_channels)  # what the model takes (stacked channels in 2.5D)
        self.context_slices = int(config.data.context_slices)
        self.channels_per_slice = channels_per_slice(self.in_channels, self.context_slices)  # sequences per slice
        self.scale = float(config.data.scale)
        if self.scale <= 0:
            raise ValueError(f"data.scale must be > 0, got {self.scale}")
        divisor = math.lcm(*(size_divisor(c.model) for c in [config, *(member_configs or [])]))
        requested = self.infer_cfg.tile_size or int(round(config.data.image_size * self.scale))
        self.tile_size = round_up(requested, divisor)
        if not 0.0 <= self.infer_cfg.overlap < 1.0:
            raise ValueError(f"infer.overlap must be in [0, 1), got {self.infer_cfg.overlap}")
        if self.infer_cfg.tile_batch < 1:
            raise ValueError(f"infer.tile_batch must be >= 1, got {self.infer_cfg.tile_batch}")
        if self.infer_cfg.blend not in ("gaussian", "constant"):
            raise ValueError(f"infer.blend must be gaussian or constant, got '{self.infer_cfg.blend}'")
        check_normalisation(normalisation)  # unknown method: fail now
        models = [model] if isinstance(model, torch.nn.Module) else list(model)
        if not models:
            raise ValueError("a Predictor needs at least one model")
        self.models = [m.to(self.device).eval() for m in models]
        if self.cuda:  # torch's stubs omit Module.to's memory_format keyword (accepted at runtime)
            self.models = [m.to(memory_format=torch.channels_last) for m in self.models]  # type: ignore[call-overload]
        self.model = self.models[0]
        self.forwards = self._forwards(graphs or [{} for _ in self.models])
        self.checkpoint_path: Path | None = None  # the first member's file
        self.checkpoint_paths: list[Path] = []
        self.checkpoint_sha256: list[str] = []
        self.members: list[dict] = []  # per checkpoint: path, sha256, epoch, fold, best_metric

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "auto", infer_cfg: InferConfig | None = None
    ) -> "Predictor":
        """Model, training config and normalisation all come from the checkpoint file."""
        return cls.from_checkpoints([path], device=device, infer_cfg=infer_cfg)

    @classmethod
    def from_checkpoints(
        cls, paths: Sequence[str | Path], device: str | torch.device = "auto", infer_cfg: InferConfig | None = None
    ) -> "Predictor":
        """An ensemble of one or more checkpoint files (see the module docstring); one file is
        exactly :meth:`from_checkpoint`. Config and normalisation come from the first member."""
        files = [Path(p) for p in paths]
        if not files:
            raise ValueError("no checkpoint given")
        states = [load_checkpoint(p, map_location="cpu") for p in files]  # a bundle member too
        check_members(states, files)
        configs, models = [], []
        for path, state in zip(files, states):
            try:
                config = checkpoint_config(state)
                model = build_model(config.model)
            except ValueError as exc:  # ConfigError included: a stored value outside its rule
                raise CheckpointError(f"{path}: its stored config is not usable: {exc}") from exc
            load_weights(model, strip_prefixes(state["model"]), path)
            configs.append(config)
            models.append(model)
        config = configs[0]
        method = (states[0].get("normalisation") or {}).get("method", config.data.normalisation)
        graphs = [{"path": st.get("onnx"), "sha256": st.get("onnx_sha256")} for st in states]  # bundles have them
        predictor = cls(models, config, infer_cfg, method, device, member_configs=configs[1:], graphs=graphs)
        predictor.checkpoint_path = files[0]
        predictor.checkpoint_paths = files
        predictor.checkpoint_sha256 = [file_sha256(p) for p in files]
        predictor.sequences = checkpoint_sequences(states[0])
        predictor.members = [
            member_record(p, st, sha) for p, sha, st in zip(files, predictor.checkpoint_sha256, states)
        ]
        return predictor

    # ------------------------------------------------------------------ public API

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """``H x W x C`` (or ``H x W``) image of any dtype and size -> ``H x W`` float32 in [0, 1]."""
        return self.predict_proba_batch([image])[0]

    def predict_proba_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Same-size slices, batched through the model; one ``H x W`` float32 map per slice."""
        return list(self.iter_proba(images))

    def iter_proba(self, images: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
        """Like :meth:`predict_proba_batch`, yielding maps chunk by chunk (bounded memory on volumes)."""
        for passes in self.iter_passes(images):
            yield passes[0] if len(passes) == 1 else passes.mean(axis=0)

    def predict_volume(
        self, volume: np.ndarray, return_passes: bool = False, slice_spacing_mm: float | None = None
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``D x H x W x C`` volume -> ``D x H x W`` float32 mean probability.

        With ``return_passes`` also the per-pass maps ``P x D x H x W`` (one per member
        and test-time pass), from which :mod:`mri_seg.uncertainty` scores how much the passes disagree.
        ``slice_spacing_mm``: the distance between the volume's slices, where known (2.5D context).
        """
        volume = np.asarray(volume)
        if volume.ndim != 4:
            raise ValueError(f"predict_volume needs a D x H x W x C volume, got shape {volume.shape}")
        per_slice = list(self._iter_passes(volume, as_volume=True, slice_spacing_mm=slice_spacing_mm))
        passes = np.stack(per_slice, axis=1) if per_slice else np.zeros((self.n_passes, *volume.shape[:3]), np.float32)
        mean = passes[0].copy() if len(passes) == 1 else passes.mean(axis=0)
        return (mean, passes) if return_passes else mean

    @property
    def n_passes(self) -> int:
        """Probability maps averaged per slice: one per member and test-time pass."""
        return len(self.models) * self.passes_per_member

    @property
    def tta(self) -> list[Pass]:
        """Each member's test-time passes (:mod:`mri_seg.inference.tta`): plain, rotated, flipped."""
        post = self.infer_cfg.postprocess
        return tta_passes(post.tta_flip, post.tta_rotations)

    @property
    def passes_per_member(self) -> int:
        """Each member's passes (plain, each TTA rotation, each flipped with flip TTA): they come member by member."""
        return len(self.tta)

    def iter_passes(self, images: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
        """Per image, the ``P x H x W`` float32 maps of every pass: for each member, its test-time
        passes in :func:`~mri_seg.inference.tta.tta_passes` order (plain first).

        Each image is a 1-slice volume (2.5D: its own neighbours); use :meth:`predict_volume`
        or :meth:`iter_volume_passes` for the slices of one volume.
        """
        return self._iter_passes(images, as_volume=False)

    def iter_volume_passes(
        self, volume: Sequence[np.ndarray], slice_spacing_mm: float | None = None
    ) -> Iterator[np.ndarray]:
        """Like :meth:`iter_passes` for the slices of one volume in slice order (2.5D context from
        neighbours, :func:`~mri_seg.preprocess.context_step` apart where ``slice_spacing_mm`` is known)."""
        return self._iter_passes(volume, as_volume=True, slice_spacing_mm=slice_spacing_mm)

    def context_step(self, slice_spacing_mm: float | None) -> int:
        """How many slices apart the 2.5D neighbours are taken in a volume of that slice spacing."""
        return context_step(slice_spacing_mm, self.infer_cfg.context_mm) if self.context_slices else 1

    def prepare_inputs(
        self, volume: Sequence[np.ndarray], indices: Sequence[int], slice_spacing_mm: float | None = None
    ) -> np.ndarray:
        """The model's input for slices ``indices`` of ``volume``: ``N x in_channels x h x w`` float32.

        Each slice: channels adapted to ``channels_per_slice``, resized by ``data.scale``,
        normalised; then stacked with its context (:func:`stack_context`).
        """
        prepared = _PreparedSlices(self, volume, as_volume=True, step=self.context_step(slice_spacing_mm))
        return self._stacked(prepared, indices, as_volume=True)

    def _stacked(self, prepared: "_PreparedSlices", indices: Sequence[int], as_volume: bool) -> np.ndarray:
        height, width = prepared.scaled_size
        batch = np.empty((len(indices), self.in_channels, height, width), dtype=np.float32)
        k = self.context_slices
        for n, i in enumerate(indices):
            # stack_context's channel order (slices i-k .. i+k, each all its sequences), copied
            # channels-first straight into the batch (no concatenated copy in between)
            if as_volume:
                sources = [prepared[j] for j in context_indices(len(prepared), i, k, prepared.step)]
            else:  # an image alone: a 1-slice volume, its own neighbours
                sources = [prepared[i]] * (2 * k + 1)
            start = 0
            for block in sources:
                if block.ndim != 3:
                    raise ValueError(f"stack_context needs H x W x C slices, got shape {block.shape}")
                batch[n, start:start + block.shape[-1]] = block.transpose(2, 0, 1)
                start += block.shape[-1]
        return batch

    def _iter_passes(
        self, images: np.ndarray | Sequence[np.ndarray], as_volume: bool, slice_spacing_mm: float | None = None
    ) -> Iterator[np.ndarray]:
        if len(images) == 0:
            return
        height, width = images[0].shape[:2]
        for img in images:
            if img.shape[:2] != (height, width):
                raise ScanError(
                    f"predict_proba_batch needs same-size slices, got {img.shape[:2]} and {(height, width)}"
                )
        h, w = scaled_size(height, width, self.scale)
        chunk = max(1, self.infer_cfg.tile_batch // windows_per_slice(h, w, self.tile_size, self.infer_cfg.overlap))
        step = self.context_step(slice_spacing_mm) if as_volume else 1
        prepared = _PreparedSlices(self, images, as_volume, step)
        for start in range(0, len(images), chunk):
            indices = range(start, min(start + chunk, len(images)))
            batch = torch.from_numpy(self._stacked(prepared, indices, as_volume))
            # later slices need no earlier ones (independent images: not even their neighbours)
            prepared.forget_before(indices[-1] + 1 - (self.context_slices * step if as_volume else 0))
            passes = [
                probs[:, 0].numpy()
                for forward in self.forwards
                for probs in run_passes(partial(self._infer, forward), batch, self.tta)
            ]
            del batch  # the model input is not needed while the maps are resized back
            for k in range(len(indices)):
                if len(passes) == 1:  # no stacked copy of a (possibly 4096^2) map
                    yield self._restore(passes[0][k], height, width)[None]
                else:
                    yield np.stack([self._restore(p[k], height, width) for p in passes])

    # ------------------------------------------------------------------ steps

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """One image (a 1-slice volume) -> the model's ``in_channels x h x w`` float32 input."""
        return self._stacked(_PreparedSlices(self, [image], as_volume=True), [0], as_volume=True)[0]

    def background(self, slices: Iterable[np.ndarray]) -> np.ndarray | None:
        """The background value per channel of these (resized) slices (``infer.background``);
        None: 0, the training data's convention."""
        if self.infer_cfg.background == "zero":
            return None
        return border_background(slices, self.infer_cfg.background_share)

    def _resized(self, image: np.ndarray) -> np.ndarray:
        """:meth:`_checked`, then resized by ``data.scale`` (input dtype kept where cv2 can)."""
        return resize_image(self._checked(image), self.scale)

    def _checked(self, image: np.ndarray) -> np.ndarray:
        """Any input image as ``H x W x C``: channels checked and adapted, NaN/inf replaced by
        background (with a warning), intensities within what float32 normalisation handles."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ScanError(f"expected an H x W x C image, got shape {image.shape}")
        if image.dtype.kind not in "uifb":
            raise ScanError(f"image of data type {image.dtype}; expected integer or real intensities")
        image = to_model_channels(image, self.channels_per_slice, "image")
        image = replace_nonfinite(image, "image")
        if image.dtype == np.bool_:
            image = image.astype(np.uint8)
        if image.dtype.kind in "ui" and image.dtype.itemsize <= 4:
            return image  # its whole range is within MAX_ABS_INTENSITY: no pass over the pixels needed
        largest = max(abs(float(image.min())), abs(float(image.max()))) if image.size else 0.0
        if largest > MAX_ABS_INTENSITY:
            raise ScanError(
                f"intensities up to {largest:.3g} are beyond what the normalisation can handle in float32 "
                f"(|value| <= {MAX_ABS_INTENSITY:g}); rescale the scan"
            )
        return image

    def _restore(self, prob: np.ndarray, height: int, width: int) -> np.ndarray:
        """Model-resolution map back to the input size, clipped to [0, 1] (as validation does)."""
        return to_native_size(prob, height, width)

    def _forwards(self, graphs: Sequence[dict[str, str | None]]) -> list[Forward]:
        """Each member's forward pass on ``infer.backend`` (see :mod:`mri_seg.inference.backends`)."""
        if self.backend == "torch":
            return [torch_forward(m) for m in self.models]
        try:
            return [
                onnx_forward(m, self.in_channels, g.get("path"), g.get("sha256")) for m, g in zip(self.models, graphs)
            ]
        except BackendError as exc:
            raise ValueError(str(exc)) from exc

    def _forward(self, forward: Forward, tiles: torch.Tensor) -> torch.Tensor:
        if self.cuda:
            tiles = tiles.contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(forward(tiles).float())

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.cuda:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def _infer(self, forward: Forward, batch: torch.Tensor) -> torch.Tensor:
        """``N x C x h x w`` CPU tensor -> ``N x 1 x h x w`` CPU probabilities of one member (tiled, blended)."""
        with torch.inference_mode(), self._autocast():
            out = sliding_window_inference(
                batch,
                roi_size=(self.tile_size, self.tile_size),
                sw_batch_size=self.infer_cfg.tile_batch,
                predictor=lambda tiles: self._forward(forward, tiles),
                overlap=self.infer_cfg.overlap,
                mode=self.infer_cfg.blend,
                padding_mode="constant",
                cval=0.0,
                sw_device=self.device,
                device=torch.device("cpu"),
            )
        return torch.as_tensor(out).float()


class _PreparedSlices:
    """A volume's slices, prepared (channels, scale, normalisation) on first access and kept
    until :meth:`forget_before` drops those no later input needs (bounded memory).

    ``zscore_volume`` / ``zscore_head``: the statistics (and head threshold) are those of the
    whole volume (a pass over the resized slices first), or of each slice alone when ``as_volume`` is false
    (independent images, each a one-slice volume). The background value
    (:meth:`Predictor.background`) likewise: the volume's, or each image's own.
    ``step``: the 2.5D neighbours' distance in slices (:meth:`Predictor.context_step`).
    """

    def __init__(
        self, predictor: Predictor, slices: np.ndarray | Sequence[np.ndarray], as_volume: bool, step: int = 1
    ):
        self.predictor = predictor
        self.slices = slices
        self.as_volume = as_volume
        self.step = step
        self._memo: dict[int, np.ndarray] = {}
        height, width = np.asarray(slices[0]).shape[:2] if len(slices) else (0, 0)
        self.scaled_size = scaled_size(height, width, predictor.scale) if len(slices) else (0, 0)
        self.volume_method = predictor.normalisation in VOLUME_NORMALISATIONS
        self.head_method = predictor.normalisation in HEAD_NORMALISATIONS
        self.stats = None
        self.background: np.ndarray | None = None
        self.head: Head | None = None
        self._resized: dict[int, np.ndarray] = {}  # kept from the statistics pass (within RESIZED_BUDGET)
        if as_volume and len(slices) and predictor.infer_cfg.background != "zero":
            self.background = predictor.background(self._resize_and_keep(j) for j in range(len(slices)))
        if self.head_method and as_volume and len(slices):
            self.head = Head.of_volume(
                (self._resize_and_keep(j) for j in range(len(slices))), predictor.channels_per_slice
            )
        if self.volume_method and as_volume and len(slices):
            self.stats = volume_stats(
                (self._resize_and_keep(j) for j in range(len(slices))), self.background, self.head
            )

    def __len__(self) -> int:
        return len(self.slices)

    def _resize_and_keep(self, j: int) -> np.ndarray:
        """Slice ``j`` resized; kept for :meth:`__getitem__` while the kept ones fit :data:`RESIZED_BUDGET`
        (a volume's statistics pass then resizes each slice once, not twice)."""
        if j in self._resized:
            return self._resized[j]
        resized = self.predictor._resized(self.slices[j])
        if sum(a.nbytes for a in self._resized.values()) + resized.nbytes <= RESIZED_BUDGET:
            self._resized[j] = resized
        return resized

    def __getitem__(self, j: int) -> np.ndarray:
        if j not in self._memo:
            stats, background, head = self.stats, self.background, self.head
            resized = self._resized.pop(j, None)
            if resized is None:
                resized = self.predictor._resized(self.slices[j])
            if not self.as_volume:  # an image alone: its own background, head and statistics
                background = self.predictor.background([resized])
                if self.head_method:
                    head = Head.of_volume([resized], self.predictor.channels_per_slice)
                if self.volume_method:
                    stats = volume_stats([resized], background, head)
            self._memo[j] = normalise_image(resized, self.predictor.normalisation, stats, background, head)
        return self._memo[j]

    def forget_before(self, index: int) -> None:
        for j in [j for j in self._memo if j < index]:
            del self._memo[j]

