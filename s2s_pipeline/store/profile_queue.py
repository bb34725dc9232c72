"""Customers whose recomputed traits Segment has not acknowledged yet (``segment_profiles_pending``).

The trait refresh adds the customers it recomputed; the profile sync diffs
only those, and settles the entries it read once Segment acknowledged their
calls (or they needed none). A customer whose call failed is added again, so
the next run re-sends it with the same messageId. A full recompute asks for a
full diff instead (``request_full``): every customer is compared, as before
incremental refreshes existed; so is a store whose trait refresh never said
otherwise (``scope`` is then ``full``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import Column, Connection, Engine, String, Table, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.cursors import SyncCursors
from s2s_pipeline.store.statements import chunks, insert_for, insert_rows

pending_profiles = Table(
    "segment_profiles_pending",
    schema.metadata,
    Column("stripe_customer_id", String(255), primary_key=True),
    Column("token", String(32), nullable=False, index=True),
)

#: Cursor holding ``{"full": bool}``: whether the next profile sync must compare every customer.
SCOPE_CURSOR = "segment_profiles_scope"


@dataclass(frozen=True)
class ProfileScope:
    """What the next profile sync compares: every customer (``full``) or the pending ones."""

    full: bool
    customer_ids: frozenset[str]
    tokens: frozenset[str]
    full_token: str | None = None


class ProfileQueue:
    """The pending customers of the profile sync, and whether a full diff is due."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cursors = SyncCursors(engine)

    def add(self, customer_ids: Iterable[str], conn: Connection | None = None) -> None:
        """Queue customers (one fresh token for all of them), in ``conn``'s transaction when given."""
        token = uuid.uuid4().hex
        rows = [{"stripe_customer_id": str(c), "token": token} for c in sorted(set(customer_ids))]
        if not rows:
            return
        if conn is None:
            with self.engine.begin() as own:
                return self._insert(rows, own)
        self._insert(rows, conn)

    def _insert(self, rows: list[dict], conn: Connection) -> None:
        stmt = insert_for(self.engine.dialect.name, pending_profiles)
        stmt = stmt.on_conflict_do_update(index_elements=[pending_profiles.c.stripe_customer_id],
                                          set_={"token": stmt.excluded.token})
        insert_rows(conn, stmt, rows, "stripe_customer_id")

    def request_full(self, conn: Connection | None = None) -> None:
        """The next profile sync compares every customer (after a full recompute)."""
        self._cursors.set(SCOPE_CURSOR, {"full": True, "token": uuid.uuid4().hex}, conn)

    def scope(self) -> ProfileScope:
        """The customers the next profile sync must compare, read at one moment."""
        state = self._cursors.get(SCOPE_CURSOR)
        p = pending_profiles
        with self.engine.connect() as conn:
            rows = conn.execute(select(p.c.stripe_customer_id, p.c.token)).all()
        return ProfileScope(full=state is None or bool(state.get("full")),
                            customer_ids=frozenset(r[0] for r in rows), tokens=frozenset(r[1] for r in rows),
                            full_token=None if state is None else state.get("token"))

    def settle(self, scope: ProfileScope, retry_customer_ids: Iterable[str] = ()) -> None:
        """The sync of ``scope`` is done: clear what it read, queue ``retry_customer_ids`` again
        (their calls failed) and, after a full diff, go back to pending-only diffs."""
        p = pending_profiles
        with self.engine.begin() as conn:
            for chunk in chunks(sorted(scope.tokens)):
                conn.execute(p.delete().where(p.c.token.in_(chunk)))
            # A full diff requested again while this one ran stays requested.
            current = self._cursors.get(SCOPE_CURSOR)
            if scope.full and (current is None or current.get("token") == scope.full_token):
                self._cursors.set(SCOPE_CURSOR, {"full": False}, conn)
        self.add(retry_customer_ids)
