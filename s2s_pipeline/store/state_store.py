"""The whole state store as one object: one engine, one repository per concept.

``StateStore.from_url(url)`` opens (and migrates) the store; callers reach
each concept by name: ``mirror`` (the Stripe mirror), ``ledger`` (Stripe
events and their track outcomes), ``cursors``, ``identities`` (Segment
identity map), ``pushed_traits`` (what Segment acknowledged), ``track_state``
(track calls sent), ``traits`` (the computed trait table), ``trait_refresh_plans``
(trait refreshes in progress, shard by shard), ``regulations``
(the deletion path's record per customer), ``delivery_audit`` (every
acknowledged message, names only), ``inbox`` (Stripe events delivered by
webhook) and ``quarantine`` (Stripe objects set aside, with the reason). Work that must be atomic across concepts has a method here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import pandas as pd
from sqlalchemy import Engine

from s2s_pipeline.core.kill_points import kill_point
from s2s_pipeline.store.changed_objects import ChangedObjects
from s2s_pipeline.store.cursors import SyncCursors
from s2s_pipeline.store.customer_records import CustomerRecords
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.delivery_audit import DeliveryAudit
from s2s_pipeline.store.identities import IdentityMap
from s2s_pipeline.store.keyed_reads import read_keyed
from s2s_pipeline.store.ledger import EventLedger
from s2s_pipeline.store.mirror import ApplyStats, MirrorRows, MirrorStore
from s2s_pipeline.store.profile_queue import ProfileQueue
from s2s_pipeline.store.pushed_traits import PushedTraits
from s2s_pipeline.store.quarantine import Quarantine, QuarantineEntry, storable_text
from s2s_pipeline.store.refusals import refusals_as_unstorable
from s2s_pipeline.store.regulations import Regulations
from s2s_pipeline.store.statements import commit_without_waiting_for_disk
from s2s_pipeline.store.track_state import SentTrackCalls
from s2s_pipeline.store.trait_refresh_plans import RefreshPlan, TraitRefreshPlans
from s2s_pipeline.store.traits_rows import TraitRows
from s2s_pipeline.store.traits_table import TraitsTable
from s2s_pipeline.store.webhook_inbox import WebhookInbox


@dataclass(frozen=True)
class ProfileRows:
    """What the profile pass compares for some customers: their stored traits (empty before the first
    refresh), identities and pushed (acknowledged) state, as of one snapshot."""

    traits: pd.DataFrame
    identities: pd.DataFrame
    pushed: pd.DataFrame


class StateStore:
    """Everything the pipeline keeps between runs (SQLite or PostgreSQL, tables in ``store.schema``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.mirror = MirrorStore(engine)
        self.ledger = EventLedger(engine)
        self.cursors = SyncCursors(engine)
        self.identities = IdentityMap(engine)
        self.pushed_traits = PushedTraits(engine)
        self.track_state = SentTrackCalls(engine)
        self.traits = TraitsTable(engine)
        self.regulations = Regulations(engine)
        self.delivery_audit = DeliveryAudit(engine)
        self.customer_records = CustomerRecords(engine)
        self.inbox = WebhookInbox(engine)
        self.quarantine = Quarantine(engine)
        # The incremental nightly path: what changed in the mirror, trait rows by customer,
        # customers whose new traits Segment has still to acknowledge.
        self.changed_objects = ChangedObjects(engine)
        self.trait_rows = TraitRows(engine)
        self.profile_queue = ProfileQueue(engine)
        # Trait refreshes whose shards run as separate steps: their plans and staging tables.
        self.trait_refresh_plans = TraitRefreshPlans(engine)

    @classmethod
    def from_url(cls, url: str | None = None) -> "StateStore":
        """Open the store at a SQLAlchemy URL (default: a SQLite file under $DAGSTER_HOME), schema migrated.

        Raises ``db.StateStoreConfigError`` naming the problem when the URL is malformed or unreachable.
        """
        return cls(make_engine(url))

    def dispose(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()

    def commit_events(self, rows: MirrorRows, ledger_rows: list[dict], cursor: tuple[str, dict] | None = None
                      ) -> ApplyStats:
        """Apply events' snapshots to the mirror, ledger the events and (when given, ``(name, value)``)
        move a cursor past them, in one transaction: a crash leaves all three as they were.

        Raises ``refusals.UnstorableInput`` (and writes nothing) when the database refuses a value.
        """
        with refusals_as_unstorable(), self.engine.begin() as conn:
            stats = self.mirror.apply(rows, conn)
            self.ledger.record(ledger_rows, conn)
            if cursor is not None:
                kill_point("change_feed.mirror_written")  # crash tests: mirror and ledger written, cursor not
                self.cursors.set(*cursor, conn)
        return stats

    def record_acknowledged_track(self, sent: list[dict], delinquent: dict[str, int],
                                  outcomes: dict[str, tuple[str, str | None]], audit: list[dict]) -> None:
        """One batch of track calls Segment acknowledged, in one transaction: the calls sent
        (``track_state``), ``payment_delinquent = true`` Segment now has for each customer as of its
        failure (``pushed_traits``), the Stripe events' outcomes (``ledger``) and the delivery audit.

        All or nothing: a crash part-way would leave the calls recorded as sent but not what their
        delinquent identifies set, and the next diff would send that value again under a new messageId.
        """
        with self.engine.begin() as conn:
            commit_without_waiting_for_disk(conn)  # re-sent under the same messageIds if lost
            self.track_state.record_sent(sent, conn)
            kill_point("track.bookkeeping")  # crash tests: the batch's calls written, not committed
            self.pushed_traits.record_delinquent(delinquent, conn)
            self.ledger.record_track_outcomes(outcomes, conn)
            self.delivery_audit.append(audit, conn)

    def record_acknowledged_profiles(self, identified: list[dict], grouped: list[dict], audit: list[dict], *,
                                     as_of: int) -> None:
        """One batch of identify/group calls Segment acknowledged, in one transaction: the pushed
        values (identify and group rows, each compare-and-set on ``as_of``) and the delivery audit."""
        with self.engine.begin() as conn:
            commit_without_waiting_for_disk(conn)  # re-sent under the same messageIds if lost
            self.pushed_traits.record_identified(identified, as_of=as_of, conn=conn)
            kill_point("profiles.bookkeeping")  # crash tests: the batch's identifies written, not committed
            self.pushed_traits.record_grouped(grouped, as_of=as_of, conn=conn)
            self.delivery_audit.append(audit, conn)

    # -- a trait refresh in shards (traits.refresh) ------------------------------------------------

    def start_trait_refresh(self, plan: RefreshPlan, template: pd.DataFrame) -> RefreshPlan:
        """Begin a refresh: an empty staging table shaped like ``template`` (replacing what an earlier attempt
        under the same plan id left), then, in one transaction, the snapshot of the pending changes and the
        plan. Returns the plan with the number of change entries the snapshot holds."""
        self.traits.create_staging(plan.staging, template)
        with self.engine.begin() as conn:
            changes = self.changed_objects.snapshot(plan.plan_id, conn)
            plan = replace(plan, changes=changes)
            self.trait_refresh_plans.create(plan, conn)
        return plan

    def write_trait_shard(self, plan: RefreshPlan, key: str, traits: pd.DataFrame, summary: dict, seconds: dict,
                          customers: Iterable[str] | None = None) -> bool:
        """Add a shard's rows to the refresh's staging table and mark the shard written, in one transaction
        (with, for an incremental refresh, the customers it recomputed). False, writing nothing, when
        the shard was written already (by an earlier attempt of its step)."""
        with self.engine.begin() as conn:
            if not self.trait_refresh_plans.mark_written(plan.plan_id, key, len(traits), summary, seconds, conn):
                return False
            if customers is not None:
                self.trait_refresh_plans.record_customers(plan.plan_id, customers, conn)
            self.traits.append_staging(plan.staging, traits, conn)
        return True

    def commit_trait_refresh(self, plan: RefreshPlan, cursor: tuple[str, dict]) -> None:
        """Close a refresh whose shards are written, in one transaction: the staging table becomes the trait
        table (full) or replaces the rows of the customers recomputed (incremental); the snapshot's changes
        are cleared; the Segment diff is queued (every customer, or those recomputed); the cursor
        ``(name, value)`` is set and the plan marked committed. A crash leaves the refresh to be committed
        again."""
        with self.engine.begin() as conn:
            self.cursors.set(*cursor, conn)  # a DML statement first: pysqlite begins the transaction here
            self.changed_objects.clear_snapshot(plan.plan_id, conn)
            if plan.mode == "full":
                self.traits.swap_in(plan.staging, conn)
                self.profile_queue.request_full(conn)
            else:
                recomputed = self.trait_refresh_plans.customers(plan.plan_id, conn)
                self.trait_rows.replace_from_staging(plan.staging,
                                                     self.trait_refresh_plans.customers_query(plan.plan_id), conn)
                self.profile_queue.add(recomputed, conn)
                self.traits.drop_staging(plan.staging, conn)
            self.trait_refresh_plans.mark_committed(plan.plan_id, conn)

    def abandon_trait_refresh(self, plan: RefreshPlan) -> None:
        """Drop a refresh committed or never to be committed: its staging table, snapshot and plan (the
        changes of one never committed stay pending for the next refresh)."""
        with self.engine.begin() as conn:
            self.changed_objects.drop_snapshot(plan.plan_id, conn)
            self.trait_refresh_plans.delete(plan.plan_id, conn)
            self.traits.drop_staging(plan.staging, conn)

    def set_aside_events(self, entries: list[QuarantineEntry], ledger_rows: list[dict], now: int) -> None:
        """Quarantine objects and ledger the events that carried them (``track_status`` as given, e.g.
        ``quarantined``), in one transaction, so the change feed's cursor can move past them."""
        text_columns = ("id", "type", "object_id", "object_type", "api_version", "track_detail")
        clean = [{k: storable_text(v) if k in text_columns and isinstance(v, str) else v for k, v in row.items()}
                 for row in ledger_rows]
        with self.engine.begin() as conn:
            self.quarantine.set_aside(entries, now, conn)
            self.ledger.record(clean, conn)

    def release_quarantined(self, object_type: str, object_id: str, rows: MirrorRows,
                            events: list[tuple[str, dict | None, str]]) -> ApplyStats:
        """A quarantined object stored at last: apply its rows, give its quarantined ledger events back
        their payload and status (``(event id, payload, track_status)``), take it out of the quarantine;
        one transaction. Raises ``refusals.UnstorableInput`` (nothing written) when it is refused again."""
        with refusals_as_unstorable(), self.engine.begin() as conn:
            stats = self.mirror.apply(rows, conn)
            for event_id, payload, status in events:
                self.ledger.restore_quarantined(event_id, payload, status, conn)
            self.quarantine.release(object_type, object_id, conn)
        return stats

    def purge(self, *, raw_before: int | None, deleted_customer_pii: bool, unsent_before: int | None = None,
              ledger_before: int | None = None, track_sent_before: int | None = None,
              audit_before: int | None = None, forgotten_customers: bool = False,
              inbox_before: int | None = None, quarantine_before: int | None = None) -> dict[str, int]:
        """Apply the retention settings in one transaction; returns rows changed per kind
        (only the kinds asked for). Times are Unix seconds; None leaves that kind alone.

        - ``raw_before``: drop raw Stripe payloads (mirror ``raw``, ledger
          ``payload``) of snapshots older than this. Typed columns stay, so
          traits and the history backfill keep working; ledger rows still
          waiting to be sent keep their payload (see ``unsent_before``).
        - ``deleted_customer_pii``: blank email, name, metadata and raw of
          customers deleted in Stripe (they are no longer sent anywhere).
        - ``unsent_before``: ledger events still pending or failed that were
          created before this lose their payload and are closed as skipped.
        - ``ledger_before``: remove ledger events created before this.
        - ``track_sent_before``: forget track calls acknowledged before this
          (their facts would be sent again by a history backfill of those days).
        - ``audit_before``: remove delivery audit rows acknowledged before this.
        - ``forgotten_customers``: blank again the personal data of purged
          customers that a later Stripe change brought back into the mirror.
        - ``inbox_before``: remove webhook deliveries (whole Stripe events)
          received before this.
        - ``quarantine_before``: forget quarantined objects last seen (or retried) before this.
        """
        out: dict[str, int] = {}
        with self.engine.begin() as conn:
            if raw_before is not None:
                out["raw_payloads_dropped"] = self.mirror.drop_raw_payloads(raw_before, conn)
                out["event_payloads_dropped"] = self.ledger.drop_old_payloads(raw_before, conn)
            if unsent_before is not None:
                out["unsent_events_expired"] = self.ledger.expire_unsent(unsent_before, conn)
            if ledger_before is not None:
                out["ledger_events_deleted"] = self.ledger.drop_before(ledger_before, conn)
            if track_sent_before is not None:
                out["track_sent_deleted"] = self.track_state.drop_before(track_sent_before, conn)
            if audit_before is not None:
                out["audit_rows_deleted"] = self.delivery_audit.drop_before(audit_before, conn)
            if deleted_customer_pii:
                out["deleted_customers_scrubbed"] = self.mirror.scrub_deleted_customers(conn)
            if forgotten_customers:
                out["forgotten_customers_rescrubbed"] = self.customer_records.rescrub_forgotten(conn)
            if inbox_before is not None:
                out["webhook_events_dropped"] = self.inbox.drop_received_before(inbox_before * 1000, conn)
            if quarantine_before is not None:
                out["quarantine_entries_dropped"] = self.quarantine.drop_last_seen_before(quarantine_before, conn)
        return out

    def profile_rows(self, customer_ids: Iterable[str]) -> "ProfileRows":
        """The stored traits, identities and pushed state of the given customers, in one snapshot (the
        profile pass of the customers a refresh queued; on PostgreSQL one ADBC connection for the three)."""
        ids = list(customer_ids)  # read three times
        if not self.trait_rows.exists():
            return ProfileRows(pd.DataFrame(), self.identities.read_for([]), self.pushed_traits.read_for([]))
        traits, identities, pushed = read_keyed(self.engine, [
            self.trait_rows.keyed(ids), self.identities.keyed(ids), self.pushed_traits.keyed(ids)])
        return ProfileRows(traits, identities, pushed)

    def suppressed_customer_ids(self) -> set[str]:
        """Customers no Segment call may be about: deleted in Stripe, or taken on by the deletion path
        (e.g. a ``forget`` request for a customer Stripe still has)."""
        return self.mirror.deleted_ids("customer") | self.regulations.customer_ids()

    def forget_customer(self, customer_id: str, now: int) -> dict[str, int]:
        """Purge the customer's personal data and mark its regulation record purged, in one transaction.

        The customer must have a regulation record (``regulations.request``): it is what keeps the
        customer out of every later Segment call.
        """
        if self.regulations.record_for(customer_id) is None:
            raise ValueError(f"customer {customer_id} has no regulation record; request one before purging")
        with self.engine.begin() as conn:
            out = self.customer_records.purge(customer_id, conn)
            self.regulations.mark_purged(customer_id, now, conn)
        return out

    def counts(self) -> dict[str, int]:
        """Rows per mirror table (deleted included) plus the ledger's events, for metadata and the demo."""
        return {**self.mirror.counts(), "event": self.ledger.count()}
