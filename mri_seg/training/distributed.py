"""DDP helpers: one process per device under ``torchrun``; a no-op context otherwise.

``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; with ``WORLD_SIZE > 1`` we
initialise a process group (NCCL on CUDA, Gloo on CPU). Only rank 0 writes files.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from mri_seg.utils.dist_env import DistContext, env_context  # noqa: F401 (re-exported)


def init_distributed(device_type: str) -> DistContext:
    """Join the process group when launched by torchrun with several processes."""
    ctx = env_context()
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend)
    return ctx


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (identity for one process); returns it."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_flag(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """Rank 0's decision (e.g. "stop now") on every rank."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def sync_buffers(model: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running stats) to all ranks.

    DDP broadcasts buffers at the start of each training forward, so after the last
    step each rank's running stats differ slightly; validation must use the model
    that rank 0 saves.
    """
    if ctx.enabled:
        for buf in unwrap(model).buffers():
            dist.broadcast(buf, src=0)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside a DistributedDataParallel wrapper."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
