"""Real processes started together, for the tests that race steps against each other."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence


def run_together(target: Callable, args: Sequence[tuple], timeout: float = 180) -> list:
    """Start one spawned process per ``args`` entry, released at once by a barrier; their outcomes.

    ``target(*a, barrier, results)`` must wait on ``barrier`` and put one outcome (``"ok"`` or the
    error text) on ``results``.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(args))
    results = context.Queue()
    processes = [context.Process(target=target, args=(*a, barrier, results)) for a in args]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=timeout) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return outcomes
