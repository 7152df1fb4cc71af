"""What a folder inference reads and writes, checked before anything is written.

Inputs are never written: OUT may not be the input folder; an OUT inside the input
folder is left out of the search; every planned output path is checked against the files
found under the input (and against the other scans' outputs and the run's own files)
before the first scan is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mri_seg.inference.journal import PREDICTIONS
from mri_seg.io.registry import Discovery, OutputPaths, Source, discover, output_paths

RESERVED = (PREDICTIONS, "config_infer.yaml")  # OUT's own files (the caller adds its report's)


class InferError(ValueError):
    """The folder inference cannot start (bad input/output folders); nothing has been written."""


@dataclass
class Plan:
    input_path: Path
    out_dir: Path
    discovery: Discovery
    scans: list[tuple[Source, OutputPaths]]

    @property
    def input_root(self) -> Path:
        """The folder the scans' relative paths start from."""
        return self.input_path if self.input_path.is_dir() else self.input_path.parent


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop
        return path.absolute()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_folder(input_path: str | Path, out_dir: str | Path, reserved: Sequence[str] = ()) -> Plan:
    """Find the scans and their output paths; refuse anything that would write over an input.

    ``reserved``: names of OUT's own files besides :data:`RESERVED` (the report's index page).
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.exists():
        raise FileNotFoundError(f"input not found: {input_path}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InferError(f"output {out_dir} exists and is not a folder")
    inp, out = input_path.resolve(), out_dir.resolve()
    if input_path.is_dir() and out == inp:
        raise InferError(
            f"output folder {out_dir} is the input folder; choose another --output (inputs are never written)"
        )
    exclude = [out] if input_path.is_dir() and _inside(out, inp) else []
    found = discover(input_path, exclude=exclude)
    if not found.sources:
        raise InferError(f"no scans found in {input_path} (supported: .tif .tiff .png .jpg .jpeg .nii .nii.gz, DICOM)")
    scans = [(s, output_paths(s, out_dir)) for s in found.sources]
    _check_outputs(scans, found.input_files, out, out_dir, (*RESERVED, *reserved))
    return Plan(input_path, out_dir, found, scans)


def _check_outputs(
    scans: list[tuple[Source, OutputPaths]], inputs: set[Path], out: Path, out_dir: Path, reserved: tuple[str, ...]
) -> None:
    """No output may be an input file, and no two outputs (a scan's, OUT's own files) the same file."""
    owners: dict[Path, str] = {(out / name).resolve(): "the batch table/config" for name in reserved}
    if set(owners) & inputs:
        raise InferError(f"{out_dir} holds input files named like the batch outputs {reserved}; choose another --output")
    for source, paths in scans:
        for p in paths.all(with_probs=True):
            rp = _resolve(p)
            if rp in inputs:
                raise InferError(
                    f"output {p} for {source.rel} would overwrite the input file {rp}; choose another --output"
                )
            if rp in owners:
                raise InferError(f"output {p} of {source.rel} collides with the output of {owners[rp]}")
            owners[rp] = str(source.rel)
