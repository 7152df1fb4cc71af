"""Inference speed and memory: batched 256x256 slices, and big slices through tiled inference.

    python benchmarks/bench_infer.py [CKPT] [--config configs/lgg_cpu.yaml] [--runs 5]
        [--sizes 2048 4096] [--tile-batch 8] [--device cpu] [--backend torch|onnxruntime]

Without CKPT an untrained model of ``--config`` (default: the CPU recipe, UNet channels
[16, 32, 64, 128, 256], data.scale 0.5) is built: speed and memory do not depend on
the weights. Figures printed:

- slices/s for 256x256 slices at batch 1 and 16 (``predict_proba_batch``; median of ``--runs``),
- for each big size, in a fresh subprocess per case (so peak RSS is the case's own):
  seconds (median of ``--runs`` calls after a warm-up) and peak RSS of ``Predictor.predict_proba`` on one slice (the kernel's VmHWM,
  reset just before the call via /proc/self/clear_refs; ``ru_maxrss`` where that is not
  possible), and
  of a plain ``monai.inferers.sliding_window_inference`` call with the same model, tile,
  overlap, blending and tile batch on the same slice already resized and normalised
  (the pipeline adds resizing, normalisation, CPU-side stitching and the resize back),
  and the ratio pipeline / plain. ``--backend onnxruntime``: both run the member's ONNX graph.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(1, str(REPO_ROOT / "tests"))  # untrained.py: the tests' untrained checkpoints
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def synthetic_slice(size: int, seed: int = 0) -> np.ndarray:
    """A head-like uint8 slice: textured disc on a zero background, a bright blob inside (built in uint8)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
    head = np.zeros((size, size), np.uint8)
    cv2.circle(head, (size // 2, size // 2), int(size * 0.45), 1, -1)
    img *= head[..., None]
    cv2.circle(img, (int(size * 0.6), int(size * 0.45)), max(2, size // 14), (230, 230, 230), -1)
    return img


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) so the next reading is this call's own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """VmHWM (resettable), else ``ru_maxrss`` (the process's whole-life peak)."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_predictor(args: argparse.Namespace):
    from untrained import write_untrained_checkpoint

    from mri_seg.config import InferConfig, load_config
    from mri_seg.inference.predictor import Predictor

    infer_cfg = InferConfig(tile_batch=args.tile_batch, overlap=args.overlap, backend=args.backend)
    if args.checkpoint:
        return Predictor.from_checkpoint(args.checkpoint, device=args.device, infer_cfg=infer_cfg)
    cfg = load_config(args.config) if args.config and Path(args.config).is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_untrained_checkpoint(Path(tmp) / "untrained.pt", cfg)
        return Predictor.from_checkpoint(ckpt, device=args.device, infer_cfg=infer_cfg)


# ----------------------------------------------------------------------------- cases


def throughput(args: argparse.Namespace) -> dict:
    """Median slices/s for 256x256 slices at batch 1 and 16."""
    from dataclasses import replace

    predictor = load_predictor(args)
    out = {}
    for batch in (1, 16):
        predictor.infer_cfg = replace(predictor.infer_cfg, tile_batch=max(batch, args.tile_batch))
        images = [synthetic_slice(256, seed=i) for i in range(batch)]
        predictor.predict_proba_batch(images)  # warm-up
        rates = []
        for _ in range(args.runs):
            start = time.perf_counter()
            predictor.predict_proba_batch(images)
            rates.append(batch / (time.perf_counter() - start))
        out[f"batch{batch}_slices_per_s"] = round(statistics.median(rates), 2)
    return out


def big_case(args: argparse.Namespace) -> dict:
    """One big slice, pipeline or plain MONAI; run in its own process."""
    import torch
    from monai.inferers import sliding_window_inference

    predictor = load_predictor(args)
    image = synthetic_slice(args.size, seed=1)
    predictor.predict_proba(synthetic_slice(256))  # warm-up (kernels, allocator)
    if args.case == "pipeline":
        baseline, exact = _status_mb("VmRSS"), reset_peak_rss()
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            prob = predictor.predict_proba(image)
            times.append(time.perf_counter() - start)
            assert prob.shape == image.shape[:2]
            del prob
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(predictor._prepare(image)[None]))  # resized + normalised
        del image
        baseline, exact = _status_mb("VmRSS"), reset_peak_rss()
        model, tile = predictor.forwards[0], predictor.tile_size  # the backend's forward pass (torch or onnxruntime)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            with torch.inference_mode():
                out = sliding_window_inference(
                    tensor, (tile, tile), predictor.infer_cfg.tile_batch, lambda t: torch.sigmoid(model(t)),
                    overlap=predictor.infer_cfg.overlap, mode="gaussian",
                )
            times.append(time.perf_counter() - start)
            assert out.shape[-2:] == tensor.shape[-2:]
            del out
    seconds = statistics.median(times)
    peak = peak_rss_mb()
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(peak, 1), "rss_before_mb": round(baseline or 0, 1),
            "peak_is_call_only": exact}


def run_subprocess(args: argparse.Namespace, case: str, size: int) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--size", str(size), "--tile-batch", str(args.tile_batch),
           "--overlap", str(args.overlap), "--device", args.device, "--runs", str(args.runs), "--backend", args.backend]
    cmd += ["--config", str(args.config)] if args.config else []
    cmd += [str(args.checkpoint)] if args.checkpoint else []
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{case} {size}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", nargs="?", type=Path, default=None)
    p.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "lgg_cpu.yaml")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--sizes", type=int, nargs="*", default=[2048, 4096])
    p.add_argument("--tile-batch", type=int, default=8)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="infer.backend of both cases")
    p.add_argument("--case", choices=("pipeline", "plain"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(big_case(args)))
        return

    import torch

    predictor = load_predictor(args)
    cfg = predictor.config
    print(f"model channels {cfg.model.channels}, data.scale {cfg.data.scale}, tile {predictor.tile_size}, "
          f"overlap {args.overlap}, tile_batch {args.tile_batch}, device {predictor.device}, "
          f"torch threads {torch.get_num_threads()}, backend {args.backend}, source {args.checkpoint or 'untrained'}, "
          f"load average {os.getloadavg()[0]:.2f}")
    del predictor
    for key, value in throughput(args).items():
        print(f"256x256 {key}: {value}")
    for size in args.sizes:
        pipe = run_subprocess(args, "pipeline", size)
        plain = run_subprocess(args, "plain", size)
        for name, r in (("pipeline", pipe), ("plain MONAI", plain)):
            print(f"{size}x{size} {name}: {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB "
                  f"(RSS before the call {r['rss_before_mb']} MB, "
                  f"growth {r['peak_rss_mb'] - r['rss_before_mb']:.1f} MB)"
                  + ("" if r["peak_is_call_only"] else " [ru_maxrss: whole process]"))
        print(f"{size}x{size} ratio pipeline/plain: time {pipe['seconds'] / plain['seconds']:.2f}, "
              f"peak RSS {pipe['peak_rss_mb'] / plain['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
