"""Failures the Stripe stand-in injects, the way a busy Stripe account fails: planned faults and a rate limit."""

from __future__ import annotations

import collections
import random
import threading


def error_body(status: int) -> dict:
    """Stripe's error body for an injected failure of the given HTTP status."""
    if status == 429:
        return {
            "error": {
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
            }
        }
    if status >= 500:
        return {
            "error": {
                "type": "api_error",
                "code": "api_error",
                "message": "Sorry, something went wrong. We've already been notified of the problem.",
            }
        }
    if status == 409:
        return {
            "error": {
                "type": "invalid_request_error",
                "code": "lock_timeout",
                "message": "This object cannot be accessed right now because another API request or Stripe process is currently accessing it.",
            }
        }
    if status == 401:
        return {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
    return {"error": {"type": "invalid_request_error", "code": "injected_fault", "message": f"Injected fault ({status})."}}


class FaultPlan:
    """Failures to inject into upcoming requests, the way a busy Stripe fails.

    Checked per request, in order: path-specific faults, then ``fail_next``,
    then the random failure rate. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: collections.deque[int] = collections.deque()
        self._paths: list[list] = []  # [substring, remaining, status]
        self._p = 0.0
        self._p_status = 429
        self._rng = random.Random(1)
        self.injected = 0  # how many responses were faults

    def fail_next(self, count: int, status: int = 429) -> None:
        """The next ``count`` requests (any path) fail with ``status``."""
        with self._lock:
            self._next.extend([status] * count)

    def fail_probability(self, p: float, status: int = 429, seed: int = 1) -> None:
        """Each request fails with probability ``p`` (seeded, so runs repeat); ``p=0`` clears."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be within 0..1")
        with self._lock:
            self._p = p
            self._p_status = status
            self._rng = random.Random(seed)

    def fail_paths(self, substring: str, count: int, status: int = 429) -> None:
        """The next ``count`` requests whose path contains ``substring`` fail with ``status``."""
        with self._lock:
            self._paths.append([substring, count, status])

    def clear(self) -> None:
        """Remove every planned fault."""
        with self._lock:
            self._next.clear()
            self._paths.clear()
            self._p = 0.0

    def check(self, path: str) -> int | None:
        """Consume and return the status this request must fail with, if any."""
        with self._lock:
            for plan in self._paths:
                if plan[1] > 0 and plan[0] in path:
                    plan[1] -= 1
                    self.injected += 1
                    return plan[2]
            if self._next:
                self.injected += 1
                return self._next.popleft()
            if self._p > 0 and self._rng.random() < self._p:
                self.injected += 1
                return self._p_status
        return None


class SlidingWindowLimit:
    """Stripe's rate limit: at most ``limit`` requests admitted in any sliding one-second window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: collections.deque[float] = collections.deque()

    def admit(self, limit: float, now: float) -> bool:
        """Whether one more request fits in the window at monotonic time ``now`` (it then counts)."""
        with self._lock:
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if len(self._window) >= limit:
                return False
            self._window.append(now)
            return True
