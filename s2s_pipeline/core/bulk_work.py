"""Fewer full garbage collections while a step builds many objects it keeps (``bulk_work``).

CPython's cyclic collector walks every tracked object it holds in a *full* collection, and runs one
each time the objects that survived its younger collections have grown by a quarter. A step that
builds its working set of Python objects (a night's 10,000 Stripe events and their mirror rows, the
diff's messages and pushed-state rows) keeps growing that set, so it pays full collections over and
over: at 1M customers with 1% changed, 7 to 9 of them took 1.5-1.9 s of a 12-16 s night, more than any
single statement (docs/performance.md, "2026-12-04 evening"). Almost none of it is garbage: the
collections found a few hundred objects each.

Inside ``bulk_work()`` the first generation is collected every 50,000 net allocations instead of 700
and the older generations far less often, so short-lived cyclic garbage is still collected while a
step runs and full collections wait until it has finished. Not disabled: a step that makes cyclic
garbage keeps a bounded amount of it. The thresholds are process-wide: the first block entered sets
them and the last one left restores what they were (blocks may nest and may run on several threads).
"""

from __future__ import annotations

import functools
import gc
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

#: ``gc.set_threshold`` inside a bulk block: 50,000 allocations before a young collection, 20 of those
#: before a middle one, 100 of those before a full one is considered (CPython's defaults: 700, 10, 10).
BULK_THRESHOLDS = (50_000, 20, 100)

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None

F = TypeVar("F", bound=Callable)


@contextmanager
def bulk_work_block() -> Iterator[None]:
    """The collector's ``BULK_THRESHOLDS`` while the block runs (see the module docstring)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            # Never lower a threshold the process set higher itself.
            gc.set_threshold(*(max(bulk, mine) for bulk, mine in zip(BULK_THRESHOLDS, _saved)))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None


def bulk_work(func: F) -> F:
    """``func`` run inside ``bulk_work_block()``: for the entry points of the steps that build their
    working set in memory (the change feed, a trait shard, the Segment passes)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with bulk_work_block():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
