"""Atomic file writes: write to a temp file in the same folder, then rename.

A crash mid-write leaves the previous file (or none), never a half-written one; the
temp file it leaves (``.<name>.<random>.tmp``) is removed by :func:`sweep_temp_files`
when the next stage takes the folder's lock. A full disk (``ENOSPC``/``EDQUOT``)
becomes :class:`DiskFullError`, one line naming the file, with the temp file removed
and the previous file (if any) intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterator

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")


class DiskFullError(OSError):
    """A write failed because the disk (or quota) is full; nothing partial was left."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno, f"no space left on the device writing {path}; nothing was written there "
                                      "(free some space and run the same command again)")  # fmt: skip
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror or ""  # always set: __init__ passes (errno, message)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit fsync and rename it over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise DiskFullError(path, exc) from exc
        raise
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs should read like any other file
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, DiskFullError) and exc.errno in DISK_FULL:
            raise DiskFullError(path, exc) from exc
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_csv(path: str | Path, frame) -> None:
    """Write a pandas DataFrame as CSV (no index, ``\\n`` line ends) atomically."""
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def atomic_write_json(path: str | Path, obj) -> None:
    import json

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sweep_temp_files(folder: str | Path) -> int:
    """Remove the temp files interrupted atomic writes left under ``folder``; returns how many.

    Only call this while holding the folder's lock (:mod:`mri_seg.utils.lock`): a temp
    file of a live writer must not be removed.
    """
    removed = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            if _TEMP_NAME.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
    return removed
