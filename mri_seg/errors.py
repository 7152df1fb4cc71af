"""Expected failures a stage reports as one line (no traceback) with exit code 2.

:class:`StageError` is the base the entry points catch (``mri_seg.pipelines._cli.run_main``);
the utilities raise its subclasses without depending on the pipelines.
"""

from __future__ import annotations


class StageError(Exception):
    """An expected failure a stage reports as one line (no traceback), exit code 2."""


class PathError(StageError, ValueError):
    """A path given on the command line cannot be used (missing, wrong kind, not writable)."""


class LockError(StageError, RuntimeError):
    """Another live process holds the folder's lock."""
