"""Device, mixed precision and seeding: the parts of training that differ between CPU and CUDA.

On CPU everything here degrades to a no-op (autocast disabled, GradScaler disabled,
no cudnn flags), so the same training loop runs on both (channels_last, ``train.channels_last``,
applies on either) -- except with ``train.cpu_bf16`` on a CPU with AMX bfloat16 tiles, where the
training step runs under bf16 autocast as a CUDA step does (with AVX512-BF16 alone a bf16 step measured
slower than float32, so it stays float32 there). Validation
always runs at the precision inference uses on that device (:meth:`Precision.for_inference`).
``train.compile`` compiles the training step's network on either device (:func:`training_forward`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mri_seg.utils.device import DEVICES, resolve_device  # noqa: F401 (re-exported)
from mri_seg.utils.provenance import cpu_has_amx_bf16


@dataclass
class Precision:
    """Autocast settings and the GradScaler for one device."""

    device_type: str
    dtype: torch.dtype | None  # None: full precision
    scaler: torch.amp.GradScaler

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def for_inference(self) -> "Precision":
        """The precision the predictor uses on this device: autocast on CUDA, float32 on CPU (so the
        validation Dice of a CPU bf16-trained checkpoint is the Dice evaluate reports for it)."""
        if self.device_type == "cuda" or self.dtype is None:
            return self
        return Precision(self.device_type, None, self.scaler)


def make_precision(device: torch.device, amp: bool, cpu_bf16: bool = False) -> Precision:
    """CUDA + amp: bf16 autocast where supported (no scaler needed), else fp16 + GradScaler.
    CPU + ``cpu_bf16``: bf16 autocast where the CPU has AMX, else float32 (AVX512-BF16 alone: float32 is faster)."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Precision("cuda", dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16))
    if device.type == "cpu" and cpu_bf16 and cpu_has_amx_bf16():
        return Precision("cpu", torch.bfloat16, torch.amp.GradScaler("cpu", enabled=False))
    return Precision(device.type, None, torch.amp.GradScaler(device.type, enabled=False))


def compiler_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot build kernels for ``device`` here, or None: inductor writes C++
    for the CPU (a C++ compiler: ``$CXX``, g++ or clang++) and Triton kernels for CUDA."""
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "the triton package is not installed"
    candidates = [os.environ.get("CXX") or "", "g++", "clang++"]
    if any(name and shutil.which(name) for name in candidates):
        return None
    return "no C++ compiler found ($CXX, g++ or clang++)"


def training_forward(model: torch.nn.Module, compile_: bool, device: torch.device) -> tuple[Callable[..., Any], str]:
    """The callable the training step runs (``train.compile``: ``torch.compile(model)``, which shares
    the model's parameters, so validation, checkpoints and the weight average use ``model`` itself, eager)
    and a note for the log. Where no compiler is found the step stays eager and the note says why."""
    if not compile_:
        return model, "eager"
    missing = compiler_missing(device)
    if missing:
        return model, f"eager: train.compile is set but {missing}"
    return torch.compile(model), "compiled (torch.compile; the first batches compile, some seconds each)"


def configure_backend(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 31-bit seed derived from (seed, epoch, rank), so each epoch's randomness is fixed."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """Seed a DataLoader worker from torch's per-worker seed (base seed + worker id)."""
    seed = torch.initial_seed() % 2**31
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "set_seed"):
        info.dataset.set_seed(seed)


def rng_state() -> dict[str, Any]:
    """torch/numpy/random states as tensors and lists (loadable with weights_only=True)."""
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
