"""A realistic account (the demo generator) mirrored by a 90-day backfill, a full sync and an incremental run."""

import pytest
from sqlalchemy import select

from s2s_devtools.demo.changes import simulate_changes
from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_pipeline.extract.backfill import ALL_OBJECT_TYPES, backfill
from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.store import schema

NOW = 1_790_000_000
DAY = 86400
TYPES_BY_CREATED = ("customer", "subscription", "invoice", "charge", "refund", "dispute")


@pytest.fixture(scope="module")
def account():
    return generate_account(customers=80, seed=5, now=NOW)


def ids(state_store, object_type, **where):
    table = schema.MIRROR_TABLES[object_type]
    query = select(table.c.id)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with state_store.engine.connect() as conn:
        return set(conn.execute(query).scalars())


def test_90_day_backfill_mirrors_exactly_the_objects_created_in_the_range(standin, make_reader, state_store, account):
    seed_standin(standin, account)
    gte, lt = NOW - 90 * DAY, NOW + 1
    result = backfill(make_reader(), state_store, ALL_OBJECT_TYPES, gte, lt)
    assert result.malformed == []
    for object_type in TYPES_BY_CREATED:
        expected = {o["id"] for o in account.of_type(object_type) if gte <= o["created"] < lt}
        assert ids(state_store, object_type) == expected, object_type
    # Prices, products and coupons used by those subscriptions were fetched by id even if created earlier.
    with state_store.engine.connect() as conn:
        used = set(conn.execute(select(schema.subscription_items.c.price)).scalars())
    assert used <= ids(state_store, "price")
    assert state_store.mirror.missing_references() == {"price": [], "product": [], "coupon": [], "subscription": []}


def test_full_sync_then_incremental_run(standin, make_reader, state_store, account):
    seed_standin(standin, account)
    first = sync_changes(make_reader(), state_store, clock=lambda: NOW)
    assert first.mode == "initial_full_sync" and first.malformed == []
    for object_type in TYPES_BY_CREATED + ("price", "product", "coupon"):
        assert ids(state_store, object_type) == {o["id"] for o in account.of_type(object_type)}, object_type
    by_id = account.by_id()
    with state_store.engine.connect() as conn:
        subs = conn.execute(select(schema.subscriptions.c.id, schema.subscriptions.c.status,
                                   schema.subscriptions.c.cancel_at_period_end)).all()
        charges = conn.execute(select(schema.charges.c.id, schema.charges.c.amount_refunded,
                                      schema.charges.c.status)).all()
    assert all((by_id[s.id]["status"], by_id[s.id]["cancel_at_period_end"]) == (s.status, s.cancel_at_period_end)
               for s in subs)
    assert all((by_id[c.id]["amount_refunded"], by_id[c.id]["status"]) == (c.amount_refunded, c.status)
               for c in charges)

    changes = simulate_changes(standin, account, at=NOW + 60)
    assert changes
    second = sync_changes(make_reader(), state_store, clock=lambda: NOW + 120)
    assert second.mode == "incremental"
    assert second.stats.applied["subscription"] == 1 and second.stats.applied["customer"] == 1
    assert second.stats.applied["invoice"] == 1 and second.stats.applied["refund"] == 1
    with state_store.engine.connect() as conn:
        ledger = conn.execute(select(schema.stripe_events.c.type, schema.stripe_events.c.created,
                                     schema.stripe_events.c.track_status)).all()
    # Only the two new events are pending; the overlap re-read older events, which are history.
    assert sorted((e.type, e.track_status) for e in ledger if e.created > NOW) == [
        ("charge.refunded", "pending"), ("customer.subscription.updated", "pending"),
        ("customer.updated", "pending"), ("invoice.payment_failed", "pending"), ("refund.created", "pending")]
    assert all(e.track_status == "historical" for e in ledger if e.created <= NOW)
    assert second.events_new == len(ledger)
