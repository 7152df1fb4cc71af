"""Where CI promises a resource, its absence fails the test instead of skipping it.

Locally a missing lgg-dev archive, Playwright or Chromium is a skip with its reason; in CI
(``.ci/run`` sets the switches) the same reason fails the test, so a skip can never pass green:

* ``MRI_SEG_REQUIRE_REALDATA=1``: the lgg-dev archive must be there (the ``lgg_dev_dir`` fixture).
* ``MRI_SEG_REQUIRE_BROWSER=1``: Playwright and a Chromium must be there (tests/e2e/test_browser.py).
* ``MRI_SEG_REQUIRE_ONNX=1``: onnx and onnxruntime must be installed (the ``test`` extra has them;
  the export and onnxruntime-backend tests).

Only absence is governed here: a browser that is present but fails to start, or a page that
misbehaves, always fails.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_REALDATA = "MRI_SEG_REQUIRE_REALDATA"
REQUIRE_BROWSER = "MRI_SEG_REQUIRE_BROWSER"
REQUIRE_ONNX = "MRI_SEG_REQUIRE_ONNX"


def required(switch: str) -> bool:
    """Whether the environment switch ``switch`` is on (1/true/yes)."""
    return os.environ.get(switch, "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str, switch: str) -> NoReturn:
    """Skip with ``reason``; fail with the same reason where ``switch`` is on."""
    if required(switch):
        pytest.fail(f"{reason} ({switch} is set: required here, not skipped)", pytrace=False)
    pytest.skip(reason)
