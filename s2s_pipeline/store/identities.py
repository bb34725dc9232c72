"""The Segment identity of each Stripe customer (``segment_identity_map``), resolved once and reused."""

from __future__ import annotations

from typing import Iterable

import pandas as pd
from sqlalchemy import Engine, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.keyed_reads import KeyedRead, read_keyed
from s2s_pipeline.store.statements import id_range, upsert_by_key

#: The columns of a resolution (``segment.identity.resolve_identities``) that are stored.
_STORED_COLUMNS = ["stripe_customer_id", "user_id", "source", "email_key", "profiles_checked_at"]


class IdentityMap:
    """Stored identities: user id (or none: anonymous), where it came from, the last Profiles check."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def read_all(self) -> pd.DataFrame:
        """Every stored identity (empty frame on a first run)."""
        with self.engine.connect() as conn:
            return pd.read_sql(select(schema.identity_map), conn)

    def read_range(self, lo: str | None, hi: str | None) -> pd.DataFrame:
        """The stored identities of the customers with ``lo <= id < hi`` (None: unbounded)."""
        m = schema.identity_map
        with self.engine.connect() as conn:
            return pd.read_sql(select(m).where(*id_range(m.c.stripe_customer_id, lo, hi)), conn)

    def read_for(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        """The stored identities of the given customers (absent ones have none yet)."""
        return read_keyed(self.engine, [self.keyed(customer_ids)])[0]

    def keyed(self, customer_ids: Iterable[str]) -> KeyedRead:
        """The read of the given customers' rows (``keyed_reads``: with others, in one snapshot)."""
        return KeyedRead.of(schema.identity_map, "stripe_customer_id", customer_ids)

    def record_resolved(self, resolved: pd.DataFrame, now: int) -> None:
        """Store the identities ``resolve_identities`` marked ``changed`` (new or different from the stored ones)."""
        changed = resolved.loc[resolved["changed"].astype(bool), _STORED_COLUMNS].astype(object)
        changed = changed.where(changed.notna(), None)
        rows = [{**row, "updated_at": now} for row in changed.to_dict("records")]
        if not rows:
            return
        with self.engine.begin() as conn:
            upsert_by_key(conn, self.engine.dialect.name, schema.identity_map, rows, "stripe_customer_id")
