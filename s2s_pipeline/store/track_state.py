"""Track calls Segment acknowledged (``segment_track_sent``), keyed like their messageId.

Two Stripe events about one fact (charge.refunded + refund.created) or two
jobs (the failed-payment sensor's and the nightly one) find the fact here and
never send it twice.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import Connection, Engine, delete, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.statements import chunks, insert_ignoring_existing


class SentTrackCalls:
    """The facts already sent to Segment as track calls."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def already_sent(self, dedupe_keys: Iterable[str]) -> set[str]:
        """The given dedupe keys whose track call Segment already acknowledged."""
        keys = list(set(dedupe_keys))
        table = schema.track_sent
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(keys):
                found |= set(conn.execute(select(table.c.dedupe_key).where(table.c.dedupe_key.in_(chunk))).scalars())
        return found

    def record_sent(self, rows: list[dict], conn: Connection | None = None) -> None:
        """Record acknowledged calls (``dedupe_key``, ``message_id``, ``event``, ``stripe_customer_id``,
        ``stripe_event_id``, ``sent_at``); a key already recorded keeps its first row. In ``conn``'s
        transaction when given."""
        if not rows:
            return
        if conn is None:
            with self.engine.begin() as own:
                return self.record_sent(rows, own)
        insert_ignoring_existing(conn, self.engine.dialect.name, schema.track_sent, rows, "dedupe_key")

    def drop_before(self, before: int, conn: Connection) -> int:
        """Retention: forget calls acknowledged before ``before``. A fact older than that (e.g. in a history
        backfill over those days) would be sent again, under the same messageId."""
        table = schema.track_sent
        return conn.execute(delete(table).where(table.c.sent_at < before)).rowcount or 0
