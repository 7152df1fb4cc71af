"""Sharded inference: ``torchrun --nproc_per_node=2`` (Gloo, CPU) gives the single-process table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.inference.sharding import Shard, shard_from_env
from mri_seg.pipelines.infer import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_shard_takes_every_nth_scan(monkeypatch):
    items = list(range(7))
    assert Shard(0, 2).take(items) == [0, 2, 4, 6] and Shard(1, 2).take(items) == [1, 3, 5]
    assert sorted(Shard(0, 3).take(items) + Shard(1, 3).take(items) + Shard(2, 3).take(items)) == items
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shard_from_env() == Shard(1, 2, 0)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2"):
        shard_from_env()


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).drop(columns=["seconds"])


@pytest.mark.slow
def test_torchrun_two_processes_match_single_process(tmp_path):
    ckpt = write_untrained_checkpoint(tmp_path / "best.pt", tiny_config(scale=0.5))
    inp = tmp_path / "in"
    rng = np.random.default_rng(0)
    for i, size in enumerate([(40, 40), (64, 50), (33, 70), (90, 41)]):
        (inp / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(inp / f"d{i % 2}" / f"s{i}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    (inp / "zz_corrupt.png").write_bytes(b"broken")

    single = tmp_path / "single"
    assert main(["--checkpoint", str(ckpt), "--input", str(inp), "--output", str(single), "--device", "cpu",
                 "--no-progress"]) == 1

    sharded = tmp_path / "sharded"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "mri_seg.pipelines.infer", "--checkpoint", str(ckpt), "--input", str(inp),
         "--output", str(sharded), "--device", "cpu", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 1  # one scan failed: rank 0 exits 1, torchrun passes it on
    assert "infer[rank 0/2]: 3 scans" in proc.stderr and "infer[rank 1/2]: 2 scans" in proc.stderr, proc.stderr
    assert "5 scans: 4 ok (0 unchanged since the last run, kept), 1 failed" in proc.stderr
    pd.testing.assert_frame_equal(_table(sharded), _table(single))
    assert not list(sharded.glob(".predictions.part-*"))
    for png in sorted(single.rglob("*_mask.png")):
        twin = sharded / png.relative_to(single)
        assert np.array_equal(cv2.imread(str(png), 0), cv2.imread(str(twin), 0)), png
    # the report: rank 0 wrote one index over both ranks' scans, each rank wrote its scans' pages
    from mri_seg.reports.inference_report import render_index

    report = (sharded / "report.html").read_text()
    assert report == render_index(pd.read_csv(sharded / "predictions.csv", dtype=str, keep_default_na=False)
                                  .to_dict("records"), sharded)
    assert len(list((sharded / "report_files").glob("*.html"))) == 4 and "zz_corrupt.png" in report
