"""What runs a member's forward pass (``infer.backend``): torch, or onnxruntime on its ONNX graph.

The predictor's tiling, stitching, TTA and post-processing are the same code for both:
a backend is a callable from a ``N x C x h x w`` float32 tile batch to its ``N x 1 x h x w``
logits. The ONNX graph of a member is the bundle's ``models/<member>.onnx`` (sha256 checked),
or, for a plain checkpoint, exported in memory with :func:`onnx_graph` (a few seconds).
onnxruntime is an optional dependency: ``pip install mri_seg[onnx]``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from mri_seg.utils.hashing import file_sha256

ONNX_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"

Forward = Callable[[torch.Tensor], torch.Tensor]


class BackendError(ValueError):
    """The backend cannot run (package missing, graph unreadable or changed)."""


def onnx_graph(model: torch.nn.Module, in_channels: int, size: int = 64) -> bytes:
    """``model`` (eval mode, CPU) as an ONNX graph with dynamic batch, height and width."""
    model = model.to("cpu").eval()
    example = torch.zeros(1, in_channels, size, size)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and instance-norm notes
        torch.onnx.export(
            model, (example,), cast(Any, buffer), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, opset_version=ONNX_OPSET, dynamo=False,
        )  # fmt: skip
    return buffer.getvalue()


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(
            "infer.backend onnxruntime needs the onnxruntime package: pip install 'mri_seg[onnx]'"
        ) from exc
    return onnxruntime


class OnnxForward:
    """One member's ONNX graph in an onnxruntime CPU session, called like the torch model."""

    def __init__(self, graph: bytes | str | Path, sha256: str | None = None, threads: int | None = None) -> None:
        ort = _onnxruntime()
        if isinstance(graph, (str, Path)):
            path = Path(graph)
            if sha256 is not None and file_sha256(path) != sha256:
                raise BackendError(f"{path}: sha256 differs from the recorded one (the graph was changed or truncated)")
            graph = path.read_bytes()
        options = ort.SessionOptions()
        # as many threads as torch uses (torch.set_num_threads / OMP_NUM_THREADS), so both backends compare
        options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types for unreadable graphs
            raise BackendError(f"onnxruntime cannot load the graph: {str(exc).splitlines()[0]}") from exc

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(tiles.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(logits)


def torch_forward(model: torch.nn.Module) -> Forward:
    return model


def onnx_forward(
    model: torch.nn.Module, in_channels: int, graph: str | Path | None, sha256: str | None
) -> Forward:
    """The onnxruntime forward of a member: its stored graph, else ``model`` exported in memory."""
    return OnnxForward(graph if graph is not None else onnx_graph(model, in_channels), sha256)
