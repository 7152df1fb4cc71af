"""The whole product on synthetic data, no download needed.

    python -m mri_seg.pipelines.demo [--out demo-run] [--patients 16] [--set k=v]

Synthesises a Kaggle-layout dataset in OUT/dataset and held-out scans in OUT/scans
(a patient folder of TIFF slices, a 1024x1024 PNG slice, a NIfTI volume), then runs
``pipelines/demo.yaml`` (prepare -> split -> train -> evaluate -> infer) with OUT as
the run directory. Re-running reuses what is already done (see mri_seg.pipelines.run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mri_seg.data.demo_scans import make_inference_scans
from mri_seg.data.synthetic import generate_dataset
from mri_seg.pipelines._cli import StageError, run_main
from mri_seg.pipelines.run import StageContext, load_pipeline, run_pipeline
from mri_seg.recipes import PIPELINES
from mri_seg.rundir import RunDir
from mri_seg.training.resume import training_status

DEFAULT_PIPELINE = PIPELINES / "demo.yaml"  # shipped in the package: the demo runs from an installed wheel
MARKER = ".mri_seg_demo"  # marks a folder the demo created, so it never writes into a user's folder


def prepare_out_dir(out: Path) -> None:
    """Create OUT, or accept it if a previous demo made it; refuse any other non-empty folder."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise StageError(f"{out} exists and was not made by the demo; pass --out with a new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()


def make_inputs(out: Path, n_patients: int, seed: int) -> tuple[Path, Path]:
    data_dir, scans_dir = out / "dataset", out / "scans"
    if not (data_dir / "data.csv").exists():
        generate_dataset(data_dir, n_patients=n_patients, seed=seed)
    if not (scans_dir / "volume.nii.gz").exists():
        make_inference_scans(scans_dir, seed=seed + 1000)
    return data_dir, scans_dir


def demo_summary_text(out: Path) -> str:
    run = RunDir(out)
    summary_path = run.eval_dir("test") / "summary.json"
    lines = ["", "demo finished:"]
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        lo, hi = s.get("dice_ci95", [float("nan")] * 2)
        lines.append(
            f"  test patients: {s.get('n_patients')}  Dice mean {s['dice_mean']:.3f}  "
            f"median {s['dice_median']:.3f}  95% CI [{lo:.3f}, {hi:.3f}]"
        )
    status = training_status(out)
    if status is not None:
        note = "" if status["finished"] else (
            "  UNFINISHED: the train.max_time_minutes safety cap stopped it; re-run the demo to continue")
        lines.append(f"  training:     {status['state']}{note}")
    lines += [
        f"  report:       {run.eval_dir('test') / 'report.html'}",
        f"  masks:        {run.predictions}",
        f"  predictions:  {run.predictions / 'predictions.csv'}",
        f"  inference report: {run.predictions / 'report.html'}",
        f"  checkpoint:   {run.best_checkpoint}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mri_seg.pipelines.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-run"), help="run directory (default ./demo-run)")
    parser.add_argument("--patients", type=int, default=16, help="synthetic patients to train/evaluate on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = parser.parse_args(argv)
    if not args.pipeline.is_file():
        raise StageError(f"pipeline definition not found: {args.pipeline}")
    start = time.time()
    out = args.out.resolve()
    prepare_out_dir(out)
    data_dir, _ = make_inputs(out, args.patients, args.seed)
    run_pipeline(load_pipeline(args.pipeline), StageContext(out, data_dir), args.overrides)
    print(demo_summary_text(out))
    print(f"  wall time:    {time.time() - start:.0f} s")
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
