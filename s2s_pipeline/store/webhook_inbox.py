"""The webhook inbox: Stripe events the webhook receiver verified, stored once by event id.

The receiver (``s2s-webhooks``) stores an event here before it answers Stripe
200, so an acknowledged delivery is never lost; the failed-payment sensor
reads the failed payments among them every few seconds, in the order they
arrived. A redelivered event (Stripe retries until it sees a 2xx, and may
deliver twice) is stored once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, text
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from s2s_pipeline.store import schema
from s2s_pipeline.store.statements import insert_for


class InboxUnavailable(RuntimeError):
    """The state store cannot take or give inbox events right now (down, unreachable, read-only, locked).

    The receiver answers 503 so Stripe delivers the event again later.
    """


#: Database errors that mean "the store is not there right now", not "this event is bad".
_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)


@dataclass(frozen=True)
class InboxEvent:
    """A stored webhook event: the Stripe event id, type, created time, when it arrived and the event itself."""

    event_id: str
    type: str
    created: int
    received_at_ms: int
    payload: dict | None


class WebhookInbox:
    """The ``stripe_webhook_inbox`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def store(self, event: dict, received_at_ms: int) -> bool:
        """Store a verified Stripe event; True when it is new, False for a redelivery (left as it was).

        Committed when this returns. Raises ``InboxUnavailable`` when the store cannot be written.
        """
        table = schema.webhook_inbox
        row = {
            "event_id": event["id"],
            "type": event["type"],
            "created": int(event["created"]),
            "livemode": event.get("livemode"),
            "api_version": event.get("api_version"),
            "received_at_ms": int(received_at_ms),
            "payload": event,
        }
        stmt = insert_for(self.engine.dialect.name, table).values(row).on_conflict_do_nothing(
            index_elements=[table.c.event_id])
        try:
            with self.engine.begin() as conn:
                return (conn.execute(stmt).rowcount or 0) > 0
        except _UNAVAILABLE as exc:
            raise InboxUnavailable(f"state store unavailable: {type(exc.orig or exc).__name__}") from exc

    def received_since(self, types: Iterable[str], since_ms: int, limit: int = 500,
                       after_id: str | None = None) -> list[InboxEvent]:
        """Events of these types received at or after ``since_ms``, in arrival order (ties by id), at most ``limit``.

        ``after_id`` continues a page: only events after ``(since_ms, after_id)`` in that order.
        Raises ``InboxUnavailable`` when the store cannot be read.
        """
        table = schema.webhook_inbox
        since = int(since_ms)
        after = (table.c.received_at_ms >= since if after_id is None else
                 or_(table.c.received_at_ms > since, and_(table.c.received_at_ms == since, table.c.event_id > after_id)))
        query = (select(table.c.event_id, table.c.type, table.c.created, table.c.received_at_ms, table.c.payload)
                 .where(table.c.type.in_(list(types)), after)
                 .order_by(table.c.received_at_ms, table.c.event_id).limit(limit))
        try:
            with self.engine.connect() as conn:
                return [InboxEvent(r.event_id, r.type, int(r.created), int(r.received_at_ms), r.payload)
                        for r in conn.execute(query)]
        except _UNAVAILABLE as exc:
            raise InboxUnavailable(f"state store unavailable: {type(exc.orig or exc).__name__}") from exc

    def get(self, event_id: str) -> dict | None:
        """The stored Stripe event with this id, or None when it never arrived by webhook."""
        table = schema.webhook_inbox
        with self.engine.connect() as conn:
            return conn.execute(select(table.c.payload).where(table.c.event_id == event_id)).scalar()

    def ping(self) -> None:
        """Raise ``InboxUnavailable`` unless the store answers a trivial query (the health check)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except _UNAVAILABLE as exc:
            raise InboxUnavailable(f"state store unavailable: {type(exc.orig or exc).__name__}") from exc

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(schema.webhook_inbox)).scalar_one()

    def drop_received_before(self, before_ms: int, conn: Connection | None = None) -> int:
        """Delete events received before ``before_ms`` (retention: the sensor has long read them); returns how many."""
        if conn is None:
            with self.engine.begin() as own:
                return self.drop_received_before(before_ms, own)
        table = schema.webhook_inbox
        return conn.execute(delete(table).where(table.c.received_at_ms < int(before_ms))).rowcount or 0
