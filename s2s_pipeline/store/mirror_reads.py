"""Reading the Stripe mirror: what the trait computation, the event mapping and delivery ask of it."""

from __future__ import annotations

from typing import Iterable, Mapping

import pandas as pd
from sqlalchemy import Engine, false, func, select, union_all

from s2s_pipeline.store import schema
from s2s_pipeline.store.frames import read_customer_frames, read_frames, read_shard_frames
from s2s_pipeline.store.statements import chunks

#: Object type -> table, for single-row look-ups (the versioned tables plus the children of subscriptions).
_TABLE_OF = {**schema.MIRROR_TABLES, "subscription_item": schema.subscription_items, "discount": schema.discounts}


class MirrorReads:
    """Read-only questions about the mirror, answered with one query each."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def read_frames(self, columns: Mapping[str, tuple[str, ...]]) -> dict[str, pd.DataFrame]:
        """Per mirror frame name with columns wanted, its rows as a DataFrame (see ``store.frames``)."""
        return read_frames(self.engine, columns)

    def read_customer_frames(self, columns: Mapping[str, tuple[str, ...]], customer_ids: Iterable[str]
                             ) -> dict[str, pd.DataFrame]:
        """Like ``read_frames``, only the rows of the given customers (and the whole catalogue)."""
        return read_customer_frames(self.engine, columns, customer_ids)

    def read_shard_frames(self, columns: Mapping[str, tuple[str, ...]], lo: str | None, hi: str | None
                          ) -> dict[str, pd.DataFrame]:
        """Like ``read_frames``, only the rows of the customers with ``lo <= id < hi`` (and the whole catalogue)."""
        return read_shard_frames(self.engine, columns, lo, hi)

    def customer_shard_starts(self, customers_per_shard: int) -> list[str]:
        """The first customer id of every shard but the first, for shards of about ``customers_per_shard``
        non-deleted customers each (equal counts, ids in the database's order); empty for one shard.

        ``ntile`` over the ids in one query after a count: with N = ceil(count / per shard), the
        shards differ by at most one customer, so parallel steps take about as long as each other.
        """
        if customers_per_shard < 1:
            raise ValueError(f"customers_per_shard must be at least 1, got {customers_per_shard}")
        c = schema.customers
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(c).where(c.c.deleted == false())).scalar_one()
            shards = -(-int(count) // customers_per_shard)
            if shards <= 1:
                return []
            tiles = select(c.c.id, func.ntile(shards).over(order_by=c.c.id).label("tile")).where(
                c.c.deleted == false()).subquery()
            starts = conn.execute(select(func.min(tiles.c.id)).group_by(tiles.c.tile).order_by(tiles.c.tile)
                                  ).scalars().all()
        return list(starts[1:])

    def object_row(self, object_type: str, object_id: str) -> dict | None:
        """The mirrored row of one object (``price``, ``discount``, ``charge`` ...), ``raw`` included."""
        table = _TABLE_OF[object_type]
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.id == object_id)).mappings().first()
        return dict(row) if row else None

    def discount_terms(self, discount_ids: Iterable[str]) -> dict[str, dict]:
        """``{"coupon", "start", "end"}`` of each given discount the mirror holds with its coupon (the others are
        absent: not mirrored, or mirrored without their coupon). A discount's terms never change in Stripe."""
        d = schema.discounts
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(discount_ids)), 2000):
                query = select(d.c.id, d.c.coupon, d.c.start, d.c.end).where(d.c.id.in_(chunk), d.c.coupon.is_not(None))
                for discount_id, coupon, start, end in conn.execute(query):
                    out[discount_id] = {"coupon": coupon, "start": start, "end": end}
        return out

    def refunds_of_charge(self, charge_id: str) -> list[dict]:
        """The mirrored refunds of a charge: id, amount, currency, reason, created, status."""
        r = schema.refunds
        with self.engine.connect() as conn:
            rows = conn.execute(select(r.c.id, r.c.amount, r.c.currency, r.c.reason, r.c.created, r.c.status)
                                .where(r.c.charge == charge_id)).mappings().all()
        return [dict(row) for row in rows]

    def customer_level_discounts(self, customer_id: str) -> list[dict]:
        """The discounts applied to the customer itself (not to one subscription or item), oldest first.

        Stripe applies them to every subscription of the customer that has no
        discount of its own; ``stripe_discounts`` holds them with
        ``subscription`` and ``subscription_item`` null.
        """
        d = schema.discounts
        query = (select(d).where(d.c.customer == customer_id, d.c.subscription.is_(None),
                                 d.c.subscription_item.is_(None)).order_by(d.c.start, d.c.id))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def invoices_of_subscription(self, subscription_id: str, statuses: Iterable[str]) -> list[dict]:
        """The subscription's mirrored invoices with one of ``statuses``, oldest first, without ``raw``."""
        inv = schema.invoices
        columns = [c for c in inv.columns if c.name != "raw"]
        query = (select(*columns).where(inv.c.subscription == subscription_id, inv.c.status.in_(list(statuses)))
                 .order_by(inv.c.created, inv.c.id))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def has_unpaid_invoice_for(self, customer: str, currency: str | None, amount, created_by: int) -> bool:
        """Whether the customer has an open or uncollectible invoice in ``currency`` created no later than
        ``created_by`` whose amount still due (or amount due) equals ``amount``."""
        inv = schema.invoices
        query = select(inv.c.id).where(
            inv.c.customer == customer, inv.c.currency == currency,
            inv.c.status.in_(("open", "uncollectible")),
            (inv.c.amount_remaining == amount) | (inv.c.amount_due == amount),
            inv.c.created <= created_by,
        ).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def customer_contacts(self, customer_ids: Iterable[str]) -> dict[str, dict]:
        """Per mirrored customer: its ``email`` and ``metadata`` (what its Segment identity is resolved from)."""
        ids = list(customer_ids)
        c = schema.customers
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                for row in conn.execute(select(c.c.id, c.c.email, c.c.metadata).where(c.c.id.in_(chunk))):
                    out[row.id] = {"email": row.email, "metadata": row.metadata}
        return out

    def rows_created_between(self, object_type: str, gte: int, lt: int) -> list[dict]:
        """Every mirrored object of a type created in [gte, lt), oldest first (ties by id), ``raw`` included."""
        table = schema.MIRROR_TABLES[object_type]
        with self.engine.connect() as conn:
            rows = conn.execute(select(table).where(table.c.created >= gte, table.c.created < lt)
                                .order_by(table.c.created, table.c.id)).mappings().all()
        return [dict(row) for row in rows]

    def customer_last_change(self) -> pd.Series:
        """Per customer, the Stripe-clock time of the newest mirrored change about it.

        Used as the ``timestamp`` of identify calls: the time the traits became
        true in Stripe, not the time this job happened to run.
        """
        parts = [select(schema.customers.c.id.label("customer"), schema.customers.c.version_ts)]
        for table in (schema.subscriptions, schema.invoices, schema.charges):
            parts.append(select(table.c.customer, table.c.version_ts).where(table.c.customer.is_not(None)))
        unioned = union_all(*parts).subquery()
        query = select(unioned.c.customer, func.max(unioned.c.version_ts).label("last_change")).group_by(
            unioned.c.customer)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        return frame.set_index("customer")["last_change"]

    def last_change_of(self, customer_ids: Iterable[str]) -> pd.Series:
        """``customer_last_change`` for the given customers only (one query per chunk of ids)."""
        ids = sorted(set(customer_ids))
        out = []
        with self.engine.connect() as conn:
            for chunk in chunks(ids, 2000):
                parts = [select(schema.customers.c.id.label("customer"), schema.customers.c.version_ts)
                         .where(schema.customers.c.id.in_(chunk))]
                for table in (schema.subscriptions, schema.invoices, schema.charges):
                    parts.append(select(table.c.customer, table.c.version_ts).where(table.c.customer.in_(chunk)))
                unioned = union_all(*parts).subquery()
                query = select(unioned.c.customer, func.max(unioned.c.version_ts).label("last_change")).group_by(
                    unioned.c.customer)
                out.extend(conn.execute(query).all())
        frame = pd.DataFrame(out, columns=["customer", "last_change"])
        return frame.set_index("customer")["last_change"]
