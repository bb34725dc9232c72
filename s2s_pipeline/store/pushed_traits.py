"""What Segment acknowledged per customer (``segment_pushed_traits``): the values of the last delivered
identify and group calls, which the nightly diff compares the new trait table with."""

from __future__ import annotations

from typing import Iterable

import pandas as pd
from sqlalchemy import Engine, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.statements import chunks, upsert_by_key


class PushedTraits:
    """Acknowledged identify/group values, one row per Stripe customer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def read_all(self) -> pd.DataFrame:
        """Every customer's last acknowledged identify/group values (empty frame on a first run)."""
        with self.engine.connect() as conn:
            return pd.read_sql(select(schema.pushed_traits), conn)

    def read_for(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        """The acknowledged values of the given customers (absent ones have none yet)."""
        ids = sorted(set(customer_ids))
        p = schema.pushed_traits
        with self.engine.connect() as conn:
            parts = [pd.read_sql(select(p).where(p.c.stripe_customer_id.in_(list(chunk))), conn)
                     for chunk in chunks(ids, 2000)]
            if not parts:
                return pd.read_sql(select(p).where(p.c.stripe_customer_id.is_(None)), conn)
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def record(self, rows: list[dict]) -> None:
        """Upsert acknowledged values; each row updates only the columns it carries."""
        if not rows:
            return
        with self.engine.begin() as conn:
            upsert_by_key(conn, self.engine.dialect.name, schema.pushed_traits, rows, "stripe_customer_id")

    def identified_among(self, customer_ids: Iterable[str]) -> set[str]:
        """The given customers with an acknowledged identify call."""
        ids = list(customer_ids)
        p = schema.pushed_traits
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                found |= set(conn.execute(select(p.c.stripe_customer_id).where(
                    p.c.stripe_customer_id.in_(chunk), p.c.identify_pushed_at.is_not(None))).scalars())
        return found
