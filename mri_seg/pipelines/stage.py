"""A stage's declaration: what it reads, writes and which config it fingerprints, next to its code.

Every module of :mod:`mri_seg.pipelines` that defines ``STAGE = Stage(...)`` is a stage of
the pipeline runner (:mod:`mri_seg.pipelines.run`), named after its module and run by
calling the module's ``main(argv)``. Adding a stage is adding such a module; the runner
has no table of its own::

    STAGE = Stage(
        name="mystage",                       # the module's name
        params=("eval",),                     # config sections/keys its result depends on
        argv=lambda call: ["--run-dir", str(call.run.root)],
        inputs=lambda call: [call.run.manifest],
        outputs=lambda call: [call.run.eval_dir("mystage") / "summary.json"],
    )
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mri_seg.errors import StageError
from mri_seg.rundir import RunDir

PACKAGE = "mri_seg.pipelines"


@dataclass
class StageContext:
    """The run the pipeline runner works on."""

    run_dir: Path
    data_dir: Path | None

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)


@dataclass(frozen=True)
class StageCall:
    """What a declaration's functions see: the run, the data folder and the stage's pipeline-file args."""

    run: RunDir
    data_dir: Path | None
    args: tuple[str, ...] = ()

    def require_data_dir(self, stage: str) -> Path:
        if self.data_dir is None:
            raise StageError(f"the {stage} stage needs --data-dir")
        return self.data_dir


@dataclass(frozen=True)
class Previous:
    """What a stage's :attr:`Stage.mode` decides from: its last record and this run's fingerprint."""

    record: dict[str, Any] | None
    fingerprint: str
    forced: bool


def _none(call: StageCall) -> list[Any]:
    return []


# (extra argv placed after the declared argv, whether the last run is up to date)
ModeFn = Callable[[StageCall, Previous, Callable[[str], Any]], tuple[list[str], bool]]


@dataclass(frozen=True)
class Stage:
    """One stage's declaration (see the module docstring).

    ``argv``: the arguments the runner passes before the pipeline file's own; ``inputs``:
    paths whose contents the fingerprint hashes (a file's sha256, a folder's listing);
    ``outputs``: paths that must exist for a skip. ``mode`` (optional) decides extra
    flags and whether a run with the same fingerprint is really up to date (train:
    ``--resume`` an unfinished run, else ``--restart``); ``note`` (optional) is a closing
    line for the pipeline's summary.
    """

    name: str
    params: tuple[str, ...] = ()
    argv: Callable[[StageCall], list[str]] = _none
    inputs: Callable[[StageCall], list[Path]] = _none
    outputs: Callable[[StageCall], list[Path]] = _none
    mode: ModeFn | None = None
    note: Callable[[StageCall], str | None] | None = None


def discover(package: str = PACKAGE) -> dict[str, Stage]:
    """``{name: declaration}`` of every module of ``package`` with a ``STAGE`` (modules named ``_*`` skipped)."""
    pkg = importlib.import_module(package)
    stages: dict[str, Stage] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        declared = getattr(module, "STAGE", None)
        if declared is None:
            continue
        if not isinstance(declared, Stage) or declared.name != info.name:
            raise StageError(f"{module.__name__}.STAGE must be a Stage named '{info.name}'")
        stages[info.name] = declared
    return stages
