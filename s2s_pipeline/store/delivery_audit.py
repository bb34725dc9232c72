"""The delivery audit (``segment_delivery_audit``): every message Segment acknowledged, append-only.

It answers "what did the pipeline send about this person, to which
destinations, when": messageId, call type, event name, the trait and
property *names* (never their values), the ``integrations`` object, the
Dagster run and the acknowledgement time. Rows are only ever inserted, and
removed only by retention.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, delete, func, select

from s2s_pipeline.store.privacy_schema import delivery_audit as table
from s2s_pipeline.store.statements import insert_for, insert_rows

#: Columns a row carries (``id`` is assigned by the database).
COLUMNS = ("message_id", "call_type", "event", "stripe_customer_id", "trait_names", "property_names",
           "integrations", "run_id", "acknowledged_at")


class DeliveryAudit:
    """What Segment acknowledged, by message."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, rows: list[dict], conn: Connection | None = None) -> None:
        """Add acknowledged messages (each row has the ``COLUMNS``), in ``conn``'s transaction when given."""
        if not rows:
            return
        unknown = set().union(*rows) - set(COLUMNS)
        if unknown:
            raise ValueError(f"delivery audit rows have unknown columns {sorted(unknown)}")
        if conn is None:
            with self.engine.begin() as own:
                return self.append(rows, own)
        # Through insert_rows: on Postgres one statement of a column array each, not a parameter per value.
        insert_rows(conn, insert_for(conn.dialect.name, table), [{c: row.get(c) for c in COLUMNS} for row in rows],
                    "message_id")

    def for_customer(self, customer_id: str) -> list[dict]:
        """The customer's acknowledged messages, oldest first."""
        query = select(*(table.c[c] for c in COLUMNS)).where(table.c.stripe_customer_id == customer_id).order_by(
            table.c.acknowledged_at, table.c.id)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def drop_before(self, before: int, conn: Connection) -> int:
        """Retention: remove rows acknowledged before ``before`` (Unix seconds)."""
        return conn.execute(delete(table).where(table.c.acknowledged_at < before)).rowcount or 0

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()
