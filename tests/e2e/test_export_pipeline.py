"""export -> evaluate --checkpoint MODEL_DIR scores the test patients exactly as the run's checkpoints do."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from bundle_helpers import require_onnxruntime
from untrained import tiny_config, write_untrained_checkpoint

from mri_seg.pipelines import evaluate, export


def test_evaluate_with_a_bundle_equals_the_runs_checkpoints(synthetic_run, tmp_path):
    require_onnxruntime()
    run = shutil.copytree(synthetic_run, tmp_path / "run")
    cfg = tiny_config(scale=0.5)
    cfg.eval.bootstrap_samples = 50
    cfg.eval.patient_pages = False
    write_untrained_checkpoint(run / "checkpoints" / "best.pt", cfg)
    bundle = tmp_path / "elsewhere" / "model"
    assert export.main(["--checkpoint", str(run / "checkpoints"), "--out", str(bundle)]) == 0
    results = {}
    for name, ckpt in (("run", run / "checkpoints"), ("bundle", bundle)):
        argv = ["--run-dir", str(run), "--split", "test", "--threshold", "0.5", "--checkpoint", str(ckpt), "--no-progress"]
        assert evaluate.main(argv) == 0
        summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
        results[name] = (pd.read_csv(run / "eval" / "test" / "slices.csv"), summary)
    (run_slices, run_summary), (bundle_slices, bundle_summary) = results["run"], results["bundle"]
    pd.testing.assert_frame_equal(run_slices, bundle_slices)
    assert run_summary["dice_mean"] == bundle_summary["dice_mean"]
    assert bundle_summary["checkpoints"][0]["path"] == str((bundle / "models" / "model.pt").resolve())
