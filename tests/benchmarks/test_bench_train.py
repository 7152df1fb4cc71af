"""benchmarks/bench_train.py --compare: the step timed as given and with overrides, interleaved."""

from __future__ import annotations

import pytest

TINY = [
    "model.channels=[4,8]", "model.strides=[2]", "model.num_res_units=0", "data.scale=0.125", "model.in_channels=3",
    "data.context_slices=0", "train.batch_size=2", "train.compile=false", "train.device=cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def bench_train(load_benchmark):
    return load_benchmark("bench_train")


def test_compare_times_both_sides_each_round_in_turn(bench_train, monkeypatch):
    seen = []

    def fake_step(cfg, repeats, steps):
        seen.append(cfg.train.channels_last)
        return (100.0 if cfg.train.channels_last else 150.0), "cpu fp32"

    monkeypatch.setattr(bench_train, "bench_step", fake_step)
    rates = bench_train.compare_steps(bench_train.REPO / "configs" / "lgg_cpu.yaml", TINY,
                                      ["train.channels_last=false"], rounds=3, repeats=1, steps=1)  # fmt: skip
    assert seen == [True, False] * 3  # interleaved: as given, then compared, in every round
    assert rates == {"base": [100.0] * 3, "compared": [150.0] * 3}


def test_compare_prints_each_sides_median_and_the_ratio_from_real_steps(bench_train, capsys):
    args = ["--config", str(bench_train.REPO / "configs" / "lgg_cpu.yaml"), "--compare", "train.channels_last=false",
            "--rounds", "2", "--repeats", "1", "--steps", "1"]  # fmt: skip
    for item in TINY:
        args += ["--set", item]
    assert bench_train.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("round ") == 4 and "medians of 2 interleaved rounds" in out
    ratio = float(out.split("images/s (")[-1].split("x)")[0])
    assert ratio > 0
