"""The event ledger: every Stripe event the change feed has seen, once, and what became of its track call.

``track_status``: ``pending`` (not yet handled), ``historical`` (from before
the first sync: never sent), ``sent``, ``skipped``, ``failed`` (handled again
next time), ``quarantined`` (its object could not be stored: set aside in the
quarantine, payload not kept, until a retry stores it), with ``track_detail``
saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import Connection, Engine, delete, func, select, update

from s2s_pipeline.store import schema
from s2s_pipeline.store.statements import chunks, insert_ignoring_existing

#: Statuses of events whose track call is still to be made.
AWAITING_STATUSES = ("pending", "failed")


@dataclass(frozen=True)
class LedgeredEvent:
    """A ledgered Stripe event still to be handled: its id, type and (scrubbed) payload."""

    id: str
    type: str
    payload: dict | None


class EventLedger:
    """The ``stripe_events`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def known_ids(self, ids: Iterable[str], conn: Connection | None = None) -> set[str]:
        """The given event ids already in the ledger."""
        ids = list(ids)
        if conn is None:
            with self.engine.connect() as own:
                return self.known_ids(ids, own)
        out: set[str] = set()
        for chunk in chunks(ids):
            out |= set(conn.execute(
                select(schema.stripe_events.c.id).where(schema.stripe_events.c.id.in_(chunk))
            ).scalars())
        return out

    def record(self, ledger_rows: list[dict], conn: Connection | None = None) -> None:
        """Insert ledger rows; an event id already recorded is left as it is."""
        if not ledger_rows:
            return
        if conn is None:
            with self.engine.begin() as own:
                return self.record(ledger_rows, own)
        insert_ignoring_existing(conn, self.engine.dialect.name, schema.stripe_events, ledger_rows, "id")

    def awaiting_track(self, event_ids: list[str] | None = None, limit: int | None = None) -> list[LedgeredEvent]:
        """Events whose track call is pending or failed last time, oldest first (ties by id);
        only ``event_ids`` when given, at most ``limit``."""
        ledger = schema.stripe_events
        query = select(ledger.c.id, ledger.c.type, ledger.c.payload).where(
            ledger.c.track_status.in_(AWAITING_STATUSES)).order_by(ledger.c.created, ledger.c.id)
        if event_ids is not None:
            query = query.where(ledger.c.id.in_(event_ids))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [LedgeredEvent(row.id, row.type, row.payload) for row in conn.execute(query)]

    def record_track_outcomes(self, outcomes: dict[str, tuple[str, str | None]],
                              conn: Connection | None = None) -> None:
        """Per event id, its new ``(track_status, track_detail)``, in one transaction (``conn``'s when given)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.record_track_outcomes(outcomes, own)
        ledger = schema.stripe_events
        for event_id, (status, detail) in outcomes.items():
            conn.execute(update(ledger).where(ledger.c.id == event_id)
                         .values(track_status=status, track_detail=detail))

    def restore_quarantined(self, event_id: str, payload: dict | None, track_status: str, conn: Connection) -> None:
        """A quarantined event whose object stored on retry: its payload back, its track call to be handled
        (``pending``) or not (``historical``, ``skipped``). Events in any other status are left alone."""
        ledger = schema.stripe_events
        conn.execute(update(ledger).where(ledger.c.id == event_id, ledger.c.track_status == "quarantined")
                     .values(payload=payload, track_status=track_status, applied=payload is not None,
                             track_detail=None if payload is not None else "quarantined object stored on retry; "
                             "the event is no longer at Stripe"))

    def drop_old_payloads(self, before: int, conn: Connection) -> int:
        """Blank the payload of events created before ``before`` whose track call is done with
        (pending and failed events keep theirs: they are still to be mapped)."""
        ledger = schema.stripe_events
        return conn.execute(
            update(ledger).where(ledger.c.created < before, ledger.c.payload.is_not(None),
                                 ledger.c.track_status.not_in(AWAITING_STATUSES))
            .values(payload=None)).rowcount or 0

    def expire_unsent(self, before: int, conn: Connection) -> int:
        """Retention of events never sent: those created before ``before`` still pending or failed lose
        their payload and are closed as skipped (a track call that late would misstate when it happened,
        and their payload holds personal data)."""
        ledger = schema.stripe_events
        return conn.execute(
            update(ledger).where(ledger.c.created < before, ledger.c.track_status.in_(AWAITING_STATUSES))
            .values(payload=None, track_status="skipped", track_detail="expired: still unsent when its payload "
                    "reached the end of raw payload retention")).rowcount or 0

    def drop_before(self, before: int, conn: Connection) -> int:
        """Retention of the ledger itself: remove events created before ``before``. Stripe's Events API
        keeps 30 days, so an event older than that never comes back to be deduplicated against."""
        ledger = schema.stripe_events
        return conn.execute(delete(ledger).where(ledger.c.created < before)).rowcount or 0

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(schema.stripe_events)).scalar_one()
