"""Validated Stripe connection settings (what the STRIPE_* environment variables mean)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from s2s_pipeline.stripe.errors import StripeConfigError

#: Stripe's documented global limits (requests per second).
LIVE_MODE_LIMIT = 100.0
TEST_MODE_LIMIT = 25.0
DEFAULT_RATE_LIMIT = 20.0


@dataclass(frozen=True)
class StripeSettings:
    """How to talk to Stripe.

    ``rate_limit`` is the client-side ceiling in requests per second for one
    extraction (all threads together). Stripe allows 100/s in live mode and
    25/s in test mode; the default of 20 leaves headroom for other API users
    of the same account.

    Retries: each request has one retry budget, every try one paced HTTP
    request (stripe-python's own retries are off). A ``Stripe-Should-Retry``
    header decides when Stripe sends one. ``max_rate_limit_retries`` caps the
    retries of a request answered 429; ``max_network_retries`` those of a
    request that got no response, a 409 (lock timeout) or a 5xx. The waits
    are full-jitter exponential backoff from ``backoff_base_seconds`` up to
    ``backoff_cap_seconds``.

    ``expand_unsupported`` is for Stripe stand-ins that cannot expand: lists
    and retrieves are then sent without ``expand`` (tiered prices arrive
    without tiers, discounts without coupons). Against real Stripe it stays
    False, and a refused expansion fails the read.
    """

    api_key: str
    api_base: str | None = None
    rate_limit: float = DEFAULT_RATE_LIMIT
    max_network_retries: int = 3
    max_rate_limit_retries: int = 8
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 30.0
    concurrency: int = 4
    page_size: int = 100
    expand_unsupported: bool = False

    def __post_init__(self) -> None:
        key = (self.api_key or "").strip()
        if not key:
            raise StripeConfigError("STRIPE_API_KEY is not set: set it to a secret (sk_...) or restricted (rk_...) key")
        if not key.startswith(("sk_", "rk_")):
            raise StripeConfigError(
                "STRIPE_API_KEY is malformed: expected a secret key (sk_live_/sk_test_) or a "
                "restricted key (rk_live_/rk_test_); publishable keys (pk_) cannot read Stripe data"
            )
        if self.api_base:
            parsed = urlparse(self.api_base)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise StripeConfigError(
                    f"STRIPE_API_BASE is malformed: expected an http(s) URL such as http://127.0.0.1:12111, got {self.api_base!r}"
                )
        limit = LIVE_MODE_LIMIT if self.is_live else TEST_MODE_LIMIT
        if not (0 < self.rate_limit <= limit) and self.api_base is None:
            raise StripeConfigError(
                f"Stripe rate_limit must be in (0, {limit:g}] requests/s for a "
                f"{'live' if self.is_live else 'test'}-mode key, got {self.rate_limit:g}"
            )
        if self.rate_limit <= 0:
            raise StripeConfigError(f"Stripe rate_limit must be positive, got {self.rate_limit:g}")
        if not 1 <= self.page_size <= 100:
            raise StripeConfigError(f"Stripe page_size must be 1..100, got {self.page_size}")
        if self.concurrency < 1:
            raise StripeConfigError(f"Stripe concurrency must be at least 1, got {self.concurrency}")
        if self.max_network_retries < 0 or self.max_rate_limit_retries < 0:
            raise StripeConfigError("Stripe retry counts must not be negative")

    @property
    def is_live(self) -> bool:
        return "_live_" in self.api_key
