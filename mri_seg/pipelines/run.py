"""Run a pipeline definition: stages in order, skipping those whose inputs and config are unchanged.

    python -m mri_seg.pipelines.run pipelines/lgg.yaml --data-dir DIR --run-dir RUN [--force STAGE] [--set k=v]

A pipeline file (``pipelines/*.yaml``) lists stages, each with the config recipe it
runs with (paths relative to the pipeline file) and optional extra arguments and
input paths, in which ``{run_dir}`` and ``{data_dir}`` are filled in.

Per-stage fingerprints (DVC's per-stage ``params``): each stage's record,
``RUN/stages/<stage>.json``, holds a fingerprint of only what that stage reads -- its
input files' hashes, its pipeline arguments and the config sections it reads
(``mri_seg.config.STAGE_PARAMS``: ``eval.*`` is evaluate's alone, ``infer.*`` infer's,
data/augment/model/train are train's) -- and its status. A stage is skipped when its
last record is ``ok`` with the same fingerprint and its outputs exist; otherwise it
runs, and so do the later stages whose inputs change (a new checkpoint changes
evaluate's and infer's inputs).

Training is never silently extended or mixed: train runs with ``--resume`` only to
continue the same unfinished run (same fingerprint; killed, failed or stopped by the
time cap), and otherwise with ``--restart`` (the previous run is moved to
``RUN/superseded/``). A failed stage stops the run with its error; the next run starts
from that stage.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mri_seg.config import config_to_dict, load_config, stage_params
from mri_seg.pipelines._cli import StageError, run_main, stage_lock
from mri_seg.recipes import PIPELINES, packaged_pipeline
from mri_seg.utils.atomic import atomic_write_json
from mri_seg.utils.hashing import file_sha256
from mri_seg.utils.paths import require_dir, require_writable_dir
from mri_seg.utils.provenance import provenance

STAGE_MODULES = ("synthesize", "prepare", "split", "train", "cv", "evaluate", "infer")


@dataclass
class StageSpec:
    """One entry of a pipeline file."""

    name: str
    config: Path | None
    args: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # extra input paths to fingerprint ({run_dir} allowed)


@dataclass
class StageContext:
    run_dir: Path
    data_dir: Path | None


def load_pipeline(path: str | Path) -> list[StageSpec]:
    """Parse a pipeline YAML file into stage specs (config paths resolved against the file).

    A bare name that is not a file here (``demo``, ``lgg_cpu``) means the pipeline shipped in
    the package (:mod:`mri_seg.recipes`), so an installed wheel runs them without a clone.
    """
    path = Path(path)
    if not path.is_file():
        packaged = packaged_pipeline(str(path))
        if packaged is None:
            known = ", ".join(sorted(p.stem for p in PIPELINES.glob("*.yaml")))
            raise StageError(f"pipeline file not found: {path} (or a shipped pipeline name: {known})")
        path = packaged
    doc = yaml.safe_load(path.read_text()) or {}
    stages = doc.get("stages")
    if not isinstance(stages, list) or not stages:
        raise StageError(f"{path}: needs a non-empty 'stages' list")
    specs = []
    for i, entry in enumerate(stages):
        if not isinstance(entry, dict) or "name" not in entry:
            raise StageError(f"{path}: stage #{i + 1} needs a 'name'")
        unknown = set(entry) - {"name", "config", "args", "inputs"}
        if unknown:
            raise StageError(f"{path}: stage '{entry['name']}' has unknown keys {sorted(unknown)}")
        if entry["name"] not in STAGE_MODULES:
            raise StageError(f"{path}: unknown stage '{entry['name']}' (known: {', '.join(STAGE_MODULES)})")
        config = (path.parent / entry["config"]).resolve() if entry.get("config") else None
        specs.append(
            StageSpec(entry["name"], config, [str(a) for a in entry.get("args", [])], list(entry.get("inputs", [])))
        )
    return specs


# ----------------------------------------------------------------------------- fingerprints


def tree_digest(root: Path) -> str:
    """Cheap fingerprint of a folder: relative paths, sizes and modification times."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def path_digest(path: Path) -> str:
    if path.is_dir():
        return "tree:" + tree_digest(path)
    if path.is_file():
        return "file:" + file_sha256(path)
    return "missing"


def stage_io(name: str, ctx: StageContext, args: list[str] = ()) -> tuple[list[str], list[Path], list[Path]]:
    """Command-line arguments, input paths and output paths of a stage (``args``: the pipeline file's)."""
    run = ctx.run_dir
    ckpt = run / "checkpoints" / "best.pt"
    if name == "prepare":
        if ctx.data_dir is None:
            raise StageError("the prepare stage needs --data-dir")
        return (
            ["--data-dir", str(ctx.data_dir), "--run-dir", str(run)],
            [ctx.data_dir],
            [run / "manifest.csv", run / "patients.csv"],
        )
    if name == "split":
        return ["--run-dir", str(run)], [run / "manifest.csv", run / "patients.csv"], [run / "splits.csv"]
    if name == "train" and "--all-folds" in args:  # config_train.yaml is written after the last fold
        return ["--run-dir", str(run)], [run / "manifest.csv", run / "splits.csv"], [
            run / "checkpoints", run / "config_train.yaml"]  # fmt: skip
    if name == "train":
        return (  # the runner adds --resume or --restart (see train_mode)
            ["--run-dir", str(run)],
            [run / "manifest.csv", run / "splits.csv"],
            [run / "checkpoints" / "last.pt", ckpt, run / "train_log.csv"],
        )
    if name == "cv":  # the fold folders, not RUN/checkpoints: cv writes its threshold choice there
        folds = sorted(p for p in (run / "checkpoints").glob("fold*") if p.is_dir()) or [run / "checkpoints"]
        return (
            ["--run-dir", str(run)],
            [*folds, run / "manifest.csv", run / "splits.csv", run / "patients.csv"],
            [run / "eval" / "cv" / "summary.json"],
        )
    deliverable = run / "checkpoints"  # the shipped checkpoint, or the fold models' ensemble
    if name == "evaluate":
        return (
            ["--run-dir", str(run), "--checkpoint", str(deliverable)],
            [deliverable, run / "manifest.csv", run / "splits.csv", run / "patients.csv"],
            [],
        )
    if name == "infer":
        return ["--checkpoint", str(deliverable)], [deliverable], []
    if name == "synthesize":
        return [], [], []
    raise StageError(f"unknown stage '{name}'")


def expand(text: str, ctx: StageContext) -> str:
    """Fill ``{run_dir}`` and ``{data_dir}`` placeholders in a pipeline file's args/inputs."""
    return text.format(run_dir=ctx.run_dir, data_dir=ctx.data_dir or "")


def fingerprint(spec: StageSpec, args: list[str], inputs: dict[str, str], params: dict) -> str:
    """Hash of what the stage reads: its pipeline arguments, input digests and config params."""
    payload = json.dumps({"stage": spec.name, "args": args, "inputs": inputs, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def run_training_status(run_dir: Path, args: list[str]) -> dict | None:
    """:func:`mri_seg.training.rundir.training_status` of the run (every fold's with ``--all-folds``)."""
    from mri_seg.data.manifest import fold_ids, read_splits
    from mri_seg.training.rundir import training_status

    folds = fold_ids(read_splits(run_dir), run_dir / "splits.csv") if "--all-folds" in args else None
    return training_status(run_dir, folds)


def unfinished_training_note(specs: list[StageSpec], ctx: StageContext) -> str | None:
    """A closing line when the pipeline's training is unfinished (the time cap stopped it)."""
    for spec in specs:
        if spec.name == "train":
            status = run_training_status(ctx.run_dir, [expand(a, ctx) for a in spec.args])
            if status is not None and not status["finished"]:
                return (f"note: training is UNFINISHED ({status['state']}): the train.max_time_minutes safety cap "
                        "stopped it, and later stages used the model as it was; re-run this command to continue it")
    return None


def train_mode(
    previous: dict | None, fp: str, run_dir: Path, args: list[str], forced: bool, log
) -> tuple[str, bool]:
    """``(flag, up_to_date)`` for the train stage: ``--resume`` only for the same unfinished run,
    else ``--restart``. ``up_to_date``: same fingerprint, recorded ``ok``, and training finished
    (every fold's, with ``--all-folds``)."""
    same = previous is not None and previous.get("fingerprint") == fp
    status = run_training_status(run_dir, args) if same and not forced else None
    if status is None:
        return "--restart", False
    if status["finished"]:  # not recorded ok (e.g. killed while closing): --resume just confirms it
        return ("--restart", True) if previous.get("status") == "ok" else ("--resume", False)
    log(f"[train] the same training is unfinished ({status['state']}): resuming it")
    return "--resume", False


# ----------------------------------------------------------------------------- running


def record_path(run_dir: Path, stage: str) -> Path:
    return run_dir / "stages" / f"{stage}.json"


def read_record(run_dir: Path, stage: str) -> dict | None:
    path = record_path(run_dir, stage)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def run_stage_module(name: str, argv: list[str]) -> int:
    """Call a stage's ``main(argv)`` in this process; its expected errors become StageError."""
    module = importlib.import_module(f"mri_seg.pipelines.{name}")
    code = module.main(argv)
    return int(code or 0)


def run_pipeline(
    specs: list[StageSpec],
    ctx: StageContext,
    overrides: list[str] | None = None,
    force: set[str] | None = None,
    log=print,
) -> dict[str, str]:
    """Run the stages in order; returns {stage: 'skipped' | 'ran'}. Raises StageError on failure."""
    force = force or set()
    overrides = list(overrides or [])
    configs = [load_config(spec.config, overrides) for spec in specs]  # bad values: refused before any stage
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, str] = {}
    for position, spec in enumerate(specs):
        base_argv, input_paths, outputs = stage_io(spec.name, ctx, spec.args)
        config = configs[position]
        args = [expand(a, ctx) for a in spec.args]
        argv = base_argv + (["--config", str(spec.config)] if spec.config else [])
        argv += [a for o in overrides for a in ("--set", o)] + args
        input_paths = list(input_paths) + [Path(expand(p, ctx)) for p in spec.inputs]
        inputs = {str(p): path_digest(p) for p in input_paths}
        params = stage_params(config, spec.name)
        fp = fingerprint(spec, args, inputs, params)
        previous = read_record(ctx.run_dir, spec.name)
        unchanged = (
            previous is not None
            and previous.get("status") == "ok"
            and previous.get("fingerprint") == fp
            and all(p.exists() for p in outputs)
        )
        if spec.name == "train":
            flag, up_to_date = train_mode(previous, fp, ctx.run_dir, args, spec.name in force, log)
            unchanged = unchanged and up_to_date
            argv.insert(len(base_argv), flag)
        if unchanged and spec.name not in force:
            log(f"[{spec.name}] unchanged, skipped")
            outcome[spec.name] = "skipped"
            continue
        log(f"[{spec.name}] running: python -m mri_seg.pipelines.{spec.name} {' '.join(argv)}")
        record = {
            "stage": spec.name,
            "argv": argv,
            "inputs": inputs,
            "params": params,
            "config": config_to_dict(config),
            "fingerprint": fp,
            "provenance": provenance(),
            "status": "running",
        }
        atomic_write_json(record_path(ctx.run_dir, spec.name), record)
        start = time.time()
        try:
            code = run_stage_module(spec.name, argv)
            error = None if code == 0 else f"exited with code {code}"
        except SystemExit as exc:  # a stage that calls sys.exit itself
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
            error = None if code == 0 else f"exited with code {exc.code}"
        except Exception as exc:  # noqa: BLE001 - recorded, then re-raised as a one-line error
            error = f"{type(exc).__name__}: {exc}"
        record["seconds"] = round(time.time() - start, 2)
        record["status"] = "ok" if error is None else "failed"
        if error is not None:
            record["error"] = error
        atomic_write_json(record_path(ctx.run_dir, spec.name), record)
        if error is not None:
            raise StageError(f"stage '{spec.name}' failed: {error} (re-run the same command to resume from it)")
        outcome[spec.name] = "ran"
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mri_seg.pipelines.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "pipeline", type=Path, help="pipeline definition, e.g. pipelines/lgg.yaml, or a shipped one by name: lgg_cpu"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (for the prepare stage)")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--force", action="append", default=[], metavar="STAGE", help="re-run STAGE even if unchanged")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = parser.parse_args(argv)
    specs = load_pipeline(args.pipeline)
    unknown = set(args.force) - {s.name for s in specs}
    if unknown:
        raise StageError(f"--force names stages not in {args.pipeline}: {sorted(unknown)}")
    data_dir = require_dir(args.data_dir, "data folder").resolve() if args.data_dir else None
    require_writable_dir(args.run_dir, "run directory")
    with stage_lock(args.run_dir, "run", argv):
        ctx = StageContext(args.run_dir.resolve(), data_dir)
        outcome = run_pipeline(specs, ctx, args.overrides, set(args.force))
    ran = [s for s, o in outcome.items() if o == "ran"]
    print(f"pipeline {args.pipeline.name}: {len(ran)} stage(s) ran, {len(outcome) - len(ran)} skipped -> {args.run_dir}")
    note = unfinished_training_note(specs, StageContext(args.run_dir.resolve(), data_dir))
    if note:
        print(note)
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
