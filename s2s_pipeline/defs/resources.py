"""Dagster resources: configuration for Stripe and the state store.

Required secrets come from the environment through ``EnvVar`` (resolved when a
run starts, so a missing one fails that run with Dagster's message naming the
variable). Optional settings fall back to their environment variables and
then to documented defaults.
"""


import os
from typing import Optional

from dagster import ConfigurableResource, EnvVar, Failure
from pydantic import Field, PrivateAttr

from s2s_pipeline.store.db import StateStoreConfigError, make_engine
from s2s_pipeline.store.mirror import MirrorStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.errors import StripeConfigError
from s2s_pipeline.stripe.settings import DEFAULT_RATE_LIMIT, StripeSettings


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
    max_network_retries: int = Field(default=3, description="stripe-python retries for network errors and 5xx.")
    max_rate_limit_retries: int = Field(default=8, description="Retries of HTTP 429 with jittered backoff.")

    def settings(self) -> StripeSettings:
        try:
            return StripeSettings(
                api_key=self.api_key,
                api_base=self.api_base or os.environ.get("STRIPE_API_BASE") or None,
                rate_limit=self.rate_limit,
                concurrency=self.concurrency,
                max_network_retries=self.max_network_retries,
                max_rate_limit_retries=self.max_rate_limit_retries,
            )
        except StripeConfigError as exc:
            raise Failure(description=str(exc)) from exc

    def reader(self) -> StripeReader:
        return StripeReader(self.settings())


class StateStoreResource(ConfigurableResource):
    """The SQL state store: Stripe mirror, event ledger, cursors, traits, pushed traits."""

    database_url: Optional[str] = Field(
        default=None,
        description="SQLAlchemy URL. Env: S2S_DATABASE_URL. Default: SQLite file $DAGSTER_HOME/s2s_state.db.",
    )
    raw_payload_retention_days: Optional[int] = Field(
        default=30,
        description="Keep raw Stripe payloads (mirror snapshots, event ledger) this many days; the typed columns "
        "traits use are kept. Stripe's Events API keeps 30 days too. None keeps them forever.",
    )
    purge_deleted_customer_pii: bool = Field(
        default=True, description="Blank email, name, metadata and raw payload of customers deleted in Stripe.")
    _store: Optional[MirrorStore] = PrivateAttr(default=None)

    def apply_retention(self, now: int) -> dict[str, int]:
        days = self.raw_payload_retention_days
        return self.mirror().purge(raw_before=None if days is None else now - int(days) * 86400,
                                   deleted_customer_pii=self.purge_deleted_customer_pii)

    def url(self) -> Optional[str]:
        return self.database_url or os.environ.get("S2S_DATABASE_URL") or None

    def mirror(self) -> MirrorStore:
        if self._store is None:
            try:
                self._store = MirrorStore(make_engine(self.url()))
            except StateStoreConfigError as exc:
                raise Failure(description=str(exc)) from exc
        return self._store


def default_resources() -> dict:
    """Resources bound to the environment, as the shipped code location uses them."""
    from s2s_pipeline.defs.segment_assets import SegmentResource
    from s2s_pipeline.defs.traits_assets import TraitRulesResource

    return {
        "stripe": StripeResource(api_key=EnvVar("STRIPE_API_KEY")),
        "state_store": StateStoreResource(),
        "trait_rules": TraitRulesResource(),
        "segment": SegmentResource(write_key=EnvVar("SEGMENT_WRITE_KEY")),
    }
