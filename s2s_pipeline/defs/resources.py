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

from s2s_pipeline.segment.delivery import DEFAULT_HOST, SegmentConfigError, SegmentSettings
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions
from s2s_pipeline.segment.profiles_api import ProfilesClient
from s2s_pipeline.store.db import StateStoreConfigError
from s2s_pipeline.store.state_store import StateStore
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
    _store: Optional[StateStore] = PrivateAttr(default=None)

    def apply_retention(self, now: int) -> dict[str, int]:
        days = self.raw_payload_retention_days
        return self.store().purge(raw_before=None if days is None else now - int(days) * 86400,
                                   deleted_customer_pii=self.purge_deleted_customer_pii)

    def url(self) -> Optional[str]:
        return self.database_url or os.environ.get("S2S_DATABASE_URL") or None

    def store(self) -> StateStore:
        """The state store (opened, and its schema migrated, on first use)."""
        if self._store is None:
            try:
                self._store = StateStore.from_url(self.url())
            except StateStoreConfigError as exc:
                raise Failure(description=str(exc)) from exc
        return self._store


class SegmentResource(ConfigurableResource):
    """The Segment source that receives customer traits and events."""

    write_key: str = Field(description="Write key of the Segment source. Env: SEGMENT_WRITE_KEY.")
    host: Optional[str] = Field(default=None, description=f"Tracking API host. Env: SEGMENT_HOST. Default {DEFAULT_HOST}.")
    space_id: Optional[str] = Field(default=None, description="Profiles API space (identity look-ups). "
                                    "Env: SEGMENT_SPACE_ID.")
    profiles_token: Optional[str] = Field(default=None, description="Profiles API access token. "
                                          "Env: SEGMENT_PROFILES_TOKEN.")
    profiles_host: Optional[str] = Field(default=None, description="Env: SEGMENT_PROFILES_HOST. "
                                         "Default https://profiles.segment.com.")
    gzip: bool = Field(default=True, description="Gzip batches.")
    max_retries: int = Field(default=3, description="analytics-python retries of 5xx/429 per batch.")
    upload_size: int = Field(default=100, description="Messages per batch (Segment allows up to 2,500).")
    trait_allow_list: Optional[list[str]] = Field(
        default=None, description="Only these traits are compared and sent (default: every contract trait).")
    trait_routing: Optional[dict[str, dict[str, bool]]] = Field(
        default=None, description='Per-trait destinations, e.g. {"mrr": {"All": false, "Salesforce": true}}: '
        "routed traits go in their own identify with that integrations object.")
    dry_run_path: Optional[str] = Field(
        default=None, description="Write the would-be calls as JSON lines to this file; send nothing, change no state.")
    profiles_recheck_days: int = Field(default=7, description="Look anonymous customers up again after this many days.")
    max_profile_lookups: int = Field(default=10_000, description="Profiles API look-ups per run at most.")

    def settings(self) -> SegmentSettings:
        try:
            return SegmentSettings(
                write_key=self.write_key,
                host=self.host or os.environ.get("SEGMENT_HOST") or DEFAULT_HOST,
                gzip=self.gzip,
                max_retries=self.max_retries,
                upload_size=self.upload_size,
                dry_run_path=self.dry_run_path,
            )
        except SegmentConfigError as exc:
            raise Failure(description=str(exc)) from exc

    def profiles(self) -> Optional[ProfilesClient]:
        space = self.space_id or os.environ.get("SEGMENT_SPACE_ID")
        token = self.profiles_token or os.environ.get("SEGMENT_PROFILES_TOKEN")
        if not space and not token:
            return None
        if not space or not token:
            missing = "SEGMENT_SPACE_ID" if not space else "SEGMENT_PROFILES_TOKEN"
            raise Failure(description=f"{missing} is not set: the Profiles API needs both SEGMENT_SPACE_ID "
                                      "and SEGMENT_PROFILES_TOKEN (or neither, to skip look-ups)")
        host = self.profiles_host or os.environ.get("SEGMENT_PROFILES_HOST") or "https://profiles.segment.com"
        return ProfilesClient(space, token, host=host)

    def validate(self) -> None:
        """Fail with a message naming the setting if any Segment setting is malformed."""
        self.settings()
        self.profiles()

    def options(self) -> ProfileSyncOptions:
        return ProfileSyncOptions(
            allow_list=tuple(self.trait_allow_list) if self.trait_allow_list else None,
            routing=dict(self.trait_routing) if self.trait_routing else None,
            recheck_after_seconds=self.profiles_recheck_days * 86400,
            max_lookups=self.max_profile_lookups,
        )


def default_resources() -> dict:
    """Resources bound to the environment, as the shipped code location uses them."""
    from s2s_pipeline.defs.traits_assets import TraitRulesResource

    return {
        "stripe": StripeResource(api_key=EnvVar("STRIPE_API_KEY")),
        "state_store": StateStoreResource(),
        "trait_rules": TraitRulesResource(),
        "segment": SegmentResource(write_key=EnvVar("SEGMENT_WRITE_KEY")),
    }
