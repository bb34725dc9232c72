"""Named sync cursors (JSON), e.g. the change feed's position in Stripe's event stream."""

from __future__ import annotations

import json
import time

from sqlalchemy import Connection, Engine, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.statements import insert_for


class SyncCursors:
    """Where each sync left off, by name (``sync_cursors``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> dict | None:
        """The stored cursor, or None before the first sync."""
        with self.engine.connect() as conn:
            value = conn.execute(select(schema.sync_cursors.c.value).where(schema.sync_cursors.c.name == name)).scalar()
        if value is None:
            return None
        return json.loads(value) if isinstance(value, str) else value

    def set(self, name: str, value: dict, conn: Connection | None = None) -> None:
        """Store the cursor (in ``conn``'s transaction when given)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.set(name, value, own)
        table = schema.sync_cursors
        stmt = insert_for(self.engine.dialect.name, table).values(name=name, value=value, updated_at=int(time.time()))
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[table.c.name], set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}
        ))
