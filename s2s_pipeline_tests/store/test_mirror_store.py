"""The mirror: newest-wins, deletions, child replacement, cursors, ledger, migration (SQLite and Postgres)."""

from sqlalchemy import inspect, select, text

from s2s_pipeline.store import schema
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.stripe.normalize import Rows, to_rows


def customer(cid="cus_1", email="a@example.com", **extra):
    return {"id": cid, "object": "customer", "email": email, "name": "A", "currency": "usd", "created": 100,
            "metadata": {}, **extra}


def subscription(sid="sub_1", status="active", items=(("si_1", "price_1", 1),), discounts=()):
    return {
        "id": sid, "object": "subscription", "customer": "cus_1", "status": status, "created": 100,
        "items": {"data": [{"id": i, "quantity": q, "current_period_end": 999,
                            "price": {"id": p, "object": "price", "currency": "usd", "unit_amount": 1000,
                                      "recurring": {"interval": "month", "interval_count": 1}}}
                           for i, p, q in items]},
        "discounts": [{"id": d, "object": "discount", "start": 1, "end": None,
                       "source": {"type": "coupon", "coupon": {"id": c, "object": "coupon", "duration": "forever",
                                                               "percent_off": 10}}} for d, c in discounts],
    }


def rows_of(table, mirror):
    with mirror.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


def test_newest_snapshot_wins_and_older_changes_nothing(mirror):
    mirror.apply(to_rows(customer(email="new@example.com"), 200))
    stats = mirror.apply(to_rows(customer(email="old@example.com"), 150))
    (row,) = rows_of(schema.customers, mirror)
    assert (row["email"], row["version_ts"]) == ("new@example.com", 200)
    assert stats.stale["customer"] == 1 and stats.applied["customer"] == 0
    mirror.apply(to_rows(customer(email="newer@example.com"), 250))
    assert rows_of(schema.customers, mirror)[0]["email"] == "newer@example.com"


def test_same_batch_keeps_newest_per_id(mirror):
    rows = Rows()
    rows.extend(to_rows(customer(email="b@example.com"), 300))
    rows.extend(to_rows(customer(email="a@example.com"), 200))
    mirror.apply(rows)
    assert rows_of(schema.customers, mirror)[0]["email"] == "b@example.com"


def test_deleted_customer_is_flagged_not_removed(mirror):
    mirror.apply(to_rows(customer(), 100))
    mirror.apply(to_rows({"id": "cus_1", "object": "customer", "deleted": True}, 200))
    (row,) = rows_of(schema.customers, mirror)
    assert row["deleted"] is True and row["email"] == "a@example.com" and row["version_ts"] == 200
    # An older snapshot cannot resurrect it.
    mirror.apply(to_rows(customer(), 150))
    assert rows_of(schema.customers, mirror)[0]["deleted"] is True


def test_mark_deleted_respects_newer_versions(mirror):
    mirror.apply(to_rows(customer("cus_1"), 100))
    mirror.apply(to_rows(customer("cus_2"), 300))
    assert mirror.mark_deleted("customer", ["cus_1", "cus_2"], 200) == 1
    flags = {r["id"]: r["deleted"] for r in rows_of(schema.customers, mirror)}
    assert flags == {"cus_1": True, "cus_2": False}


def test_subscription_children_replaced_with_parent(mirror):
    mirror.apply(to_rows(subscription(items=[("si_1", "price_1", 1), ("si_2", "price_2", 3)],
                                      discounts=[("di_1", "co_1")]), 100))
    mirror.apply(to_rows(subscription(items=[("si_3", "price_3", 5)]), 200))
    items = rows_of(schema.subscription_items, mirror)
    assert [(i["id"], i["price"], i["quantity"]) for i in items] == [("si_3", "price_3", 5)]
    assert rows_of(schema.discounts, mirror) == []
    # A stale snapshot leaves the children alone too.
    mirror.apply(to_rows(subscription(items=[("si_1", "price_1", 1)]), 150))
    assert [i["id"] for i in rows_of(schema.subscription_items, mirror)] == ["si_3"]
    # Embedded prices and coupons were stored once each.
    assert {p["id"] for p in rows_of(schema.prices, mirror)} == {"price_1", "price_2", "price_3"}
    assert {c["id"] for c in rows_of(schema.coupons, mirror)} == {"co_1"}


def test_event_snapshot_of_price_keeps_fetched_tiers(mirror):
    tiers = [{"up_to": 5, "unit_amount_decimal": "100", "flat_amount_decimal": None},
             {"up_to": None, "unit_amount_decimal": "80", "flat_amount_decimal": None}]
    price = {"id": "price_t", "object": "price", "currency": "usd", "billing_scheme": "tiered",
             "tiers_mode": "volume", "tiers": tiers, "nickname": "Tiered",
             "recurring": {"interval": "month", "interval_count": 1}}
    mirror.apply(to_rows(price, 100))
    update = {k: v for k, v in price.items() if k != "tiers"} | {"nickname": "Renamed"}
    mirror.apply(to_rows(update, 200))
    (row,) = rows_of(schema.prices, mirror)
    assert row["nickname"] == "Renamed" and row["tiers"] == tiers


def test_missing_references(mirror):
    mirror.apply(to_rows(subscription(discounts=[("di_1", "co_1")]), 100))
    with mirror.engine.begin() as conn:
        conn.execute(schema.coupons.delete())
        conn.execute(schema.prices.update().values(billing_scheme="tiered", product="prod_9"))
    refs = mirror.missing_references()
    assert refs == {"price": ["price_1"], "product": ["prod_9"], "coupon": ["co_1"], "subscription": []}


def test_cursor_roundtrip(state_store):
    cursors = state_store.cursors
    assert cursors.get("stripe_events") is None
    cursors.set("stripe_events", {"created": 5})
    cursors.set("stripe_events", {"created": 7, "baseline": 5})
    assert cursors.get("stripe_events") == {"created": 7, "baseline": 5}


def test_ledger_records_each_event_once(mirror, state_store):
    row = {"id": "evt_1", "type": "customer.created", "created": 1, "received_at": 2, "applied": True,
           "track_status": "pending"}
    with mirror.engine.begin() as conn:
        state_store.ledger.record([row], conn)
        state_store.ledger.record([{**row, "track_status": "sent"}], conn)
    (stored,) = rows_of(schema.stripe_events, mirror)
    assert stored["track_status"] == "pending"
    assert state_store.ledger.known_ids(["evt_1", "evt_2"]) == {"evt_1"}


def test_migration_adds_missing_columns(state_url):
    engine = make_engine(state_url)
    # a store of a release before card_brand: the column missing, that release's fingerprint recorded
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE stripe_charges DROP COLUMN card_brand"))
        conn.execute(schema.schema_info.update().values(value="a release before card_brand"))
    engine.dispose()
    engine = make_engine(state_url)  # migrates again
    assert "card_brand" in {c["name"] for c in inspect(engine).get_columns("stripe_charges")}
    engine.dispose()


def test_retention_drops_old_raw_payloads_but_keeps_pending_events_and_typed_columns(mirror, state_store):
    mirror.apply(to_rows(customer("cus_old"), 100))
    mirror.apply(to_rows(customer("cus_new"), 1000))
    base = {"type": "customer.updated", "received_at": 1, "applied": True, "payload": {"id": "x"}}
    with mirror.engine.begin() as conn:
        state_store.ledger.record([{**base, "id": "evt_sent", "created": 100, "track_status": "sent"},
                              {**base, "id": "evt_pending", "created": 100, "track_status": "pending"},
                              {**base, "id": "evt_recent", "created": 1000, "track_status": "sent"}], conn)
    counts = state_store.purge(raw_before=500, deleted_customer_pii=False)
    assert counts == {"raw_payloads_dropped": 1, "event_payloads_dropped": 1}
    raws = {r["id"]: (r["raw"], r["email"]) for r in rows_of(schema.customers, mirror)}
    assert raws["cus_old"] == (None, "a@example.com") and raws["cus_new"][0] is not None
    payloads = {r["id"]: r["payload"] for r in rows_of(schema.stripe_events, mirror)}
    assert payloads == {"evt_sent": None, "evt_pending": {"id": "x"}, "evt_recent": {"id": "x"}}


def test_deleted_customers_lose_their_personal_data(mirror, state_store):
    mirror.apply(to_rows(customer("cus_1", metadata={"segment_user_id": "u1"}), 100))
    mirror.apply(to_rows(customer("cus_2"), 100))
    mirror.mark_deleted("customer", ["cus_1"], 200)
    assert state_store.purge(raw_before=None, deleted_customer_pii=True) == {"deleted_customers_scrubbed": 1}
    rows = {r["id"]: r for r in rows_of(schema.customers, mirror)}
    assert (rows["cus_1"]["email"], rows["cus_1"]["name"], rows["cus_1"]["metadata"], rows["cus_1"]["raw"]) == (
        None, None, None, None)
    assert rows["cus_2"]["email"] == "a@example.com"


def test_customer_level_coupon_is_mirrored_and_replaced_with_the_customer(mirror):
    coupon = {"id": "co_cust", "object": "coupon", "duration": "forever", "percent_off": 20.0}
    with_discount = customer(discount={"id": "di_c", "object": "discount", "start": 1, "end": None,
                                       "source": {"type": "coupon", "coupon": coupon}})
    mirror.apply(to_rows(with_discount, 100))
    (row,) = rows_of(schema.discounts, mirror)
    assert (row["id"], row["customer"], row["subscription"], row["coupon"]) == ("di_c", "cus_1", None, "co_cust")
    assert [c["id"] for c in rows_of(schema.coupons, mirror)] == ["co_cust"]
    mirror.apply(to_rows(customer(discount=None), 200))  # the coupon was removed
    assert rows_of(schema.discounts, mirror) == []
