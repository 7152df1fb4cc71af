"""One writer per folder: a lock file in the run directory / output folder a stage writes.

``RUN/.mri_seg.lock`` holds the holder's pid, host, command and start time, and is
locked with ``flock`` while the stage runs. A second command on the same folder finds
the lock held and refuses with one line naming the holder (:class:`LockError`, exit 2)
instead of interleaving its outputs with the first one's. The kernel releases a
``flock`` when its process dies (even by SIGKILL), so a lock file left by a dead
process is taken over with a note naming it; no pid guessing is involved.

Locks are re-entrant within one process (the pipeline runner calls the stages in its
own process, holding the run directory's lock). After taking a lock, temporary files
that an interrupted atomic write left in the folder are removed (nobody else can be
writing there now).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from mri_seg.errors import LockError
from mri_seg.utils.atomic import sweep_temp_files

LOCK_NAME = ".mri_seg.lock"
_held: dict[Path, int] = {}  # folders this process holds -> nesting depth




def _describe(info: dict) -> str:
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {info.get('pid', '?')}{where} (`{info.get('command', '?')}`, started {info.get('started', '?')})"


def _read_info(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        info = json.loads(raw.decode("utf-8"))
        return info if isinstance(info, dict) else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}


def _open_locked(path: Path) -> tuple[int, dict]:
    """Open and ``flock`` the lock file; returns the fd and what a previous holder wrote there."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            info = _read_info(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockError(
                    f"{path.parent} is in use by {_describe(info)}; wait for it to finish or use another folder "
                    f"(lock file {path})"
                ) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file the previous holder unlinked while we waited
            return fd, _read_info(fd)
        os.close(fd)


def default_command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str | None = None, note=None) -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder) for the duration of the block.

    ``note``: where the stale-lock message goes (default: stderr).
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield folder / LOCK_NAME
        finally:
            _held[key] -= 1
        return
    path = folder / LOCK_NAME
    fd, previous = _open_locked(path)
    try:
        if previous and previous.get("pid") != os.getpid():
            message = f"note: took over the lock of {_describe(previous)}, which is no longer running"
            (note or (lambda m: print(m, file=sys.stderr)))(message)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command or default_command(),
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        sweep_temp_files(folder)
        _held[key] = 1
        try:
            yield path
        finally:
            del _held[key]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a clean exit leaves no lock file behind
    finally:
        os.close(fd)
    if created:  # a stage that failed before writing anything leaves no empty folder behind
        with contextlib.suppress(OSError):
            folder.rmdir()


def holder(folder: str | Path) -> dict | None:
    """Who holds ``folder``'s lock now (pid, host, command, started), or None when it is free."""
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_info(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
