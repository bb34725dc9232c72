"""Read-only access to the Stripe account, bound under the resource key ``stripe``.

The secret comes from the environment through ``EnvVar`` (resolved when a run
starts, so a missing ``STRIPE_API_KEY`` fails that run with Dagster's message
naming the variable). Optional settings fall back to their environment
variables and then to documented defaults. Imports nothing else from ``defs``.
"""

import os
from typing import Optional

from dagster import ConfigurableResource, Definitions, EnvVar, Failure, definitions
from pydantic import Field

from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.errors import StripeConfigError
from s2s_pipeline.stripe.settings import DEFAULT_RATE_LIMIT, StripeSettings

#: Concurrency pool of every step that calls the Stripe API (limited in dagster.yaml).
STRIPE_POOL = "stripe_api"


class StripeResource(ConfigurableResource):
    """Read-only access to the Stripe account whose revenue is mirrored."""

    api_key: str = Field(description="Secret (sk_) or restricted read-only (rk_) key. Env: STRIPE_API_KEY.")
    api_base: Optional[str] = Field(
        default=None, description="API base URL override (e.g. a local stand-in). Env: STRIPE_API_BASE."
    )
    rate_limit: float = Field(
        default=DEFAULT_RATE_LIMIT,
        description="Client-side ceiling, requests/s across all threads (Stripe allows 100 live, 25 test).",
    )
    concurrency: int = Field(default=4, description="Listings fetched in parallel (created windows, object types).")
    max_network_retries: int = Field(
        default=3, description="Retries of one request after no response, a 409 (lock timeout) or a 5xx."
    )
    max_rate_limit_retries: int = Field(default=8, description="Retries of one request answered 429.")
    expand_unsupported: bool = Field(
        default=False,
        description="Only for a stand-in that cannot expand: read without expand (tiered prices then count no "
        "MRR). Against Stripe a refused expansion fails the run.",
    )

    def settings(self) -> StripeSettings:
        try:
            return StripeSettings(
                api_key=self.api_key,
                api_base=self.api_base or os.environ.get("STRIPE_API_BASE") or None,
                rate_limit=self.rate_limit,
                concurrency=self.concurrency,
                max_network_retries=self.max_network_retries,
                max_rate_limit_retries=self.max_rate_limit_retries,
                expand_unsupported=self.expand_unsupported,
            )
        except StripeConfigError as exc:
            raise Failure(description=str(exc)) from exc

    def reader(self) -> StripeReader:
        return StripeReader(self.settings())


@definitions
def resources() -> Definitions:
    """Stripe as the shipped code location uses it: the key from ``STRIPE_API_KEY``."""
    return Definitions(resources={"stripe": StripeResource(api_key=EnvVar("STRIPE_API_KEY"))})
