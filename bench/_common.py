"""What every benchmark shares: import paths, peak memory and a description of the machine.

Importing this module first lets ``python bench/<name>.py`` run from any
directory with any interpreter that has the dependencies: it puts the
repository (the product) and ``devtools/`` (stand-ins, harnesses) on the path.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "devtools")]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (for "before the step" figures)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_model() -> str | None:
    """The processor's name as Linux reports it (None elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
    except OSError:
        return None


def cpu_probe_seconds(rounds: int = 3) -> float:
    """Seconds one core takes for a fixed piece of the work a night does in Python (JSON in and out,
    dicts, hashing), best of ``rounds``: hosts of the same kind differ (one session's machine ran the
    same night 1.5 times slower than another's), and this puts figures from two hosts side by side."""
    import hashlib
    import json
    import time

    row = {"id": "cus_0000000001", "email": "someone@example.com", "mrr": 12345, "plan": "pro",
           "tags": ["a", "b", "c"], "nested": {"currency": "usd", "amount": 4200, "ok": True}}
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(5_000):
            text = json.dumps({**row, "n": i}, sort_keys=True)
            hashlib.sha256(json.loads(text)["id"].encode() + text.encode()).hexdigest()
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def machine() -> dict:
    """Where a figure was measured: cores, the processor, how fast one core is (``cpu_probe_seconds``)
    and the versions that move the numbers."""
    import numpy as np
    import pandas as pd

    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "cpu_probe_seconds": cpu_probe_seconds(),
            "python": platform.python_version(), "pandas": pd.__version__, "numpy": np.__version__}
