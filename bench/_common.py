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


def machine() -> dict:
    """Where a figure was measured: cores and the versions that move the numbers."""
    import numpy as np
    import pandas as pd

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "pandas": pd.__version__,
            "numpy": np.__version__}
