"""Failures the stand-ins inject into upcoming requests: the next few, or a seeded random share of them.

Each stand-in adds what its real service does on top (Stripe: faults on
chosen paths; Segment: slow responses, ``Retry-After``, rejected batches).
"""

from __future__ import annotations

import collections
import random
import threading


class PlannedFaults:
    """``fail_next`` failures (in the order planned), then a random failure rate. Thread-safe.

    Subclasses set ``default_status`` and answer ``check`` under ``_lock`` with :meth:`_take`.
    """

    default_status = 503

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: collections.deque[tuple[int, int | None]] = collections.deque()  # (status, retry_after)
        self._p = 0.0
        self._p_status = self.default_status
        self._rng = random.Random(1)
        self.injected = 0  # how many responses were injected faults

    def fail_next(self, count: int, status: int | None = None) -> None:
        """The next ``count`` requests fail with ``status`` (default: ``default_status``)."""
        self._plan_next(count, status, None)

    def _plan_next(self, count: int, status: int | None, retry_after: int | None) -> None:
        with self._lock:
            self._next.extend([(self.default_status if status is None else status, retry_after)] * count)

    def fail_probability(self, p: float, status: int | None = None, seed: int = 1) -> None:
        """Each request fails with probability ``p`` (seeded, so runs repeat); ``p=0`` clears."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be within 0..1")
        with self._lock:
            self._p = p
            self._p_status = self.default_status if status is None else status
            self._rng = random.Random(seed)

    @property
    def pending(self) -> int:
        """How many ``fail_next`` failures are still to come."""
        with self._lock:
            return len(self._next)

    def clear(self) -> None:
        """Remove every planned fault."""
        with self._lock:
            self._next.clear()
            self._p = 0.0

    def _take(self) -> tuple[int, int | None] | None:
        """Consume the planned or random failure for this request, if any (call with ``_lock`` held)."""
        if self._next:
            self.injected += 1
            return self._next.popleft()
        if self._p > 0 and self._rng.random() < self._p:
            self.injected += 1
            return (self._p_status, None)
        return None


class HTTPFaults(PlannedFaults):
    """:class:`PlannedFaults` with ``Retry-After`` headers and slow responses (``delay``, server side)."""

    def __init__(self) -> None:
        super().__init__()
        self._delay = 0.0

    def fail_next(self, count: int, status: int | None = None, retry_after: int | None = None) -> None:
        """The next ``count`` requests fail with ``status``; a ``Retry-After`` header
        (seconds) is sent when ``retry_after`` is given."""
        self._plan_next(count, status, retry_after)

    def delay(self, seconds: float) -> None:
        """Hold every response for ``seconds`` before answering; 0 clears."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            self._delay = float(seconds)

    def clear(self) -> None:
        """Remove every planned fault and the delay."""
        super().clear()
        with self._lock:
            self._delay = 0.0

    def current_delay(self) -> float:
        with self._lock:
            return self._delay

    def check(self) -> tuple[int, int | None] | None:
        """Consume and return ``(status, retry_after)`` for this request, if it must fail."""
        with self._lock:
            return self._take()
