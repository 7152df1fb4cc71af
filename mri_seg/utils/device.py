"""One device resolution for training, evaluation and inference.

:data:`DEVICES` is also the config's rule for ``train.device``; torch is imported only when a
device is resolved, so the config layer can read the names without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available (GPU ``local_rank``), else CPU; ``cuda`` / ``cuda:N``
    without CUDA, or an unknown name, is a ValueError with a one-line message."""
    import torch

    if isinstance(name, torch.device):
        return name
    kind, _, index = str(name).partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"unknown device '{name}' (known: {', '.join(DEVICES)}, cuda:N)")
    if kind == "cpu" or (kind == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available (use --device cpu or auto)")
    return torch.device("cuda", int(index) if index else local_rank)
