"""OpenCV helpers shared by the dataset scanner and the inference readers."""

from __future__ import annotations

import contextlib
from typing import Iterator

import cv2


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines; callers report one clear error naming the file instead."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)
