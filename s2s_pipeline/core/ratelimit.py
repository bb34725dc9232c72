"""Client-side request pacing, so concurrent window fetches stay under Stripe's rate limit."""

from __future__ import annotations

import threading
import time
from typing import Callable


class RequestPacer:
    """Hands out evenly spaced request slots: at most ``rate`` requests per second.

    Shared by every thread of one extraction, so fetching windows concurrently
    never exceeds the limit. A small ``burst`` lets idle time be spent at once
    (the first requests after a pause go out without waiting).
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"request rate must be positive, got {rate}")
        self.rate = float(rate)
        self._interval = 1.0 / self.rate
        self._burst = max(1, int(burst))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = clock()

    def acquire(self) -> None:
        """Block until this caller may send one request."""
        with self._lock:
            now = self._clock()
            # Unused capacity from an idle period is kept only up to `burst` slots.
            earliest = now - (self._burst - 1) * self._interval
            slot = max(self._next_slot, earliest)
            self._next_slot = slot + self._interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
