"""Training throughput: model step vs data loader, images/s, medians over several runs.

    python benchmarks/bench_train.py [--run-dir RUN] [--config configs/lgg_cpu.yaml] [--set k=v]
        [--repeats 5] [--steps 10] [--batches 20] [--workers 0 2]
    python benchmarks/bench_train.py --compare train.compile=false [--rounds 3] [--set k=v]

* train step: forward + backward + AdamW step on random batches already in memory
  (model, batch size and data.scale from the config; the device from train.device; compiled with
  ``--set train.compile=true``, timed after its compiling warm-up steps);
* data loader: train split with augmentation and normalisation, at each worker count,
  timed after the first batch (worker start-up excluded).

``--compare KEY=VALUE`` (repeatable) times only the step, interleaved: each of ``--rounds`` rounds
times the config as given and then with the compared overrides, so a host's slow spell hits both
alike; it prints each side's median and the ratio.

Without ``--run-dir`` a small synthetic dataset is generated, prepared and split in a
temp folder. If the loader is slower than the step, training is input-bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from mri_seg.config import Config, load_config
from mri_seg.data.dataset import build_dataset
from mri_seg.losses import build_loss
from mri_seg.models import build_model
from mri_seg.preprocess import scaled_size
from mri_seg.training.optim import build_optimizer
from mri_seg.training.runtime import make_precision, resolve_device, training_forward, worker_init_fn

REPO = Path(__file__).resolve().parents[1]


def bench_step(cfg: Config, repeats: int, steps: int) -> tuple[float, str]:
    """Median images/s of full optimisation steps on an in-memory random batch."""
    device = resolve_device(cfg.train.device)
    precision = make_precision(device, cfg.train.amp, cfg.train.cpu_bf16)
    model = build_model(cfg.model).to(device)
    channels_last = cfg.train.channels_last  # as training: on every device (--set train.channels_last=false to compare)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.train)
    loss_fn = build_loss(cfg.train)
    h, w = scaled_size(cfg.data.image_size, cfg.data.image_size, cfg.data.scale)
    b = cfg.train.batch_size
    images = torch.randn(b, cfg.model.in_channels, h, w, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(b, 1, h, w, device=device) > 0.9).float()
    forward, how = training_forward(model, cfg.train.compile, device)  # train.compile: as training runs it
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = forward(images)
        loss, _ = loss_fn(logits.float(), masks)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()

    for _ in range(3):  # warm-up (a compiled step compiles here)
        step()
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(steps * b / (time.perf_counter() - t))
    return statistics.median(rates), f"{device} {precision.name}, batch {b}, {h}x{w}, {how}"


def bench_loader(run_dir: Path, cfg: Config, workers: int, repeats: int, batches: int, warm: bool = False) -> float:
    """Median images/s of the augmented training loader (after its first batch); ``warm``: every
    training item drawn once first, as after a first epoch (the dataset's per-row caches filled)."""
    ds = build_dataset(run_dir, "train", cfg, train=True)
    if warm:
        for i in range(len(ds)):
            ds[i]
    rates = []
    for r in range(repeats):
        loader = DataLoader(
            ds,
            batch_size=cfg.train.batch_size,
            sampler=RandomSampler(ds, replacement=True, num_samples=(batches + 1) * cfg.train.batch_size),
            num_workers=workers,
            worker_init_fn=worker_init_fn,
        )
        it = iter(loader)
        next(it)
        t = time.perf_counter()
        n = sum(len(batch["image"]) for batch in it)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def synthetic_run(root: Path, cfg: Config) -> Path:
    from mri_seg.data.kaggle_lgg import prepare_dataset
    from mri_seg.data.splits import split_run_dir
    from mri_seg.data.synthetic import generate_dataset

    data = generate_dataset(root / "kaggle_3m", n_patients=12, seed=0, size=cfg.data.image_size)
    run = root / "run"
    prepare_dataset(data, run, cfg)
    split_run_dir(run, cfg)
    return run


def compare_steps(
    config: Path, overrides: list[str], compared: list[str], rounds: int, repeats: int, steps: int
) -> dict[str, list[float]]:
    """The step's images/s per round, the config as given (``base``) and with ``compared`` on top, interleaved."""
    sides = {"base": load_config(config, overrides), "compared": load_config(config, [*overrides, *compared])}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        for name, cfg in sides.items():
            rate, what = bench_step(cfg, repeats, steps)
            rates[name].append(rate)
            print(f"round {r + 1}/{rounds} {name:9s} {rate:8.1f} images/s  ({what})", flush=True)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=None, help="prepared+split run dir (default: synthetic)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "lgg_cpu.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--compare", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="time the step alone, interleaved, as given and with these overrides")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of --compare")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="optimiser steps per timed run")
    parser.add_argument("--batches", type=int, default=20, help="loader batches per timed run")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--warm", action="store_true", help="draw every training item once before timing the loader "
                        "(as after a first epoch: per-row caches filled; workers fork that state)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.compare:
        rates = compare_steps(args.config, args.overrides, args.compare, args.rounds, args.repeats, args.steps)
        base, compared = (statistics.median(rates[k]) for k in ("base", "compared"))
        print(f"train step, medians of {args.rounds} interleaved rounds: as given {base:.1f}, with "
              f"{' '.join(args.compare)} {compared:.1f} images/s ({compared / base:.2f}x), "
              f"{torch.get_num_threads()} torch threads")  # fmt: skip
        return 0

    step_rate, what = bench_step(cfg, args.repeats, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or synthetic_run(Path(tmp), cfg)
        loader_rates = {
            w: bench_loader(run_dir, cfg, w, args.repeats, args.batches, args.warm) for w in args.workers
        }
    print(f"config {args.config.name}: {what}, {torch.get_num_threads()} torch threads; "
          f"medians of {args.repeats} runs")
    print(f"{'':28s}{'images/s':>10s}")
    print(f"{'train step (fwd+bwd+step)':28s}{step_rate:10.1f}")
    for w, rate in loader_rates.items():
        print(f"{f'data loader, {w} workers':28s}{rate:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
