"""Shared command-line plumbing for the stage entry points."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from mri_seg.config import Config, ConfigError, load_config
from mri_seg.errors import StageError
from mri_seg.utils.atomic import DISK_FULL
from mri_seg.utils.lock import folder_lock


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML recipe (default: built-in defaults)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one config value, e.g. --set train.epochs=3 (repeatable)",
    )


def config_from_args(args: argparse.Namespace, extra: list[str] | None = None) -> Config:
    """Load the config file and apply ``--set`` overrides, then ``extra`` overrides from flags."""
    return load_config(args.config, list(args.overrides) + list(extra or []))




@contextlib.contextmanager
def stage_lock(folder: Path, stage: str, argv: list[str] | None) -> Iterator[None]:
    """Hold ``folder``'s lock (:mod:`mri_seg.utils.lock`) while a stage writes into it.

    Under torchrun only rank 0 takes it: the other ranks are the same command.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    args = sys.argv[1:] if argv is None else argv
    with folder_lock(folder, " ".join([f"mri_seg {stage}", *map(str, args)])):
        yield


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (multi-line library messages are joined)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a stage's ``main``; turn expected errors into one clear line on stderr (exit 2)."""
    try:
        code = main(argv)
    except (StageError, ConfigError, FileNotFoundError) as exc:  # PathError, LockError are StageErrors
        print(f"error: {one_line(exc)}", file=sys.stderr)
        code = 2
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        where = f" writing {exc.filename}" if exc.filename and str(exc.filename) not in str(exc) else ""
        print(f"error: {one_line(exc)}{where}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
