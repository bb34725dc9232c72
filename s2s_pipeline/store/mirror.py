"""Writing the Stripe mirror: newest-wins upserts, deletions, references still to fetch, retention."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from sqlalchemy import Connection, Engine, and_, func, select, update

from s2s_pipeline.store import schema
from s2s_pipeline.store.changed_objects import ChangedObjects, touched_objects
from s2s_pipeline.store.mirror_reads import MirrorReads
from s2s_pipeline.store.refusals import refusals_as_unstorable
from s2s_pipeline.store.statements import (
    chunks,
    group_by_shape,
    insert_all,
    insert_for,
    insert_ignoring_existing,
    insert_rows,
)

# Parents before children, catalogue before what references it.
_APPLY_ORDER = ("product", "price", "coupon", "customer", "subscription", "invoice", "charge", "refund", "dispute")


class MirrorRows(Protocol):
    """A batch of mirror rows, as the extract layer builds them from Stripe objects
    (``stripe.normalize.Rows`` is one): what ``MirrorStore.apply`` writes.

    Row dicts are keyed by the mirror tables' column names (``store.schema``).
    """

    #: Object type -> rows of versioned objects (customers, subscriptions, invoices ...).
    parents: dict[str, list[dict]]
    #: Subscription id -> its items / discounts (replace the stored ones when the subscription is applied).
    items: dict[str, list[dict]]
    discounts: dict[str, list[dict]]
    #: Customer id -> its customer-level discounts (replaced with the customer).
    customer_discounts: dict[str, list[dict]]
    #: Object type -> objects seen embedded in others (stored only when the mirror lacks them).
    embedded: dict[str, list[dict]]
    #: Discount id -> a discount row to store on its own (``customer.discount.*``), None = removed.
    standalone_discounts: dict[str, dict | None]


@dataclass
class ApplyStats:
    """What one write did: rows applied and stale snapshots ignored, per object type."""

    applied: Counter = field(default_factory=Counter)
    stale: Counter = field(default_factory=Counter)

    def merge(self, other: "ApplyStats") -> None:
        self.applied.update(other.applied)
        self.stale.update(other.stale)

    @property
    def total_applied(self) -> int:
        return sum(self.applied.values())


#: The object types mirrored rows refer to by id, in the order they are resolved (see ``missing_references``).
REFERENCE_TYPES = ("subscription", "price", "coupon", "product")


class MirrorStore(MirrorReads):
    """The SQL mirror of one Stripe account (tables in ``store.schema``).

    Writes and the sync's own bookkeeping (versions, live ids, missing
    references) are here; the questions other layers ask are in ``MirrorReads``.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._dialect = engine.dialect.name
        # Every write also records what it touched, for the incremental trait refresh.
        self._changes = ChangedObjects(engine)

    # -- upserts ---------------------------------------------------------------

    def _insert(self, table):
        return insert_for(self._dialect, table)

    def _versions(self, conn: Connection, table, ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in chunks(ids):
            for row_id, version in conn.execute(select(table.c.id, table.c.version_ts).where(table.c.id.in_(chunk))):
                out[row_id] = version
        return out

    def versions(self, object_type: str, ids: list[str]) -> dict[str, int]:
        """Stored version time per id (absent ids are not in the mirror)."""
        with self.engine.connect() as conn:
            return self._versions(conn, schema.MIRROR_TABLES[object_type], ids)

    def _upsert_newest(self, conn: Connection, object_type: str, rows: list[dict], stats: ApplyStats) -> set[str]:
        """Upsert rows whose version is at least the stored one; returns the ids this statement wrote.

        The written ids are what the guarded upsert itself returns (``RETURNING id``), not what a read
        of the stored versions predicted: a concurrent writer may commit a newer snapshot between
        such a read and the upsert (on SQLite the read even happens before this transaction takes
        the write lock), and the guard then keeps its row. Children are replaced for these ids only,
        so they always come from the snapshot stored as their parent. Locking the parents first
        (``SELECT ... FOR UPDATE``) would not do: it cannot lock a parent that is not stored yet
        (two writers inserting one new subscription), and SQLite has no row locks. A written row
        stays locked (Postgres) or the database write-locked (SQLite) until the transaction ends,
        so no other writer can replace these children before this transaction commits.
        """
        table = schema.MIRROR_TABLES[object_type]
        newest: dict[str, dict] = {}
        for row in rows:  # one snapshot per id: the newest
            current = newest.get(row["id"])
            if current is None or row["version_ts"] >= current["version_ts"]:
                newest[row["id"]] = row
        # Snapshots already older than the stored ones are not sent at all (a stale snapshot the
        # database would refuse is then no refusal); this read only filters, the statement decides.
        stored = self._versions(conn, table, list(newest))
        candidates = [r for r in newest.values() if r["id"] not in stored or r["version_ts"] >= stored[r["id"]]]
        written: set[str] = set()
        # Deleted stubs carry only bookkeeping columns; group by shape so each
        # statement updates exactly the columns its rows have.
        for keys, group in group_by_shape(candidates).items():
            stmt = self._insert(table)
            set_ = {k: stmt.excluded[k] for k in keys if k != "id"}
            if "tiers" in set_:
                # Event snapshots of prices never carry tiers (Stripe only
                # returns them when expanded): keep the fetched ones.
                set_["tiers"] = func.coalesce(stmt.excluded.tiers, table.c.tiers)
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.id],
                set_=set_,
                # The version check lives in the statement: a newer stored snapshot is never
                # overwritten, and a row the guard kept is not returned.
                where=table.c.version_ts <= stmt.excluded.version_ts,
            ).returning(table.c.id)
            # In id order, so two writers of overlapping batches take the row locks (Postgres) in
            # the same order and one waits for the other rather than both deadlocking (``insert_rows``
            # keeps the order: a multi-row statement locks its rows in VALUES order).
            written.update(insert_rows(conn, stmt, sorted(group, key=lambda r: r["id"]), "id"))
        stats.applied[object_type] += len(written)
        stats.stale[object_type] += len(rows) - len(written)
        return written

    def _insert_missing(self, conn: Connection, object_type: str, rows: list[dict]) -> None:
        """Objects seen embedded in others: stored only if the mirror lacks them.

        An embedded price has no tiers (Stripe leaves them out); it must not
        overwrite a fully fetched one.
        """
        table = schema.MIRROR_TABLES[object_type]
        unique = list({r["id"]: r for r in rows}.values())
        for group in group_by_shape(unique).values():
            insert_ignoring_existing(conn, self._dialect, table, group, "id")

    def _replace_children(self, conn: Connection, table, parent_ids: set[str], children: dict[str, list[dict]]) -> None:
        ids = sorted(parent_ids)
        for chunk in chunks(ids):
            conn.execute(table.delete().where(table.c.subscription.in_(chunk)))
        # Child ids are unique across parents in Stripe; keep the last seen.
        rows = {row["id"]: row for pid in ids for row in children.get(pid, [])}
        insert_all(conn, self._dialect, table, list(rows.values()), "id")

    def _replace_customer_discounts(self, conn: Connection, customers: set[str],
                                    discounts: dict[str, list[dict]]) -> None:
        d = schema.discounts
        ids = sorted(customers)
        for chunk in chunks(ids):
            conn.execute(d.delete().where(d.c.customer.in_(chunk), d.c.subscription.is_(None)))
        fresh = [row for cid in ids for row in discounts.get(cid, [])]
        if fresh:
            # A discount id moves from a subscription to the customer only in theory; keep ids unique.
            conn.execute(d.delete().where(d.c.id.in_([r["id"] for r in fresh])))
            insert_all(conn, self._dialect, d, fresh, "id")

    def apply(self, rows: MirrorRows, conn: Connection | None = None) -> ApplyStats:
        """Write rows newest-wins in one transaction.

        On its own transaction, raises ``refusals.UnstorableInput`` (nothing written) when the database
        refuses a value; inside the caller's ``conn`` the caller decides.
        """
        if conn is None:
            with refusals_as_unstorable(), self.engine.begin() as own:
                return self.apply(rows, own)
        stats = ApplyStats()
        touched = touched_objects(rows, conn)
        for object_type in ("product", "price", "coupon"):
            if rows.embedded.get(object_type):
                self._insert_missing(conn, object_type, rows.embedded[object_type])
        for object_type in _APPLY_ORDER:
            batch = rows.parents.get(object_type)
            if not batch:
                continue
            applied = self._upsert_newest(conn, object_type, batch, stats)
            if object_type == "subscription" and applied:
                self._replace_children(conn, schema.subscription_items, applied, rows.items)
                self._replace_children(conn, schema.discounts, applied, rows.discounts)
            if object_type == "customer" and applied:
                self._replace_customer_discounts(conn, applied & set(rows.customer_discounts), rows.customer_discounts)
        standalone = getattr(rows, "standalone_discounts", None) or {}
        if standalone:
            d = schema.discounts
            for chunk in chunks(sorted(standalone)):
                conn.execute(d.delete().where(d.c.id.in_(chunk)))
            insert_all(conn, self._dialect, d, [row for row in standalone.values() if row is not None], "id")
            stats.applied["discount"] += len(standalone)
        self._changes.record(touched, conn)
        return stats

    def mark_deleted(self, object_type: str, ids: Iterable[str], version_ts: int,
                     conn: Connection | None = None) -> int:
        """Flag objects as deleted in Stripe, unless a newer snapshot is stored."""
        ids = list(ids)
        if not ids:
            return 0
        if conn is None:
            with self.engine.begin() as own:
                return self.mark_deleted(object_type, ids, version_ts, own)
        table = schema.MIRROR_TABLES[object_type]
        count = 0
        for chunk in chunks(ids):
            result = conn.execute(
                update(table)
                .where(and_(table.c.id.in_(chunk), table.c.version_ts <= version_ts, table.c.deleted.is_(False)))
                .values(deleted=True, version_ts=version_ts)
            )
            count += result.rowcount or 0
        self._changes.record({object_type: set(ids)}, conn)
        return count

    def live_ids(self, object_type: str, created_gte: int | None, created_lt: int | None) -> set[str]:
        """Ids of non-deleted mirrored objects created in [gte, lt)."""
        table = schema.MIRROR_TABLES[object_type]
        conds = [table.c.deleted.is_(False)]
        if created_gte is not None:
            conds.append(table.c.created >= created_gte)
        if created_lt is not None:
            conds.append(table.c.created < created_lt)
        with self.engine.connect() as conn:
            return set(conn.execute(select(table.c.id).where(and_(*conds))).scalars())

    def deleted_ids(self, object_type: str) -> set[str]:
        """Ids of mirrored objects flagged deleted in Stripe."""
        table = schema.MIRROR_TABLES[object_type]
        with self.engine.connect() as conn:
            return set(conn.execute(select(table.c.id).where(table.c.deleted.is_(True))).scalars())

    def live_count(self, object_type: str) -> int:
        """Non-deleted mirrored objects of a type."""
        table = schema.MIRROR_TABLES[object_type]
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table).where(table.c.deleted.is_(False))).scalar_one()

    # -- references ------------------------------------------------------------

    def missing_references(self, object_types: Iterable[str] = REFERENCE_TYPES) -> dict[str, list[str]]:
        """Objects that mirrored rows point at but the mirror lacks (or lacks in full), per type asked for.

        Prices used by subscription items (and tiered prices without tiers),
        products of prices, coupons of discounts; subscriptions whose discounts
        were mirrored without their coupon. These are retrieved by id, since a
        backfill window only lists objects created inside it. Each type is one
        scan of the tables pointing at it, so a caller asks only for the types it
        is about to fetch.
        """
        p, pr, it, d, c = schema.prices, schema.products, schema.subscription_items, schema.discounts, schema.coupons
        queries = {
            # Discounts mirrored without their coupon (a server that ignored expand):
            # the subscription is fetched again, expanded.
            "subscription": [select(d.c.subscription).distinct().where(d.c.coupon.is_(None),
                                                                        d.c.subscription.is_not(None))],
            "price": [select(it.c.price).distinct().where(it.c.price.is_not(None), it.c.price.not_in(select(p.c.id))),
                      select(p.c.id).where(p.c.billing_scheme == "tiered", p.c.tiers.is_(None),
                                           p.c.deleted.is_(False))],
            "product": [select(p.c.product).distinct().where(p.c.product.is_not(None),
                                                             p.c.product.not_in(select(pr.c.id)))],
            "coupon": [select(d.c.coupon).distinct().where(d.c.coupon.is_not(None), d.c.coupon.not_in(select(c.c.id)))],
        }
        wanted = list(object_types)
        unknown = [t for t in wanted if t not in queries]
        if unknown:
            raise KeyError(f"no references of types {unknown} (known: {sorted(queries)})")
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for object_type in wanted:
                ids: set[str] = set()
                for query in queries[object_type]:
                    ids |= set(conn.execute(query).scalars())
                out[object_type] = sorted(ids)
        return out

    def upsert_full(self, object_type: str, rows: list[dict]) -> None:
        """Write complete snapshots fetched by id regardless of the embedded copies' versions."""
        table = schema.MIRROR_TABLES[object_type]
        with refusals_as_unstorable(), self.engine.begin() as conn:
            self._changes.record({object_type: {row["id"] for row in rows}}, conn)
            for keys, group in group_by_shape(rows).items():
                stmt = self._insert(table)
                insert_rows(conn, stmt.on_conflict_do_update(
                    index_elements=[table.c.id], set_={k: stmt.excluded[k] for k in keys if k != "id"}
                ), group, "id")

    # -- retention -------------------------------------------------------------

    def drop_raw_payloads(self, before: int, conn: Connection) -> int:
        """Blank ``raw`` of snapshots older than ``before`` (Unix seconds); typed columns stay."""
        cleared = 0
        for table in schema.MIRROR_TABLES.values():
            cleared += conn.execute(update(table).where(table.c.version_ts < before, table.c.raw.is_not(None))
                                    .values(raw=None)).rowcount or 0
        return cleared

    def scrub_deleted_customers(self, conn: Connection) -> int:
        """Blank email, name, metadata and raw of customers deleted in Stripe (they are sent nowhere)."""
        c = schema.customers
        return conn.execute(
            update(c).where(c.c.deleted.is_(True), (c.c.email.is_not(None)) | (c.c.name.is_not(None))
                            | (c.c.raw.is_not(None)))
            .values(email=None, name=None, metadata=None, raw=None)).rowcount or 0

    # -- inspection ------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per mirror table (deleted included), for metadata and the demo."""
        out = {}
        with self.engine.connect() as conn:
            for name, table in {**schema.MIRROR_TABLES, "subscription_item": schema.subscription_items,
                                "discount": schema.discounts}.items():
                out[name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
        return out
