"""Up-front checks of the paths a stage was given: one clear line before any work.

Each check raises :class:`PathError` naming the role of the path (``run directory``,
``--output``...), the path and the problem; the stage entry points turn it into
``error: ...`` and exit code 2. Writability is tested by creating (and removing) a
temporary file, which is what the stage will do next: permission bits alone do not
tell (read-only mounts, root, ACLs).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from mri_seg.errors import PathError

__all__ = ["PathError", "require_dir", "require_file", "require_input", "require_writable_dir"]


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _stat(path: Path, what: str) -> os.stat_result | None:
    """``stat`` following links; None when nothing is there. A link loop or unreadable parent is an error."""
    try:
        return path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise PathError(f"{what} {path} is a broken symbolic link (its target does not exist)") from None
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        raise PathError(f"{what} {path} cannot be used ({_reason(exc)})") from None


def _existing(path: Path, what: str) -> os.stat_result:
    """``stat`` of a path that must exist (:class:`PathError` "not found" otherwise)."""
    st = _stat(path, what)
    if st is None:
        raise PathError(f"{what} not found: {path}")
    return st


def _require_readable(path: Path, what: str, probe: Callable[[Path], object]) -> None:
    """``probe(path)`` (list a folder, read a byte of a file); an OSError becomes "cannot be read"."""
    try:
        probe(path)
    except OSError as exc:
        raise PathError(f"{what} {path} cannot be read ({_reason(exc)})") from None


def _first_entry(folder: Path) -> object:
    with os.scandir(folder) as entries:
        return next(entries, None)


def _first_byte(file: Path) -> bytes:
    with open(file, "rb") as fh:
        return fh.read(1)


def require_dir(path: str | Path, what: str) -> Path:
    """An existing, readable folder."""
    path = Path(path)
    if not stat.S_ISDIR(_existing(path, what).st_mode):
        raise PathError(f"{what} {path} is not a folder")
    _require_readable(path, what, _first_entry)
    return path


def require_file(path: str | Path, what: str) -> Path:
    """An existing, readable regular file."""
    path = Path(path)
    mode = _existing(path, what).st_mode
    if stat.S_ISDIR(mode):
        raise PathError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise PathError(f"{what} {path} is not a regular file")
    _require_readable(path, what, _first_byte)
    return path


def require_input(path: str | Path, what: str) -> Path:
    """An existing readable file or folder (e.g. ``infer --input``)."""
    path = Path(path)
    is_dir = stat.S_ISDIR(_existing(path, what).st_mode)
    return require_dir(path, what) if is_dir else require_file(path, what)


def _probe_write(folder: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".mri_seg-write-test.", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def require_writable_dir(path: str | Path, what: str) -> Path:
    """A folder the stage can write into: an existing writable folder, or one it can create.

    Nothing is created here: for a missing folder, its nearest existing parent must be a
    writable folder.
    """
    path = Path(path)
    st = _stat(path, what)
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise PathError(f"{what} {path} exists and is not a folder")
        try:
            _probe_write(path)
        except OSError as exc:
            raise PathError(f"{what} {path} is not writable ({_reason(exc)})") from None
        return path
    parent = path.absolute().parent
    while _stat(parent, what) is None:
        parent = parent.parent
    if not parent.is_dir():
        raise PathError(f"cannot create {what} {path}: {parent} is not a folder")
    try:
        _probe_write(parent)
    except OSError as exc:
        raise PathError(f"cannot create {what} {path}: {parent} is not writable ({_reason(exc)})") from None
    return path
