"""The state store every domain shares: the Stripe mirror, event ledger, cursors, traits and pushed traits.

Bound here under the resource key ``state_store``. Like every resources
module under ``defs/``, this one imports nothing else from ``defs``, so any
asset may use it without import cycles.
"""

import os
from typing import Callable, Optional

from dagster import (
    ConfigurableResource,
    DagsterInstance,
    DagsterRun,
    Definitions,
    Failure,
    InitResourceContext,
    definitions,
)
from pydantic import Field, PrivateAttr, field_validator

from s2s_pipeline.store.db import StateStoreConfigError
from s2s_pipeline.store.state_store import StateStore


#: Called with (instance, run) when a run sets up the state store, before its first step: every asset uses
#: this resource, and ``execute_in_process`` sets up resources before its steps claim pool slots.
#: ``defs/run_workers.py`` registers what frees the slots of killed runs (this module imports nothing from defs).
RUN_SETUP_HOOKS: list[Callable[[DagsterInstance, DagsterRun], object]] = []


class StateStoreResource(ConfigurableResource):
    """The SQL state store: Stripe mirror, event ledger, cursors, traits, pushed traits."""

    database_url: Optional[str] = Field(
        default=None,
        description="SQLAlchemy URL. Env: S2S_DATABASE_URL. Default: SQLite file $DAGSTER_HOME/s2s_state.db.",
    )
    raw_payload_retention_days: Optional[int] = Field(
        default=30,
        description="Keep raw Stripe payloads (mirror snapshots, event ledger, webhook inbox) this many days; the typed columns "
        "traits use are kept. Stripe's Events API keeps 30 days too. None keeps them forever.",
    )
    purge_deleted_customer_pii: bool = Field(
        default=True, description="Blank email, name, metadata and raw payload of customers deleted in Stripe.")
    event_ledger_retention_days: Optional[int] = Field(
        default=90, description="Keep Stripe events in the event ledger this many days (Stripe's Events API keeps "
        "30, so an older event never comes back to be deduplicated). None keeps them forever.")
    track_sent_retention_days: Optional[int] = Field(
        default=730, description="Remember acknowledged track calls this many days: a history backfill over days "
        "older than that sends their payments again (same messageIds, beyond Segment's 24 h dedupe). "
        "None keeps them forever.")
    delivery_audit_retention_days: Optional[int] = Field(
        default=400, description="Keep the delivery audit (message ids, trait/property names, destinations, "
        "times) this many days: what an access request can be answered from. None keeps it forever.")
    quarantine_retention_days: Optional[int] = Field(
        default=90, description="Keep Stripe objects set aside in the quarantine (with their sanitised payload) "
        "this many days after they were last seen or retried. None keeps them forever.")
    _store: Optional[StateStore] = PrivateAttr(default=None)

    @field_validator("raw_payload_retention_days")
    @classmethod
    def _keeps_a_day_at_least(cls, days: Optional[int]) -> Optional[int]:
        if days is not None and days < 1:
            raise ValueError(f"raw_payload_retention_days must be at least 1 (or null to keep raw payloads forever), "
                             f"got {days}: {days} would drop every raw payload")
        return days

    @field_validator("quarantine_retention_days")
    @classmethod
    def _keeps_the_quarantine_a_day_at_least(cls, days: Optional[int]) -> Optional[int]:
        if days is not None and days < 1:
            raise ValueError(f"quarantine_retention_days must be at least 1 (or null to keep quarantined objects "
                             f"forever), got {days}: {days} would forget every object the moment it is set aside")
        return days

    def setup_for_execution(self, context: InitResourceContext) -> None:
        if context.instance is not None and context.dagster_run is not None:
            for hook in RUN_SETUP_HOOKS:
                hook(context.instance, context.dagster_run)

    def apply_retention(self, now: int) -> dict[str, int]:
        """Every retention setting, in one transaction; rows changed per kind."""

        def before(days: Optional[int]) -> Optional[int]:
            return None if days is None else now - int(days) * 86400

        raw_before = before(self.raw_payload_retention_days)
        # webhook deliveries are whole Stripe events (emails, names): kept as long as raw payloads
        return self.store().purge(raw_before=raw_before, deleted_customer_pii=self.purge_deleted_customer_pii,
                                  unsent_before=raw_before, ledger_before=before(self.event_ledger_retention_days),
                                  track_sent_before=before(self.track_sent_retention_days),
                                  audit_before=before(self.delivery_audit_retention_days),
                                  forgotten_customers=True, inbox_before=raw_before,
                                  quarantine_before=before(self.quarantine_retention_days))

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


@definitions
def resources() -> Definitions:
    """The state store as the shipped code location uses it: ``S2S_DATABASE_URL``, else SQLite under DAGSTER_HOME."""
    return Definitions(resources={"state_store": StateStoreResource()})
