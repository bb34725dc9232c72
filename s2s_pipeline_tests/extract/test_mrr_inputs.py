"""What MRR needs from the change feed and listings: includable fields, deleted coupons, discount events."""

import time

from sqlalchemy import select

from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.store import schema

DAY = 86400


def rows(state_store, table):
    with state_store.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(select(table))}


def customer(cid: str, created: int) -> dict:
    return {"id": cid, "object": "customer", "email": f"{cid}@example.com", "name": "N", "currency": "usd",
            "created": created, "metadata": {}, "livemode": False, "delinquent": False, "discount": None}


def coupon(created: int) -> dict:
    return {"id": "co_A50", "object": "coupon", "percent_off": 50.0, "amount_off": None, "currency": None,
            "duration": "forever", "duration_in_months": None, "valid": True, "created": created,
            "livemode": False, "applies_to": {"products": ["prod_A"]}}


def multi_currency_price(created: int) -> dict:
    return {"id": "price_m", "object": "price", "currency": "usd", "unit_amount": 1000,
            "unit_amount_decimal": "1000", "billing_scheme": "per_unit", "active": True, "created": created,
            "product": "prod_A", "tax_behavior": "unspecified", "type": "recurring", "livemode": False,
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed", "meter": None},
            "currency_options": {"eur": {"unit_amount": 900, "unit_amount_decimal": "900",
                                         "tax_behavior": "unspecified"},
                                 "usd": {"unit_amount": 1000, "unit_amount_decimal": "1000",
                                         "tax_behavior": "unspecified"}}}


def _initial(standin, make_reader, state_store, now, *objects):
    standin.load([customer("cus_1", now - 5 * DAY), *objects])
    standin.emit("customer.created", customer("cus_1", now - 5 * DAY), created=now - 5 * DAY)
    return sync_changes(make_reader(), state_store, clock=lambda: now)


def test_listing_expands_includable_fields(standin, make_reader, state_store):
    now = int(time.time())
    _initial(standin, make_reader, state_store, now, coupon(now - 9 * DAY), multi_currency_price(now - 9 * DAY))
    listed = {r["path"]: r["query"].get("expand") for r in standin.requests if r["path"] in ("/v1/prices",
                                                                                              "/v1/coupons")}
    assert "data.currency_options" in listed["/v1/prices"] and "data.tiers" in listed["/v1/prices"]
    assert "data.applies_to" in listed["/v1/coupons"]
    assert rows(state_store, schema.coupons)["co_A50"]["applies_to_products"] == ["prod_A"]
    assert rows(state_store, schema.prices)["price_m"]["currency_options"]["eur"]["unit_amount_decimal"] == "900"


def test_event_snapshot_keeps_the_includable_fields_fetched_before(standin, make_reader, state_store):
    """price.updated / coupon.updated payloads are never expanded: the stored options stay."""
    now = int(time.time())
    price, cpn = multi_currency_price(now - 9 * DAY), coupon(now - 9 * DAY)
    _initial(standin, make_reader, state_store, now, cpn, price)
    bare_price = {k: v for k, v in price.items() if k != "currency_options"} | {"nickname": "Renamed"}
    bare_coupon = {k: v for k, v in cpn.items() if k != "applies_to"} | {"name": "Half A"}
    standin.emit("price.updated", bare_price, created=now + 10, previous_attributes={"nickname": None})
    standin.emit("coupon.updated", bare_coupon, created=now + 10, previous_attributes={"name": None})
    sync_changes(make_reader(), state_store, clock=lambda: now + 20)
    stored_price = rows(state_store, schema.prices)["price_m"]
    assert stored_price["nickname"] == "Renamed"
    assert stored_price["currency_options"]["eur"]["unit_amount_decimal"] == "900"
    stored_coupon = rows(state_store, schema.coupons)["co_A50"]
    assert stored_coupon["name"] == "Half A" and stored_coupon["applies_to_products"] == ["prod_A"]


def test_coupon_deleted_keeps_its_terms(standin, make_reader, state_store):
    """A deleted coupon stays applied to its subscriptions; its terms keep reducing MRR."""
    now = int(time.time())
    cpn = coupon(now - 9 * DAY)
    _initial(standin, make_reader, state_store, now, cpn)
    standin.emit("coupon.deleted", {k: v for k, v in cpn.items() if k != "applies_to"}, created=now + 10)
    sync_changes(make_reader(), state_store, clock=lambda: now + 20)
    stored = rows(state_store, schema.coupons)["co_A50"]
    assert stored["deleted"] is True
    assert (stored["percent_off"], stored["duration"], stored["applies_to_products"]) == (50.0, "forever", ["prod_A"])


def test_customer_discount_events_update_customer_level_discounts(standin, make_reader, state_store):
    now = int(time.time())
    _initial(standin, make_reader, state_store, now, coupon(now - 9 * DAY))
    discount = {"id": "di_c1", "object": "discount", "customer": "cus_1", "subscription": None,
                "subscription_item": None, "start": now, "end": None, "invoice": None, "invoice_item": None,
                "promotion_code": None, "checkout_session": None,
                "source": {"type": "coupon", "coupon": "co_A50"}}
    standin.emit("customer.discount.created", discount, created=now + 10)
    sync_changes(make_reader(), state_store, clock=lambda: now + 20)
    (row,) = rows(state_store, schema.discounts).values()
    assert (row["id"], row["customer"], row["subscription"], row["coupon"]) == ("di_c1", "cus_1", None, "co_A50")
    standin.emit("customer.discount.deleted", discount, created=now + 30)
    sync_changes(make_reader(), state_store, clock=lambda: now + 40)
    assert rows(state_store, schema.discounts) == {}
