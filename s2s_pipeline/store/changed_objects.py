"""Which mirrored objects changed since the trait table last took them in (``mirror_changed_objects``).

Every write to the mirror (change-feed events, backfill pages, references
fetched by id, deletions) records, in the same transaction, the objects it
touched: the customer itself where the row names one (customers,
subscriptions, invoices, charges), otherwise the object (prices, products,
coupons, refunds and disputes by their charge, deletion stubs). The trait
refresh turns them into the customers whose traits may have changed
(``customers_affected``: a price change reaches every customer on it) and,
once their traits are stored, clears exactly the entries it read.

Each write stamps its entries with one random ``token``; a later write of the
same object replaces the token. Clearing deletes by the tokens read, so an
object changed again while traits were computed stays pending for the next
run: nothing is lost between reading and clearing.

A refresh whose steps run in several processes (the sharded full recompute)
takes a *snapshot* instead: the tokens pending at its start, copied in the
database (``mirror_changed_snapshots``), so no process holds them in memory;
its commit clears the entries still carrying those tokens, in the commit's
transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Engine, String, Table, func, literal, or_, select, union

from s2s_pipeline.store import schema
from s2s_pipeline.store.statements import chunks, insert_for, insert_rows

changed_objects = Table(
    "mirror_changed_objects",
    schema.metadata,
    Column("object_type", String(32), primary_key=True),  # customer | price | product | coupon | charge | ...
    Column("object_id", String(255), primary_key=True),
    Column("token", String(32), nullable=False, index=True),
)

#: The tokens pending when a refresh started, by refresh (``snapshot``): what its commit clears.
change_snapshots = Table(
    "mirror_changed_snapshots",
    schema.metadata,
    Column("snapshot", String(64), primary_key=True),
    Column("token", String(32), primary_key=True),
)

#: Rows of these types name their customer in a ``customer`` column.
_CUSTOMER_COLUMN = {"subscription", "invoice", "charge"}
#: Rows of these types reach their customer through their charge.
_THROUGH_CHARGE = {"refund", "dispute"}

#: Ids per IN list: SQLite's limit on bound variables is far above, Postgres parses these quickly.
_IN_CHUNK = 2000
#: Payments older than this leave ``payment_frequency_days``' window (traits.payments).
_FREQUENCY_WINDOW_SECONDS = 365 * 86400


@dataclass(frozen=True)
class PendingChanges:
    """The change entries read at one moment: what to recompute, and the tokens that clear them."""

    objects: dict[str, set[str]]
    tokens: frozenset[str]

    @property
    def empty(self) -> bool:
        return not self.tokens


def touched_objects(rows, conn: Connection) -> dict[str, set[str]]:
    """Per object type, the ids a batch of mirror rows (``mirror.MirrorRows``) touches, keyed as recorded.

    Read before the batch is written: a removed customer-level discount is found by its stored customer.
    """
    out: dict[str, set[str]] = {}

    def add(kind: str, object_id) -> None:
        if object_id:
            out.setdefault(kind, set()).add(str(object_id))

    for object_type, batch in rows.parents.items():
        for row in batch:
            if object_type == "customer":
                add("customer", row["id"])
            elif object_type in _CUSTOMER_COLUMN and row.get("customer"):
                add("customer", row["customer"])
            elif object_type in _THROUGH_CHARGE and row.get("charge"):
                add("charge", row["charge"])
            else:
                add(object_type, row["id"])
    for customer_id in rows.customer_discounts:
        add("customer", customer_id)
    for discount_id, row in (getattr(rows, "standalone_discounts", None) or {}).items():
        if row is not None and row.get("customer"):
            add("customer", row["customer"])
        else:
            add("discount", discount_id)
    # Embedded catalogue objects are written only when the mirror lacks them: new ones can complete
    # a dangling reference, known ones change nothing (and would recompute every customer on them).
    for object_type, batch in rows.embedded.items():
        table = schema.MIRROR_TABLES[object_type]
        ids = sorted({r["id"] for r in batch})
        known: set[str] = set()
        for chunk in chunks(ids):
            known |= set(conn.execute(select(table.c.id).where(table.c.id.in_(chunk))).scalars())
        for object_id in ids:
            if object_id not in known:
                add(object_type, object_id)
    # A standalone discount being removed: its customer, while the row still exists.
    gone = sorted(out.pop("discount", set()))
    d = schema.discounts
    for chunk in chunks(gone):
        for discount_id, customer in conn.execute(select(d.c.id, d.c.customer).where(d.c.id.in_(chunk))):
            add("customer", customer) if customer else add("discount", discount_id)
    return out


class ChangedObjects:
    """The change entries of the mirror since the trait table last took them in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    def record(self, objects: dict[str, set[str]], conn: Connection) -> None:
        """Mark objects changed (in ``conn``'s transaction), all with one fresh token."""
        token = uuid.uuid4().hex
        rows = [{"object_type": kind, "object_id": object_id, "token": token}
                for kind, ids in objects.items() for object_id in sorted(ids)]
        if not rows:
            return
        stmt = insert_for(self._dialect, changed_objects)
        stmt = stmt.on_conflict_do_update(index_elements=[changed_objects.c.object_type, changed_objects.c.object_id],
                                          set_={"token": stmt.excluded.token})
        insert_rows(conn, stmt, rows, ("object_type", "object_id"))

    def pending(self, with_objects: bool = True) -> PendingChanges:
        """Every entry now recorded (``with_objects=False``: only the tokens, for a full recompute)."""
        c = changed_objects
        with self.engine.connect() as conn:
            if not with_objects:
                return PendingChanges({}, frozenset(conn.execute(select(c.c.token).distinct()).scalars()))
            objects: dict[str, set[str]] = {}
            tokens: set[str] = set()
            for kind, object_id, token in conn.execute(select(c.c.object_type, c.c.object_id, c.c.token)):
                objects.setdefault(kind, set()).add(object_id)
                tokens.add(token)
        return PendingChanges(objects, frozenset(tokens))

    def clear(self, pending: PendingChanges) -> int:
        """Remove the entries read in ``pending`` (those rewritten since keep their new token)."""
        c = changed_objects
        removed = 0
        with self.engine.begin() as conn:
            for chunk in chunks(sorted(pending.tokens)):
                removed += conn.execute(c.delete().where(c.c.token.in_(chunk))).rowcount or 0
        return removed

    def snapshot(self, snapshot_id: str, conn: Connection) -> int:
        """Record the tokens pending now under ``snapshot_id`` (replacing an earlier snapshot of that id),
        in ``conn``'s transaction; returns the change entries they stand for."""
        c, snap = changed_objects, change_snapshots
        conn.execute(snap.delete().where(snap.c.snapshot == snapshot_id))
        conn.execute(snap.insert().from_select(["snapshot", "token"],
                                               select(literal(snapshot_id), c.c.token).distinct()))
        return int(conn.execute(select(func.count()).select_from(c).where(
            c.c.token.in_(select(snap.c.token).where(snap.c.snapshot == snapshot_id)))).scalar_one())

    def pending_in_snapshot(self, snapshot_id: str) -> PendingChanges:
        """The entries that still carry a token of the snapshot: what changed before it was taken
        (an object written again since carries a newer token and waits for the next refresh)."""
        c, snap = changed_objects, change_snapshots
        objects: dict[str, set[str]] = {}
        tokens: set[str] = set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.c.object_type, c.c.object_id, c.c.token).where(
                c.c.token.in_(select(snap.c.token).where(snap.c.snapshot == snapshot_id))))
            for kind, object_id, token in rows:
                objects.setdefault(kind, set()).add(object_id)
                tokens.add(token)
        return PendingChanges(objects, frozenset(tokens))

    def clear_snapshot(self, snapshot_id: str, conn: Connection) -> int:
        """Remove the entries carrying a token of the snapshot, and the snapshot (in ``conn``'s transaction)."""
        c, snap = changed_objects, change_snapshots
        removed = conn.execute(c.delete().where(
            c.c.token.in_(select(snap.c.token).where(snap.c.snapshot == snapshot_id)))).rowcount or 0
        self.drop_snapshot(snapshot_id, conn)
        return removed

    def drop_snapshot(self, snapshot_id: str, conn: Connection) -> None:
        """Forget a snapshot without clearing anything (a refresh abandoned before its commit)."""
        conn.execute(change_snapshots.delete().where(change_snapshots.c.snapshot == snapshot_id))

    def customers_affected(self, pending: PendingChanges) -> set[str]:
        """The customers whose traits may differ because of the pending changes.

        Customers directly; subscriptions, invoices, charges and discounts through their
        customer; refunds and disputes through their charge; prices through the subscription
        items on them, products through their prices, coupons through their discounts.
        """
        s = schema
        out = set(pending.objects.get("customer", ()))
        it, pr, d, ch = s.subscription_items, s.prices, s.discounts, s.charges
        questions = {
            "subscription": lambda ids: select(s.subscriptions.c.customer).where(s.subscriptions.c.id.in_(ids)),
            "invoice": lambda ids: select(s.invoices.c.customer).where(s.invoices.c.id.in_(ids)),
            "charge": lambda ids: select(ch.c.customer).where(ch.c.id.in_(ids)),
            "refund": lambda ids: select(ch.c.customer).where(
                ch.c.id.in_(select(s.refunds.c.charge).where(s.refunds.c.id.in_(ids)))),
            "dispute": lambda ids: select(ch.c.customer).where(
                ch.c.id.in_(select(s.disputes.c.charge).where(s.disputes.c.id.in_(ids)))),
            "discount": lambda ids: select(d.c.customer).where(d.c.id.in_(ids)),
            "price": lambda ids: select(it.c.customer).distinct().where(it.c.price.in_(ids)),
            "product": lambda ids: select(it.c.customer).distinct().where(
                it.c.price.in_(select(pr.c.id).where(pr.c.product.in_(ids)))),
            "coupon": lambda ids: select(d.c.customer).distinct().where(d.c.coupon.in_(ids)),
        }
        with self.engine.connect() as conn:
            for kind, question in questions.items():
                ids = sorted(pending.objects.get(kind, ()))
                for chunk in chunks(ids, _IN_CHUNK):
                    out |= {c for c in conn.execute(question(list(chunk))).scalars() if c}
        return out

    def customers_crossing_time(self, since: int, until: int) -> set[str]:
        """Customers whose traits depend on the clock and may have moved between ``since`` and ``until``
        without any Stripe change: a payment leaving the 365-day frequency window, a discount starting
        or ending (under ``all_in_effect`` it enters or leaves MRR)."""
        if until <= since:
            return set()
        ch, d = schema.charges, schema.discounts
        window = _FREQUENCY_WINDOW_SECONDS
        # One range of the (created, customer) index per window, as a UNION: each range is read from the
        # index alone, where an OR of the two makes Postgres visit a heap page per charge (at 1M
        # customers: 175-240 -> 7 ms).
        of_window = [select(ch.c.customer).where(ch.c.customer.is_not(None), ch.c.created.between(lo, hi))
                     for lo, hi in ((since - window, until - window), (since, until))]
        with self.engine.connect() as conn:
            leaving = set(conn.execute(union(*of_window)).scalars())
            discounts = set(conn.execute(select(d.c.customer).distinct().where(
                d.c.customer.is_not(None),
                or_(d.c.start.between(since, until), d.c.end.between(since, until)),
            )).scalars())
        return leaving | discounts

