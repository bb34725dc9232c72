"""A parent's children always come from the snapshot stored as the parent (issue 11, finding 6).

Subscription items and discounts, and customer-level discounts, are replaced with their parent.
Two writers of one subscription (a backfill page and the change feed, say) race: writer A holds
an older snapshot, writer B a newer one. A must not replace the children when the parent row it
finally meets is B's: the mirror would hold B's subscription with A's items.

The interleaving tests run B to completion, on its own connection, at the worst moment for A:
after A has read the stored versions and just before A's upsert of the parent reaches the
database (a SQLAlchemy ``before_cursor_execute`` listener on A's engine; nothing in the product
knows about it). On SQLite that moment is real: the version read is a plain read before A's
first write, which is what opens A's transaction, so B can commit in between. A batch whose
snapshots embed catalogue objects (prices in items, coupons in discounts) writes those first and
so takes SQLite's write lock before the version read; the snapshots here name their price and
coupon by id, so the race exists on both backends. The stress test then runs real processes
writing random versions of the same objects and checks the invariant afterwards.
"""

from __future__ import annotations

import random
import traceback

from sqlalchemy import event, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.normalize import Rows, to_rows
from s2s_pipeline_tests.concurrency import run_together


def subscription(version: int, sid: str = "sub_1", items: tuple[str, ...] = (), discounts: tuple[str, ...] = (),
                 customer: str = "cus_1") -> dict:
    """A subscription snapshot whose items name their price and whose discounts their coupon by id."""
    return {
        "id": sid, "object": "subscription", "customer": customer, "status": "active", "created": 1,
        "metadata": {"snapshot": str(version)},
        "items": {"data": [{"id": item, "quantity": 1, "price": "price_1", "current_period_end": 999}
                           for item in items]},
        "discounts": [{"id": d, "object": "discount", "start": 1, "end": None,
                       "source": {"type": "coupon", "coupon": "co_1"}} for d in discounts],
    }


def customer(cid: str = "cus_1", discount: str | None = None) -> dict:
    return {"id": cid, "object": "customer", "email": None, "name": None, "currency": "usd", "created": 1,
            "metadata": {},
            "discount": None if discount is None else {"id": discount, "object": "discount", "start": 1,
                                                       "end": None, "source": {"type": "coupon", "coupon": "co_1"}}}


def catalogue() -> Rows:
    """The price and coupon the snapshots name (mirrored first, as a backfill would)."""
    rows = to_rows({"id": "price_1", "object": "price", "currency": "usd", "unit_amount": 1000,
                    "recurring": {"interval": "month", "interval_count": 1}}, 1)
    rows.extend(to_rows({"id": "co_1", "object": "coupon", "duration": "forever", "percent_off": 10}, 1))
    return rows


def run_just_before_insert_into(engine, table: str, action) -> list[bool]:
    """Run ``action`` once, just before ``engine``'s first ``INSERT INTO <table>`` is executed.

    Returns a list that holds True once the action ran, so a test can check that it did.
    """
    fired: list[bool] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001 - SQLAlchemy hook
        if not fired and statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()} "):
            fired.append(True)
            action()

    event.listen(engine, "before_cursor_execute", before)
    return fired


def rows_of(engine, query) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def test_an_older_snapshot_landing_after_a_newer_one_leaves_the_newer_items(state_url):
    writer_a, writer_b = StateStore(make_engine(state_url)), StateStore(make_engine(state_url))
    try:
        writer_b.mirror.apply(catalogue())
        writer_b.mirror.apply(to_rows(subscription(50, items=("si_first",)), 50))
        older = to_rows(subscription(100, items=("si_old",), discounts=("di_old",)), 100)
        newer = to_rows(subscription(200, items=("si_new",), discounts=("di_new",)), 200)
        newer_stats = []
        fired = run_just_before_insert_into(writer_a.engine, "stripe_subscriptions",
                                            lambda: newer_stats.append(writer_b.mirror.apply(newer)))

        older_stats = writer_a.mirror.apply(older)

        assert fired == [True] and newer_stats[0].applied["subscription"] == 1
        s, it, d = schema.subscriptions, schema.subscription_items, schema.discounts
        (parent,) = rows_of(writer_a.engine, select(s.c.version_ts, s.c.metadata))
        assert parent == {"version_ts": 200, "metadata": {"snapshot": "200"}}
        assert [r["id"] for r in rows_of(writer_a.engine, select(it.c.id))] == ["si_new"]
        assert [r["id"] for r in rows_of(writer_a.engine, select(d.c.id))] == ["di_new"]
        # A's one snapshot met a newer stored one: stale, nothing applied.
        assert (older_stats.applied["subscription"], older_stats.stale["subscription"]) == (0, 1)
    finally:
        writer_a.dispose()
        writer_b.dispose()


def test_an_older_customer_snapshot_landing_last_keeps_the_newer_customer_discount(state_url):
    writer_a, writer_b = StateStore(make_engine(state_url)), StateStore(make_engine(state_url))
    try:
        writer_b.mirror.apply(catalogue())
        older = to_rows(customer(discount=None), 100)  # the coupon not applied yet
        newer = to_rows(customer(discount="di_cust"), 200)
        fired = run_just_before_insert_into(writer_a.engine, "stripe_customers",
                                            lambda: writer_b.mirror.apply(newer))

        older_stats = writer_a.mirror.apply(older)

        assert fired == [True]
        c, d = schema.customers, schema.discounts
        assert [r["version_ts"] for r in rows_of(writer_a.engine, select(c.c.version_ts))] == [200]
        assert rows_of(writer_a.engine, select(d.c.id, d.c.customer, d.c.subscription)) == [
            {"id": "di_cust", "customer": "cus_1", "subscription": None}]
        assert (older_stats.applied["customer"], older_stats.stale["customer"]) == (0, 1)
    finally:
        writer_a.dispose()
        writer_b.dispose()


# -- many writers at once --------------------------------------------------------------------------

WRITERS = 3
WRITES_EACH = 25
SUBSCRIPTIONS = ("sub_a", "sub_b")
CUSTOMERS = ("cus_a",)
VERSIONS = range(1, 61)


def expected_children(object_id: str, version: int) -> tuple[set[str], set[str]]:
    """(item ids, discount ids) of the snapshot of ``object_id`` at ``version``: a function of both,
    so any child row names the snapshot it came from. Customers have no items."""
    items = set() if object_id.startswith("cus_") else {f"si_{object_id}_{version}_{k}" for k in range(1 + version % 3)}
    discounts = {f"di_{object_id}_{version}"} if version % 2 else set()
    return items, discounts


def snapshot(object_id: str, version: int) -> Rows:
    items, discounts = expected_children(object_id, version)
    if object_id.startswith("cus_"):
        return to_rows(customer(object_id, discount=next(iter(discounts), None)), version)
    return to_rows(subscription(version, sid=object_id, items=tuple(sorted(items)), discounts=tuple(sorted(discounts)),
                                customer="cus_a"), version)


def inconsistencies(conn, object_id: str) -> list[str]:
    """Children of one object that do not belong to its stored version. Each child kind is read in
    one statement joined to its parent: one consistent snapshot on both backends."""
    s, c, it, d = schema.subscriptions, schema.customers, schema.subscription_items, schema.discounts
    if object_id.startswith("cus_"):
        kinds = [(1, c, d, (d.c.customer == c.c.id) & d.c.subscription.is_(None))]
    else:
        kinds = [(0, s, it, it.c.subscription == s.c.id), (1, s, d, d.c.subscription == s.c.id)]
    out = []
    for kind, parent, child, joined in kinds:
        found = conn.execute(select(parent.c.version_ts, child.c.id).select_from(parent.outerjoin(child, joined))
                             .where(parent.c.id == object_id)).all()
        if not found:
            continue
        version, ids = found[0][0], {child_id for _, child_id in found if child_id is not None}
        want = expected_children(object_id, version)[kind]
        if ids != want:
            out.append(f"{object_id} at version {version} holds {child.name} {sorted(ids)}, not {sorted(want)}")
    return out


def _write_random_versions(url: str, writer: int, barrier, results) -> None:
    """One writer process: many one-object transactions of random versions, each followed by a
    look at what the mirror holds for that object. Puts the versions it wrote per object (every
    snapshot it applied, stale or not) and every inconsistent state it saw."""
    try:
        store = StateStore(make_engine(url))
        rng = random.Random(writer)
        plan = [(rng.choice(SUBSCRIPTIONS + CUSTOMERS), rng.choice(VERSIONS)) for _ in range(WRITES_EACH)]
        barrier.wait(timeout=60)
        written: dict[str, list[int]] = {}
        seen_wrong: list[str] = []
        for object_id, version in plan:
            store.mirror.apply(snapshot(object_id, version))
            written.setdefault(object_id, []).append(version)
            with store.engine.connect() as conn:
                seen_wrong += inconsistencies(conn, object_id)
        store.dispose()
        results.put({"written": written, "seen_wrong": seen_wrong})
    except BaseException:  # noqa: BLE001 - report every failure to the parent
        results.put(traceback.format_exc())


def test_many_writers_of_random_versions_leave_children_of_the_stored_parent_version(state_url):
    store = StateStore(make_engine(state_url))
    try:
        store.mirror.apply(catalogue())
        outcomes = run_together(_write_random_versions, [(state_url, w) for w in range(WRITERS)])
        failures = [o for o in outcomes if not isinstance(o, dict)]
        assert failures == [], failures[0]
        assert [wrong for o in outcomes for wrong in o["seen_wrong"]] == []
        newest: dict[str, int] = {}
        for outcome in outcomes:
            for object_id, versions in outcome["written"].items():
                newest[object_id] = max(newest.get(object_id, 0), *versions)
        s, c = schema.subscriptions, schema.customers
        stored = {r["id"]: r["version_ts"] for r in rows_of(store.engine, select(s.c.id, s.c.version_ts))}
        stored |= {r["id"]: r["version_ts"] for r in rows_of(store.engine, select(c.c.id, c.c.version_ts))}
        assert stored == newest  # newest wins, whichever writer finished last
        with store.engine.connect() as conn:
            assert [wrong for object_id in stored for wrong in inconsistencies(conn, object_id)] == []
    finally:
        store.dispose()
