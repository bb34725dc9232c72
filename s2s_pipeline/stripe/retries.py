"""When one Stripe request is tried again, as Stripe documents it, and how a failure is named in logs.

Stripe's rules (https://docs.stripe.com/error-low-level, and stripe-python's
own ``_should_retry``): a ``Stripe-Should-Retry`` response header, when
present, decides (``false``: never, ``true``: retry); otherwise network errors
(no response), 409 lock timeouts and 5xx are worth another try. On top of
that the mirror retries 429s (rate limiting) with backoff, which the SDK
does not.

Each logical request has one retry budget: stripe-python's own retries are
off (``max_network_retries=0`` on the SDK client), so every try is one HTTP
request, taken through the request pacer, and counted once. The two settings
cap that shared count by the kind of failure:

- ``max_rate_limit_retries``: a 429 is retried while fewer retries than this
  have been made for the request;
- ``max_network_retries``: likewise for a network error, a 409 or a 5xx.

So a request that only ever gets 429s makes ``1 + max_rate_limit_retries``
requests; one that only ever gets 5xx makes ``1 + max_network_retries``; a
mix never makes more than ``1 + max(both)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import stripe

from s2s_pipeline.core.retry import Attempt, RetryPolicy, full_jitter

#: What kind of retry a failure calls for, which decides the budget it draws on.
RetryKind = Literal["rate_limit", "transient"]


def _header(error: BaseException, name: str) -> Any:
    """A response header of a failed try, by case-insensitive name; None when absent."""
    headers: Mapping[str, Any] = getattr(error, "headers", None) or {}
    # requests' headers (stripe-python's default HTTP client) are case-insensitive; plain dicts are not.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    return value


def should_retry_header(error: BaseException) -> bool | None:
    """Stripe's ``Stripe-Should-Retry`` verdict on a failed response; None without one."""
    value = _header(error, "Stripe-Should-Retry")
    if value is None:
        return None
    value = str(value).strip().lower()
    return True if value == "true" else False if value == "false" else None


def retry_kind(error: BaseException | None) -> RetryKind | None:
    """Whether a failed try may be retried and on which budget; None = give up at once."""
    if isinstance(error, stripe.APIConnectionError):
        # No response, so no header: stripe-python marks timeouts and refused
        # connections retryable, TLS and configuration errors not.
        return "transient" if error.should_retry else None
    if not isinstance(error, stripe.StripeError):
        return None
    verdict = should_retry_header(error)
    if verdict is False:
        return None
    rate_limited = isinstance(error, stripe.RateLimitError) or error.http_status == 429
    if rate_limited:
        return "rate_limit"
    if verdict is True:
        return "transient"
    status = error.http_status or 0
    return "transient" if status == 409 or status >= 500 else None


def request_id_of(error: BaseException) -> str | None:
    """The Request-Id Stripe gave the failed response (what Stripe support asks for); None without one."""
    value = getattr(error, "request_id", None) or _header(error, "Request-Id")
    return str(value) if value else None


def failure_kind(error: BaseException) -> str:
    """What went wrong with a try, in a few words: "rate limit (429)", "HTTP 503", "connection failure"."""
    if isinstance(error, stripe.APIConnectionError):
        return "connection failure"
    status = getattr(error, "http_status", None)
    return "rate limit (429)" if status == 429 else f"HTTP {status}" if status else type(error).__name__


def request_id_note(error: BaseException) -> str:
    """"Request-Id req_…" for a failed response, or why there is none; never the API key."""
    if isinstance(error, stripe.APIConnectionError):
        return "no response, so no Request-Id"
    return f"Request-Id {request_id_of(error) or 'not sent'}"


def describe_failure(error: BaseException) -> str:
    """A failed try for a message: its kind and its Request-Id (or why there is none)."""
    return f"{failure_kind(error)}, {request_id_note(error)}"


@dataclass(frozen=True)
class RetryBudget:
    """How many retries one request may make, by the kind of failure (see the module docstring)."""

    max_network_retries: int
    max_rate_limit_retries: int

    def retries_for(self, kind: RetryKind | None) -> int:
        """The cap on a request's retries for a failure of this kind (0 for one not worth retrying)."""
        if kind is None:
            return 0
        return self.max_rate_limit_retries if kind == "rate_limit" else self.max_network_retries

    @property
    def most(self) -> int:
        """The most retries any request can make."""
        return max(self.max_network_retries, self.max_rate_limit_retries)


def request_retry_policy(
    budget: RetryBudget,
    *,
    backoff_base_seconds: float,
    backoff_cap_seconds: float,
    random: Callable[[], float],
    before_attempt: Callable[[], None],
    sleep: Callable[[float], None],
) -> RetryPolicy:
    """The retry policy of one Stripe request: Stripe's rules, one budget, full-jitter backoff.

    ``before_attempt`` runs before every try (the pacer), ``random`` is the
    jitter source and ``sleep`` the wait, both injected by tests.
    """

    def should_retry(attempt: Attempt) -> bool:
        # attempt.number tries so far = the retries made so far + 1.
        return attempt.failed and attempt.number <= budget.retries_for(retry_kind(attempt.error))

    return RetryPolicy(
        max_retries=budget.most,
        should_retry=should_retry,
        # Full jitter: concurrent threads that hit the limit together spread out.
        backoff=full_jitter(backoff_base_seconds, backoff_cap_seconds, random),
        before_attempt=before_attempt,
        sleep=sleep,
    )
