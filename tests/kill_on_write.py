"""Run a stage module and SIGKILL it at a chosen file write (used by tests/reliability/test_kills.py).

    python tests/kill_on_write.py NAME_REGEX N -m mri_seg.pipelines.STAGE ARGS...

The process kills itself (SIGKILL: no cleanup, no finally blocks) just before the N-th
``os.replace`` onto a file whose name matches NAME_REGEX, i.e. in the middle of an
atomic write: the temp file is complete, the rename has not happened.
"""

from __future__ import annotations

import os
import re
import runpy
import signal
import sys

pattern, nth = re.compile(sys.argv[1]), int(sys.argv[2])
if sys.argv[3] != "-m":
    raise SystemExit("usage: kill_on_write.py NAME_REGEX N -m MODULE ARGS...")
module, args = sys.argv[4], sys.argv[5:]
seen = 0
_replace = os.replace


def _killing_replace(src, dst, *a, **kw):
    global seen
    if pattern.search(os.path.basename(os.fspath(dst))):
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *a, **kw)


os.replace = _killing_replace
sys.argv = [module, *args]
runpy.run_module(module, run_name="__main__", alter_sys=True)
