"""Named places where a crash test may SIGKILL the process; nothing happens unless a test asks.

The kill-point test (``s2s_pipeline_tests/ops/test_kill_points.py``) proves that a run killed at
any of these points loses nothing and, rerun, sends nothing under a new messageId. To kill a
child process exactly there it sets ``S2S_TEST_KILL_AT=<point>`` (or ``<point>@<n>``: at the
n-th pass through that point, counted per process). Without that variable, or naming another
point, ``kill_point`` returns at once: production never sets it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

#: The environment variable naming the point (and pass) to die at.
KILL_AT_ENV = "S2S_TEST_KILL_AT"

_passes: Counter[str] = Counter()
_lock = threading.Lock()


def kill_point(name: str) -> None:
    """SIGKILL this process here if ``S2S_TEST_KILL_AT`` names this point (and pass); else nothing."""
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    with _lock:
        _passes[name] += 1
        due = _passes[name] >= int(nth or 1)
    if due:
        # SIGKILL, not an exception: no finally, atexit or open transaction gets to run,
        # as when the kernel's OOM killer or a node loss ends a run.
        os.kill(os.getpid(), signal.SIGKILL)
