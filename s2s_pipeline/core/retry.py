"""One retry policy for calls to rate-limited HTTP APIs (Stripe, Segment Profiles).

A call is tried, and tried again while the policy's ``should_retry`` says the
outcome (an answer or an error) is worth another go, at most ``max_retries``
times. Between tries it waits what the server asked for (``wait_hint``, e.g.
``Retry-After``) or else an exponential backoff with jitter, so clients that
hit a limit together spread out instead of retrying in lockstep.

Built on tenacity (the loop, stop and wait plumbing); this module only fixes
the shape our clients share. Everything that takes time is injected (``sleep``,
the jitter source, the clock for HTTP-date ``Retry-After``), so tests never wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, TypeVar

import tenacity

T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """How one try of a call ended: with a ``result`` or with an ``error``.

    ``number`` counts tries from 1, so after a failed ``number`` the next try
    is retry ``number`` (of ``max_retries``).
    """

    number: int
    result: Any = None
    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def _never(_: Attempt) -> float | None:
    return None


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a call again and how long to wait first.

    - ``max_retries``: tries after the first; 0 means a single try.
    - ``should_retry``: the retry decision, on the answer or the error of a try
      (e.g. "a 429 or a 5xx"); anything else is returned or raised as is.
    - ``backoff``: seconds to wait before retry ``n`` (0 = first retry) when the
      server gave no hint; see ``full_jitter`` and ``equal_jitter``.
    - ``wait_hint``: seconds the server asked for (e.g. ``Retry-After``), or None.
    - ``before_attempt``: run before every try, retries included; request pacing
      goes here so a retry takes a rate-limit slot like any other request.
    - ``sleep``: how to wait (injected by tests).
    """

    max_retries: int
    should_retry: Callable[[Attempt], bool]
    backoff: Callable[[int], float]
    wait_hint: Callable[[Attempt], float | None] = _never
    before_attempt: Callable[[], None] = _nothing
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {self.max_retries}")

    @property
    def max_attempts(self) -> int:
        """Tries in all when every one asks for a retry."""
        return self.max_retries + 1

    def call(self, fn: Callable[[], T], *, on_retry: Callable[[Attempt, float], None] | None = None) -> T:
        """``fn()``, retried as the policy says.

        ``on_retry(attempt, wait)`` is told about each try that will be
        retried, before the wait (for a log line). When retries run out the
        last try's outcome stands: its answer is returned (the caller can tell
        from it that it gave up) or its error re-raised unchanged.
        """

        def wait(state: tenacity.RetryCallState) -> float:
            # tenacity asks for the wait before it checks the stop condition;
            # skip the backoff after the last try so no jitter is drawn for a
            # retry that will not happen.
            if state.attempt_number > self.max_retries:
                return 0.0
            hint = self.wait_hint(_attempt(state))
            return hint if hint is not None else self.backoff(state.attempt_number - 1)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None:
                on_retry(_attempt(state), state.upcoming_sleep)

        retrying = tenacity.Retrying(
            retry=_RetryIf(self.should_retry),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait,
            before=lambda _state: self.before_attempt(),
            before_sleep=before_sleep,
            sleep=lambda seconds: self.sleep(float(seconds)),
            # Out of retries: the last outcome itself, not tenacity's RetryError.
            retry_error_callback=lambda state: state.outcome.result(),
        )
        return retrying(fn)


class _RetryIf(tenacity.retry_base):
    """tenacity's retry condition from our predicate on an ``Attempt``."""

    def __init__(self, predicate: Callable[[Attempt], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return bool(self._predicate(_attempt(retry_state)))


def _attempt(state: tenacity.RetryCallState) -> Attempt:
    outcome = state.outcome
    if outcome is None:  # pragma: no cover - tenacity only asks after a try
        raise RuntimeError("no attempt has been made yet")
    if outcome.failed:
        return Attempt(state.attempt_number, error=outcome.exception())
    return Attempt(state.attempt_number, result=outcome.result())


# -- backoffs ---------------------------------------------------------------------------------------


def full_jitter(base: float, cap: float, random: Callable[[], float]) -> Callable[[int], float]:
    """Backoff drawn uniformly from [0, min(cap, base * 2**n)) before retry ``n``.

    The widest spread: many clients rejected at the same moment come back at
    scattered times. ``random`` returns a float in [0, 1).
    """
    return lambda n: random() * min(cap, base * 2**n)


def equal_jitter(base: float, cap: float, random: Callable[[], float]) -> Callable[[int], float]:
    """Backoff between half and all of min(cap, base * 2**n) before retry ``n``.

    Never retries almost at once, still spreads clients out. ``random``
    returns a float in [0, 1).
    """

    def backoff(n: int) -> float:
        ceiling = min(cap, base * 2**n)
        return ceiling * (0.5 + 0.5 * random())

    return backoff


# -- server hints -----------------------------------------------------------------------------------


def retry_after_seconds(
    headers: Mapping[str, Any] | None, *, ceiling: float, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), within [0, ceiling].

    None without a usable header. The ceiling keeps a broken or hostile
    server from parking a run for a day. ``now`` is the wall clock an
    HTTP date is measured against.
    """
    value = (headers or {}).get("Retry-After")
    if value is None:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), ceiling)
