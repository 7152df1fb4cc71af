"""Shared command-line plumbing for the stage entry points."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from mri_seg.config import Config, ConfigError, load_config


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


class StageError(Exception):
    """An expected failure a stage reports as one line (no traceback), exit code 2."""


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a stage's ``main``; turn expected errors into one clear line on stderr."""
    try:
        code = main(argv)
    except (StageError, ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
