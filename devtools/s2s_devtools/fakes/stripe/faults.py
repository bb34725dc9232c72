"""Failures the Stripe stand-in injects, the way a busy Stripe account fails: planned faults and a rate limit."""

from __future__ import annotations

import collections
import threading

from s2s_devtools.fakes.faults import PlannedFaults


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


class FaultPlan(PlannedFaults):
    """Failures to inject into upcoming requests, the way a busy Stripe fails (429 unless told otherwise).

    Checked per request, in order: path-specific faults, then ``fail_next``,
    then the random failure rate. Thread-safe.
    """

    default_status = 429

    def __init__(self) -> None:
        super().__init__()
        self._paths: list[list] = []  # [substring, remaining, status]

    def fail_paths(self, substring: str, count: int, status: int = 429) -> None:
        """The next ``count`` requests whose path contains ``substring`` fail with ``status``."""
        with self._lock:
            self._paths.append([substring, count, status])

    def clear(self) -> None:
        """Remove every planned fault."""
        super().clear()
        with self._lock:
            self._paths.clear()

    def check(self, path: str) -> int | None:
        """Consume and return the status this request must fail with, if any."""
        with self._lock:
            for plan in self._paths:
                if plan[1] > 0 and plan[0] in path:
                    plan[1] -= 1
                    self.injected += 1
                    return plan[2]
            taken = self._take()
        return None if taken is None else taken[0]


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
