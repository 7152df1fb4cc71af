"""Run a pipeline definition: stages in order, skipping those whose inputs and config are unchanged.

    python -m mri_seg.pipelines.run pipelines/lgg.yaml --data-dir DIR --run-dir RUN [--force STAGE] [--set k=v]

A pipeline file (``pipelines/*.yaml``) lists stages, each with the config recipe it
runs with (paths relative to the pipeline file) and optional extra arguments and
input paths, in which ``{run_dir}`` and ``{data_dir}`` are filled in.

The stages are the modules of :mod:`mri_seg.pipelines` that declare ``STAGE``
(:mod:`mri_seg.pipelines.stage`): what each reads, writes and which config sections it
fingerprints lives next to its code, not here.

Per-stage fingerprints (DVC's per-stage ``params``): each stage's record,
``RUN/stages/<stage>.json``, holds a fingerprint of only what that stage reads -- its
input files' hashes, its pipeline arguments and the config sections it declares
(``eval.*`` is evaluate's and cv's, ``infer.*`` infer's, data/augment/model/train are
train's) -- and its status. A stage is skipped when its
last record is ``ok`` with the same fingerprint and its outputs exist; otherwise it
runs, and so do the later stages whose inputs change (a new checkpoint changes
evaluate's and infer's inputs).

A stage's declaration may decide more itself (``Stage.mode``): train runs with
``--resume`` only to continue the same unfinished run and otherwise with ``--restart``
(see :mod:`mri_seg.pipelines.train`). A failed stage stops the run with its error; the
next run starts from that stage.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mri_seg.config import config_to_dict, load_config
from mri_seg.params import config_params
from mri_seg.pipelines._cli import StageError, run_main, stage_lock
from mri_seg.pipelines.stage import Previous, StageCall, StageContext, discover
from mri_seg.recipes import PIPELINES, packaged_pipeline
from mri_seg.rundir import RunDir
from mri_seg.utils.atomic import atomic_write_json
from mri_seg.utils.hashing import file_sha256
from mri_seg.utils.paths import require_dir, require_writable_dir
from mri_seg.utils.provenance import provenance


@dataclass
class StageSpec:
    """One entry of a pipeline file."""

    name: str
    config: Path | None
    args: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # extra input paths to fingerprint ({run_dir} allowed)


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
    declared = list(discover())
    specs = []
    for i, entry in enumerate(stages):
        if not isinstance(entry, dict) or "name" not in entry:
            raise StageError(f"{path}: stage #{i + 1} needs a 'name'")
        unknown = set(entry) - {"name", "config", "args", "inputs"}
        if unknown:
            raise StageError(f"{path}: stage '{entry['name']}' has unknown keys {sorted(unknown)}")
        if entry["name"] not in declared:
            raise StageError(f"{path}: unknown stage '{entry['name']}' (known: {', '.join(declared)})")
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


def stage_call(spec: StageSpec, ctx: StageContext) -> StageCall:
    """What the stage's declaration sees: the run, the data folder and its expanded pipeline args."""
    return StageCall(RunDir(ctx.run_dir), ctx.data_dir, tuple(expand(a, ctx) for a in spec.args))


def expand(text: str, ctx: StageContext) -> str:
    """Fill ``{run_dir}`` and ``{data_dir}`` placeholders in a pipeline file's args/inputs."""
    return text.format(run_dir=ctx.run_dir, data_dir=ctx.data_dir or "")


def fingerprint(spec: StageSpec, args: list[str], inputs: dict[str, str], params: dict) -> str:
    """Hash of what the stage reads: its pipeline arguments, input digests and config params."""
    payload = json.dumps({"stage": spec.name, "args": args, "inputs": inputs, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def closing_notes(specs: list[StageSpec], ctx: StageContext) -> list[str]:
    """The stages' closing lines (e.g. training left unfinished by the time cap)."""
    declared = discover()
    notes = []
    for spec in specs:
        note = declared[spec.name].note
        text = note(stage_call(spec, ctx)) if note is not None else None
        if text:
            notes.append(text)
    return notes


# ----------------------------------------------------------------------------- running


def read_record(run_dir: Path, stage: str) -> dict | None:
    path = RunDir(run_dir).stage_record(stage)
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
    declared = discover()
    record_of = RunDir(ctx.run_dir).stage_record
    outcome: dict[str, str] = {}
    for position, spec in enumerate(specs):
        stage, call = declared[spec.name], stage_call(spec, ctx)
        config = configs[position]
        args = list(call.args)
        base_argv = stage.argv(call)
        input_paths = stage.inputs(call) + [Path(expand(p, ctx)) for p in spec.inputs]
        inputs = {str(p): path_digest(p) for p in input_paths}
        params = config_params(config, stage.params)
        fp = fingerprint(spec, args, inputs, params)
        previous = read_record(ctx.run_dir, spec.name)
        unchanged = (
            previous is not None
            and previous.get("status") == "ok"
            and previous.get("fingerprint") == fp
            and all(p.exists() for p in stage.outputs(call))
        )
        flags: list[str] = []
        if stage.mode is not None:
            flags, up_to_date = stage.mode(call, Previous(previous, fp, spec.name in force), log)
            unchanged = unchanged and up_to_date
        argv = base_argv + flags + (["--config", str(spec.config)] if spec.config else [])
        argv += [a for o in overrides for a in ("--set", o)] + args
        if unchanged and spec.name not in force:
            log(f"[{spec.name}] unchanged, skipped")
            outcome[spec.name] = "skipped"
            continue
        log(f"[{spec.name}] running: python -m mri_seg.pipelines.{spec.name} {' '.join(argv)}")
        record: dict[str, Any] = {
            "stage": spec.name,
            "argv": argv,
            "inputs": inputs,
            "params": params,
            "config": config_to_dict(config),
            "fingerprint": fp,
            "provenance": provenance(),
            "status": "running",
        }
        atomic_write_json(record_of(spec.name), record)
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
        atomic_write_json(record_of(spec.name), record)
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
    for note in closing_notes(specs, StageContext(args.run_dir.resolve(), data_dir)):
        print(note)
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
