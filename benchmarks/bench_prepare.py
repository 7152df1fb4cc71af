"""Benchmark the prepare stage: scan + decode + check every slice, write the tables.

    python benchmarks/bench_prepare.py DIR [--runs 5] [--workers N]

Runs ``prepare_dataset`` ``--runs`` times into fresh temporary run directories and prints
seconds and slices/s per run and the median. The first run may include cold disk reads;
the median is the figure to quote.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from mri_seg.config import load_config  # noqa: E402
from mri_seg.data.kaggle_lgg import prepare_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: prepare.workers)")
    args = parser.parse_args(argv)
    cfg = load_config(None, [] if args.workers is None else [f"prepare.workers={args.workers}"])
    seconds, rates = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
            start = time.perf_counter()
            result = prepare_dataset(args.data_dir, Path(tmp) / "run", cfg, progress=False)
            elapsed = time.perf_counter() - start
        n = result.counts["slices"]
        seconds.append(elapsed)
        rates.append(n / elapsed)
        print(f"run {i + 1}: {n} slices ({result.counts['patients']} patients) in {elapsed:.2f} s "
              f"= {n / elapsed:.0f} slices/s")  # fmt: skip
    print(f"median: {statistics.median(seconds):.2f} s, {statistics.median(rates):.0f} slices/s "
          f"(workers={cfg.prepare.workers}, cpus={os.cpu_count()}, {args.data_dir})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
