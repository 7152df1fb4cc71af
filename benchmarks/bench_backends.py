"""Forward-pass backends on the CPU: torch eager vs onnxruntime (``infer.backend``), and what else was tried.

    python benchmarks/bench_backends.py [CKPT_OR_FOLDER ...] [--config configs/lgg_cpu.yaml] [--runs 5]
        [--threads 1 2] [--size 2048] [--warmup 5] [--no-extras]

CKPT_OR_FOLDER: checkpoint files, a run's checkpoints folder (its fold ensemble) or an exported
bundle; without one, an untrained model of ``--config`` (the CPU recipe) is built: speed does
not depend on the weights. For each intra-op thread count (torch.set_num_threads; onnxruntime
gets the same count) and each backend it prints, as medians over ``--runs`` after ``--warmup``
calls:

- slices/s of the whole pipeline (``Predictor.predict_proba_batch``, every member, TTA as
  configured) on 256x256 slices at batch 1 and 16,
- seconds for one ``--size`` x ``--size`` slice (tiled at the model's tile size),
- the ratio onnxruntime / torch and the largest probability difference between them.

Then (unless ``--no-extras``) the raw network on a batch of 16 tiles: torch eager fp32,
torch under CPU bf16 autocast, ``torch.compile``, onnxruntime: ms per batch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(1, str(REPO_ROOT / "tests"))  # untrained.py
sys.path.insert(2, str(REPO_ROOT / "benchmarks"))  # bench_infer.synthetic_slice
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def median_seconds(fn: Callable[[], object], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def checkpoint_files(given: list[Path], config: Path, tmp: Path) -> list[Path]:
    from mri_seg.training.checkpoint import resolve_checkpoints

    if given:
        return resolve_checkpoints(list(given))
    from untrained import write_untrained_checkpoint

    from mri_seg.config import load_config

    return [write_untrained_checkpoint(tmp / "untrained.pt", load_config(config))]


def predictor(files: list[Path], backend: str):  # type: ignore[no-untyped-def]
    from mri_seg.config import InferConfig
    from mri_seg.inference.predictor import Predictor

    return Predictor.from_checkpoints(files, device="cpu", infer_cfg=InferConfig(backend=backend))


def pipeline_figures(files: list[Path], args: argparse.Namespace) -> None:
    from bench_infer import synthetic_slice

    slices = [synthetic_slice(256, seed=i) for i in range(16)]
    big = synthetic_slice(args.size, seed=1)
    predictors = {b: predictor(files, b) for b in ("torch", "onnxruntime")}
    first = predictors["torch"]
    print(f"members {len(files)}, tile {first.tile_size}, overlap {first.infer_cfg.overlap}, tile_batch "
          f"{first.infer_cfg.tile_batch}, TTA {first.infer_cfg.postprocess.tta_flip}, in_channels {first.in_channels}")
    diff = max(
        float(np.abs(predictors["torch"].predict_proba(img) - predictors["onnxruntime"].predict_proba(img)).max())
        for img in (slices[0], big)
    )  # fmt: skip
    print(f"largest probability difference onnxruntime vs torch (a 256 slice and the {args.size} slice): {diff:.2e}")
    import torch

    for threads in args.threads:
        torch.set_num_threads(threads)
        rows = {}
        for backend in ("torch", "onnxruntime"):
            p = predictor(files, backend)  # onnxruntime sessions take torch's thread count at creation
            rows[backend] = {
                "batch1": 1 / median_seconds(lambda: p.predict_proba_batch(slices[:1]), args.runs, args.warmup),
                "batch16": 16 / median_seconds(lambda: p.predict_proba_batch(slices), args.runs, args.warmup),
                "big_s": median_seconds(lambda: p.predict_proba(big), max(1, args.runs // 2), 1),
            }
        t, o = rows["torch"], rows["onnxruntime"]
        print(f"threads {threads}: 256x256 batch 1: torch {t['batch1']:.1f}, onnxruntime {o['batch1']:.1f} slices/s "
              f"(x{o['batch1'] / t['batch1']:.2f}); batch 16: torch {t['batch16']:.1f}, onnxruntime "
              f"{o['batch16']:.1f} slices/s (x{o['batch16'] / t['batch16']:.2f}); {args.size}x{args.size}: torch "
              f"{t['big_s']:.2f} s, onnxruntime {o['big_s']:.2f} s (x{t['big_s'] / o['big_s']:.2f})")


def extras(files: list[Path], args: argparse.Namespace) -> None:
    import torch

    from mri_seg.inference.backends import OnnxForward, onnx_graph
    from mri_seg.utils.provenance import cpu_has_bf16

    p = predictor(files[:1], "torch")
    model, tile = p.model, p.tile_size
    x = torch.randn(16, p.in_channels, tile, tile)
    graph = onnx_graph(model, p.in_channels, tile)
    for threads in args.threads:
        torch.set_num_threads(threads)
        ort = OnnxForward(graph)
        ms = {}
        with torch.inference_mode():
            ms["torch eager fp32"] = median_seconds(lambda: model(x), args.runs, args.warmup)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                ms[f"torch bf16 autocast (cpu bf16: {cpu_has_bf16()})"] = median_seconds(
                    lambda: model(x), args.runs, args.warmup
                )
        ms["onnxruntime"] = median_seconds(lambda: ort(x), args.runs, args.warmup)
        try:
            compiled = torch.compile(model)
            with torch.inference_mode():
                start = time.perf_counter()
                compiled(x)
                compile_s = time.perf_counter() - start
                ms[f"torch.compile (first call {compile_s:.0f} s)"] = median_seconds(
                    lambda: compiled(x), args.runs, args.warmup
                )
        except Exception as exc:  # no compiler toolchain etc.
            print(f"threads {threads}: torch.compile failed: {str(exc).splitlines()[0][:120]}")
        base = ms["torch eager fp32"]
        print(f"threads {threads}: network alone, batch 16 x {p.in_channels} x {tile} x {tile}: " + "; ".join(
            f"{k} {v * 1000:.0f} ms (x{base / v:.2f})" for k, v in ms.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="*", type=Path)
    p.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "lgg_cpu.yaml")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--no-extras", action="store_true")
    args = p.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        files = checkpoint_files(args.checkpoints, args.config, Path(tmp))
        print(f"source: {', '.join(map(str, files)) if args.checkpoints else 'untrained ' + str(args.config)}")
        pipeline_figures(files, args)
        if not args.no_extras:
            extras(files, args)
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
