"""What Segment acknowledged per customer (``segment_pushed_traits``): the values of the last delivered
identify and group calls, which the nightly diff compares the new trait table with.

Identify values are written compare-and-set on the Stripe-clock time of the values they record
(``traits_as_of``; ``payment_delinquent_as_of`` for the one trait the failed-payment alert also
writes), group values on theirs (``group_as_of``): a record older than the stored one leaves it as
it is, whichever run finishes last.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import pandas as pd
from sqlalchemy import Connection, Engine, and_, case, or_, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.keyed_reads import KeyedRead, read_keyed
from s2s_pipeline.store.statements import (chunks, group_by_shape, id_range, insert_for, insert_rows,
                                          upsert_by_key)


class PushedTraits:
    """Acknowledged identify/group values, one row per Stripe customer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def read_all(self) -> pd.DataFrame:
        """Every customer's last acknowledged identify/group values (empty frame on a first run)."""
        with self.engine.connect() as conn:
            return pd.read_sql(select(schema.pushed_traits), conn)

    def read_range(self, lo: str | None, hi: str | None) -> pd.DataFrame:
        """The acknowledged values of the customers with ``lo <= id < hi`` (None: unbounded)."""
        p = schema.pushed_traits
        with self.engine.connect() as conn:
            return pd.read_sql(select(p).where(*id_range(p.c.stripe_customer_id, lo, hi)), conn)

    def read_for(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        """The acknowledged values of the given customers (absent ones have none yet)."""
        return read_keyed(self.engine, [self.keyed(customer_ids)])[0]

    def keyed(self, customer_ids: Iterable[str]) -> KeyedRead:
        """The read of the given customers' rows (``keyed_reads``: with others, in one snapshot)."""
        return KeyedRead.of(schema.pushed_traits, "stripe_customer_id", customer_ids)

    def record(self, rows: list[dict]) -> None:
        """Upsert acknowledged values; each row updates only the columns it carries."""
        if not rows:
            return
        with self.engine.begin() as conn:
            upsert_by_key(conn, self.engine.dialect.name, schema.pushed_traits, rows, "stripe_customer_id")

    def record_identified(self, rows: list[dict], *, as_of: int, conn: Connection | None = None) -> None:
        """Upsert acknowledged identify values computed at ``as_of`` (Stripe-clock seconds), compare-and-set,
        in ``conn``'s transaction when given (as the writes below).

        A stored row whose values are newer than ``as_of`` keeps them; ``trait_payment_delinquent``
        is compared on its own time (a row may carry ``payment_delinquent_as_of`` newer than
        ``as_of``: the value the diff kept from a newer alert).
        """
        if not rows:
            return
        if conn is None:
            with self.engine.begin() as own:
                return self.record_identified(rows, as_of=as_of, conn=own)
        timed = [{**row, "traits_as_of": as_of,
                  "payment_delinquent_as_of": row.get("payment_delinquent_as_of") or as_of} for row in rows]
        for keys, group in group_by_shape(timed).items():
            insert_rows(conn, _identified_upsert(self.engine.dialect.name, keys), group, "stripe_customer_id")

    def record_grouped(self, rows: list[dict], *, as_of: int, conn: Connection | None = None) -> None:
        """Upsert acknowledged group values (group id, group traits, message) computed at ``as_of``
        (Stripe-clock seconds), compare-and-set: a stored group record newer than ``as_of`` stays.

        Rows carry group columns only, so the identify values of the same customer are not touched.
        """
        if not rows:
            return
        if conn is None:
            with self.engine.begin() as own:
                return self.record_grouped(rows, as_of=as_of, conn=own)
        timed = [{**row, "group_as_of": as_of} for row in rows]
        for keys, group in group_by_shape(timed).items():
            insert_rows(conn, _grouped_upsert(self.engine.dialect.name, keys), group, "stripe_customer_id")

    def record_delinquent(self, failures: dict[str, int], conn: Connection | None = None) -> list[str]:
        """``payment_delinquent = true`` acknowledged for identified customers, per customer at the
        Stripe time of its failure; a stored value newer than that stays. Returns the customers set."""
        if conn is None:
            with self.engine.begin() as own:
                return self.record_delinquent(failures, own)
        p = schema.pushed_traits
        done: list[str] = []
        for customer_id, at in sorted(failures.items()):
            updated = conn.execute(p.update().where(and_(
                p.c.stripe_customer_id == customer_id, p.c.identify_pushed_at.is_not(None),
                or_(p.c.payment_delinquent_as_of.is_(None), p.c.payment_delinquent_as_of <= at),
            )).values(trait_payment_delinquent=True, payment_delinquent_as_of=at)).rowcount
            if updated:
                done.append(customer_id)
        return done

    def delinquent_as_of(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """The Stripe-clock time of each given customer's acknowledged ``payment_delinquent`` (absent: none)."""
        p = schema.pushed_traits
        found: dict[str, int] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(customer_ids))):
                found.update(conn.execute(select(p.c.stripe_customer_id, p.c.payment_delinquent_as_of).where(
                    p.c.stripe_customer_id.in_(list(chunk)), p.c.payment_delinquent_as_of.is_not(None))).tuples().all())
        return {cid: int(at) for cid, at in found.items()}


# The compare-and-set statements, built once per dialect and row shape: every acknowledged batch of a
# delivery uses the same one, and building its CASE per column cost more than the batch's rows did.

@lru_cache(maxsize=64)
def _identified_upsert(dialect: str, keys: tuple[str, ...]):
    """Upsert of identify values: each column written only where the stored values are not newer
    (``trait_payment_delinquent`` on its own time, the others on ``traits_as_of``)."""
    p = schema.pushed_traits
    stmt = insert_for(dialect, p)
    newer_values = or_(p.c.traits_as_of.is_(None), p.c.traits_as_of <= stmt.excluded.traits_as_of)
    newer_delinquent = or_(p.c.payment_delinquent_as_of.is_(None),
                           p.c.payment_delinquent_as_of <= stmt.excluded.payment_delinquent_as_of)
    delinquent = {"trait_payment_delinquent", "payment_delinquent_as_of"}
    set_ = {k: case((newer_delinquent if k in delinquent else newer_values, stmt.excluded[k]), else_=p.c[k])
            for k in keys if k != "stripe_customer_id"}
    return stmt.on_conflict_do_update(index_elements=[p.c.stripe_customer_id], set_=set_)


@lru_cache(maxsize=64)
def _grouped_upsert(dialect: str, keys: tuple[str, ...]):
    """Upsert of group values, the whole group record guarded by its time (a guard on the row, not per
    column: the record is one time's values)."""
    p = schema.pushed_traits
    stmt = insert_for(dialect, p)
    return stmt.on_conflict_do_update(
        index_elements=[p.c.stripe_customer_id],
        set_={k: stmt.excluded[k] for k in keys if k != "stripe_customer_id"},
        where=or_(p.c.group_as_of.is_(None), p.c.group_as_of <= stmt.excluded.group_as_of))
