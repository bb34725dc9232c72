"""Every relevant Stripe example object (pinned API shapes) parses into mirror rows."""

import copy

import pytest

from s2s_pipeline.stripe.errors import MalformedStripeObject
from s2s_pipeline.stripe.normalize import scrub, to_rows

RESOURCES = ["customer", "product", "price", "plan", "coupon", "subscription", "invoice", "charge", "refund", "dispute",
             "deleted_customer", "deleted_product", "deleted_price", "deleted_coupon"]


@pytest.mark.parametrize("resource", RESOURCES)
def test_fixture_object_parses(stripe_fixtures, resource):
    obj = stripe_fixtures[resource]
    rows = to_rows(obj, version_ts=1_700_000_000)
    table = {"plan": "price"}.get(obj["object"], obj["object"])
    (row,) = rows.parents[table]
    assert row["id"] == obj["id"]
    assert row["version_ts"] == 1_700_000_000
    assert row["deleted"] is bool(obj.get("deleted", False))


def test_subscription_reads_item_periods_and_discount_source_coupon(stripe_fixtures):
    sub = copy.deepcopy(stripe_fixtures["subscription"])
    coupon = copy.deepcopy(stripe_fixtures["coupon"])
    discount = copy.deepcopy(stripe_fixtures["discount"])
    discount["source"]["coupon"] = coupon
    sub["discounts"] = [discount]
    sub["items"]["data"][0]["current_period_end"] = 1_800_000_000
    sub["items"]["data"][0]["current_period_start"] = 1_797_000_000
    rows = to_rows(sub, 1)
    item = rows.items[sub["id"]][0]
    assert item["current_period_end"] == 1_800_000_000
    assert item["current_period_start"] == 1_797_000_000
    assert item["price"] == sub["items"]["data"][0]["price"]["id"]
    assert item["customer"] == sub["customer"]
    (d,) = rows.discounts[sub["id"]]
    assert d["coupon"] == coupon["id"] and d["subscription"] == sub["id"] and d["subscription_item"] is None
    assert rows.embedded["coupon"][0]["id"] == coupon["id"]
    assert rows.embedded["price"][0]["id"] == sub["items"]["data"][0]["price"]["id"]


def test_invoice_subscription_comes_from_parent(stripe_fixtures):
    inv = copy.deepcopy(stripe_fixtures["invoice"])
    inv["parent"] = {"type": "subscription_details", "subscription_details": {"subscription": "sub_123", "metadata": {}}}
    inv["subscription"] = None  # gone from current shapes (2025-03-31.basil)
    row = to_rows(inv, 1).parents["invoice"][0]
    assert row["subscription"] == "sub_123"
    assert row["amount_due"] == inv["amount_due"]


def test_charge_keeps_brand_but_never_card_secrets(stripe_fixtures):
    charge = stripe_fixtures["charge"]
    assert "invoice" not in charge  # removed in 2025-03-31.basil
    row = to_rows(charge, 1).parents["charge"][0]
    assert row["card_brand"] == "visa"
    assert row["payment_method_type"] == charge["payment_method_details"]["type"]
    raw_text = repr(row["raw"])
    for secret in ("last4", "fingerprint", "exp_month", "exp_year"):
        assert secret not in raw_text


def test_price_tiers_and_transform_quantity():
    price = {"id": "price_t", "object": "price", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "graduated",
             "tiers": [{"up_to": 5, "unit_amount": 1200, "unit_amount_decimal": "1200", "flat_amount": None,
                        "flat_amount_decimal": None},
                       {"up_to": None, "unit_amount": None, "unit_amount_decimal": "1000.5", "flat_amount": 100,
                        "flat_amount_decimal": "100"}],
             "recurring": {"interval": "month", "interval_count": 3, "usage_type": "licensed", "meter": None},
             "transform_quantity": {"divide_by": 10, "round": "up"}, "type": "recurring", "unit_amount": None,
             "unit_amount_decimal": None, "product": {"id": "prod_1", "object": "product"}}
    row = to_rows(price, 1).parents["price"][0]
    assert row["tiers"] == [{"up_to": 5, "unit_amount_decimal": "1200", "flat_amount_decimal": None},
                            {"up_to": None, "unit_amount_decimal": "1000.5", "flat_amount_decimal": "100"}]
    assert (row["recurring_interval"], row["recurring_interval_count"]) == ("month", 3)
    assert (row["transform_divide_by"], row["transform_round"]) == (10, "up")
    assert row["product"] == "prod_1"


def test_legacy_subscription_shape_is_read():
    """Events keep the API version they were created with: 2017-style plan and periods."""
    sub = {"id": "sub_old", "object": "subscription", "customer": "cus_1", "status": "active",
           "current_period_start": 10, "current_period_end": 20,
           "items": {"data": [{"id": "si_1", "quantity": 2, "plan": {"id": "plan_1", "object": "plan", "amount": 500,
                                                                     "currency": "usd", "interval": "month",
                                                                     "interval_count": 1}}]}}
    rows = to_rows(sub, 1)
    item = rows.items["sub_old"][0]
    assert (item["price"], item["current_period_end"], item["quantity"]) == ("plan_1", 20, 2)
    assert rows.embedded["price"][0]["unit_amount_decimal"] == "500"


@pytest.mark.parametrize("missing", ["customer", "status"])
def test_malformed_subscription_names_object_and_field(stripe_fixtures, missing):
    sub = copy.deepcopy(stripe_fixtures["subscription"])
    del sub[missing]
    with pytest.raises(MalformedStripeObject, match=f"{sub['id']}.*{missing}"):
        to_rows(sub, 1)


def test_unsupported_object_is_refused():
    with pytest.raises(MalformedStripeObject, match="unsupported type 'payout'"):
        to_rows({"id": "po_1", "object": "payout"}, 1)


def test_scrub_removes_nested_card_secrets():
    assert scrub({"a": [{"card": {"last4": "4242", "brand": "visa"}}]}) == {"a": [{"card": {"brand": "visa"}}]}


def test_a_scrubbed_payload_is_not_walked_again_and_a_plain_one_always_is():
    """The change feed scrubs an event once; the mirror row of its object takes the scrubbed object as it is."""
    event = {"id": "evt_1", "data": {"object": {"id": "ch_1", "object": "charge", "status": "succeeded",
                                               "currency": "usd", "amount": 500,
                                               "payment_method_details": {"card": {"brand": "visa", "last4": "4242"}}}}}
    scrubbed = scrub(event)
    obj = scrubbed["data"]["object"]
    assert scrub(scrubbed) is scrubbed and scrub(obj) is obj
    assert to_rows(obj, 1).parents["charge"][0]["raw"] is obj
    assert obj["payment_method_details"] == {"card": {"brand": "visa"}}
    # a plain dict equal to a scrubbed one is still copied and scrubbed (it may hold what scrub removes)
    plain = {"card": {"last4": "4242"}}
    assert scrub(plain) is not plain and plain == {"card": {"last4": "4242"}}


def test_decimal_fields_from_stripe_python_are_stored_as_exact_text():
    """stripe-python turns *_decimal fields into Decimal; the mirror keeps Stripe's exact text."""
    from decimal import Decimal

    price = {"id": "price_d", "object": "price", "currency": "usd", "billing_scheme": "tiered",
             "unit_amount_decimal": Decimal("1234.5678"),
             "tiers": [{"up_to": None, "unit_amount_decimal": Decimal("0.25"), "flat_amount_decimal": Decimal("100")}]}
    row = to_rows(price, 1).parents["price"][0]
    assert row["unit_amount_decimal"] == "1234.5678"
    assert row["tiers"][0] == {"up_to": None, "unit_amount_decimal": "0.25", "flat_amount_decimal": "100"}
    assert row["raw"]["unit_amount_decimal"] == "1234.5678"


# -- MRR inputs (issue #10): includable fields, tax rates, deleted coupons, discount objects ------------


def test_includable_fields_are_stored_only_when_the_response_has_them():
    from s2s_pipeline_tests.traits.stripe_objects import coupon as coupon_obj, price as price_obj
    bare = to_rows(price_obj("p", 1000), 5).parents["price"][0]
    assert "currency_options" not in bare  # not expanded: the stored options are left alone
    options = {"eur": {"unit_amount": 900, "unit_amount_decimal": "900", "tax_behavior": "inclusive"}}
    row = to_rows(price_obj("p", 1000, currency_options=options), 5).parents["price"][0]
    assert row["currency_options"] == {"eur": {"unit_amount_decimal": "900", "tiers": None,
                                               "tax_behavior": "inclusive"}}
    restricted = to_rows(coupon_obj("c", amount_off=500, currency="usd", applies_to=["prod_A"],
                                    currency_options={"eur": {"amount_off": 400}}), 5).parents["coupon"][0]
    assert restricted["applies_to_products"] == ["prod_A"]
    assert restricted["currency_options"] == {"eur": {"amount_off": 400}}
    unexpanded = to_rows(coupon_obj("c", percent_off=10.0, expanded=False), 5).parents["coupon"][0]
    assert "applies_to_products" not in unexpanded and "currency_options" not in unexpanded


def test_deleted_coupon_keeps_its_terms_and_a_bare_stub_stays_a_stub():
    from s2s_pipeline_tests.traits.stripe_objects import coupon as coupon_obj
    row = to_rows({**coupon_obj("c", percent_off=25.0, expanded=False), "deleted": True}, 5).parents["coupon"][0]
    assert (row["deleted"], row["percent_off"], row["duration"]) == (True, 25.0, "forever")
    stub = to_rows({"id": "c", "object": "coupon", "deleted": True}, 5).parents["coupon"][0]
    assert set(stub) == {"id", "livemode", "version_ts", "deleted"}


def test_tax_rates_and_automatic_tax_of_a_subscription():
    from s2s_pipeline_tests.traits.stripe_objects import price as price_obj, subscription, tax_rate
    sub = subscription("sub", "cus", [(price_obj("p", 1000), 1, {"tax_rates": [tax_rate("txr_1", 19.0, True)]})],
                       default_tax_rates=[tax_rate("txr_2", 7.0, False)], automatic_tax=False)
    rows = to_rows(sub, 5)
    (sub_row,) = rows.parents["subscription"]
    assert sub_row["automatic_tax_enabled"] is False
    assert sub_row["default_tax_rates"] == [{"id": "txr_2", "percentage": 7.0, "inclusive": False,
                                             "rate_type": "percentage"}]
    assert rows.items["sub"][0]["tax_rates"][0]["inclusive"] is True


def test_discount_objects_of_customer_discount_events():
    from s2s_pipeline_tests.traits.stripe_objects import discount
    rows = to_rows(discount("di_1", "co_1", "cus_1"), 5)
    assert rows.parents == {}
    assert rows.standalone_discounts["di_1"]["coupon"] == "co_1"
    assert rows.standalone_discounts["di_1"]["subscription"] is None
    gone = to_rows({**discount("di_1", "co_1", "cus_1"), "deleted": True}, 6)
    assert gone.standalone_discounts == {"di_1": None}


@pytest.mark.parametrize("api_version, includes_releases", [
    (None, False),                 # listed or retrieved by the pipeline: the pinned version
    ("2026-10-28.endive", False),  # the pinned version
    ("2025-03-31.basil", False),   # basil itself: releases make no Refund, amount_refunded untouched
    ("2025-02-24.acacia", True),   # the last version before basil
    ("2024-06-20", True),
])
def test_charge_records_whether_its_amount_refunded_counts_released_authorizations(stripe_fixtures, api_version,
                                                                                   includes_releases):
    # Stripe changelog 2025-03-31.basil: partial captures and cancellations no longer create a Refund or
    # update amount_refunded; event snapshots keep the version they were rendered at
    from s2s_pipeline.stripe.api_versions import releases_counted_as_refunds
    row = to_rows(stripe_fixtures["charge"], 1, api_version).parents["charge"][0]
    assert row["amount_refunded_includes_releases"] is includes_releases
    assert releases_counted_as_refunds(api_version) is includes_releases
