"""Provenance: which code and environment produced a run directory."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from mri_seg import __version__


def git_commit(start: Path | None = None) -> str | None:
    """The git commit of the source tree the package was imported from, if it is a checkout."""
    here = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if not commit:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def _package_version(name: str) -> str | None:
    # importlib.metadata, not `import torch`: stages that never touch torch stay fast to start
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo, else platform): speeds differ by machine, not only by core count."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (the first ``flags`` line of /proc/cpuinfo); empty where it cannot be read."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return set()
    for line in lines:
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU has native bfloat16 instructions (AVX512-BF16 or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_amx_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU has AMX bfloat16 tiles: the one CPU where bf16 training measured faster than float32
    (1.17x per fold); with AVX512-BF16 alone a compiled step ran 1.6x slower (docs/accuracy.md, 25th session)."""
    flags = cpu_flags() if flags is None else flags
    return "amx_bf16" in flags


def provenance() -> dict[str, str | int | bool | None]:
    flags = cpu_flags()  # read once for both bf16 entries
    return {
        "mri_seg_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": _package_version("torch"),
        "monai": _package_version("monai"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_bf16": cpu_has_bf16(flags),
        "cpu_amx": cpu_has_amx_bf16(flags),
    }
