"""Stripe event -> track call mapping (contract "Track events"), on payloads built from Stripe's fixtures."""

from __future__ import annotations

import itertools
from copy import deepcopy

import pytest

from s2s_pipeline.segment.event_mapping import MAPPED_EVENT_TYPES, map_event
from s2s_pipeline.segment.messages import message_id
from s2s_pipeline.stripe.normalize import price_row
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline_tests.segment.event_builders import (  # noqa: F401 - fixtures ctx and fx
    DAY,
    NOW,
    ctx,
    fx,
    make_charge,
    make_event,
    make_item,
    make_price,
    make_refund,
    make_sub,
    plain,
    refund_row,
)
from s2s_pipeline_tests.traits.stripe_objects import tax_rate


# -- customer.subscription.created ------------------------------------------------------------


def test_trial_started_for_a_trialing_subscription(fx, ctx):
    sub = make_sub(fx, [make_item(fx, make_price(fx, "price_pro", 2000))], status="trialing",
                   trial_start=NOW, trial_end=NOW + 14 * DAY)
    call = plain(map_event(make_event(fx, "customer.subscription.created", sub), ctx))
    assert call.event == "Trial Started"
    assert call.stripe_customer_id == "cus_1"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "trial_end_date": "2026-02-14T12:00:00Z"}
    assert call.timestamp == NOW
    assert call.dedupe_key == "event:evt_1" and call.needs_attribution is False


def test_subscription_started_otherwise(fx, ctx):
    sub = make_sub(fx, [make_item(fx, make_price(fx, "price_team", 2500, nickname="Team"), quantity=4)])
    call = plain(map_event(make_event(fx, "customer.subscription.created", sub), ctx))
    assert call.event == "Subscription Started"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Team", "mrr": 100.0, "currency": "usd",
                               "billing_interval": "month"}


def test_subscription_started_yearly_jpy_and_plan_fallbacks(fx, ctx):
    price = make_price(fx, "price_yearly", 120_000, interval="year", currency="jpy", product="prod_unknown")
    sub = make_sub(fx, [make_item(fx, price)], currency="jpy")
    call = plain(map_event(make_event(fx, "customer.subscription.created", sub), ctx))
    # no nickname, product unknown -> the price id; JPY has no minor unit
    assert call.properties == {"subscription_id": "sub_1", "plan": "price_yearly", "mrr": 10_000.0,
                               "currency": "jpy", "billing_interval": "year"}


@pytest.mark.parametrize("unit_amount_decimal, currency, interval, tax_percent, mrr", [
    # KWD 6.900 a year: 6900 / 12 = 575 fils = 57.5 steps of 10 fils -> 58 (half-even) = 0.58
    ("6900", "kwd", "year", None, 0.58),
    # 565.4 fils a month: 56.54 steps -> 57 = 0.57 (not 565 fils first, then 56.5 -> 56 = 0.56)
    ("565.4", "kwd", "month", None, 0.57),
    # BHD 20.070 a month incl. 10% tax: 20070 x 100/110 = 18245.45... fils = 1824.545... steps -> 1825 = 18.25
    ("20070", "bhd", "month", 10.0, 18.25),
])
def test_three_decimal_mrr_is_rounded_once_as_the_trait_is(fx, ctx, unit_amount_decimal, currency, interval,
                                                           tax_percent, mrr):
    price = make_price(fx, "price_3dp", 0, nickname="Gulf", interval=interval, currency=currency)
    price.update(unit_amount=None, unit_amount_decimal=unit_amount_decimal)
    item = make_item(fx, price)
    if tax_percent is not None:
        item["tax_rates"] = [tax_rate("txr_incl", tax_percent, True)]
    sub = make_sub(fx, [item], currency=currency)
    call = plain(map_event(make_event(fx, "customer.subscription.created", sub), ctx))
    assert (call.event, call.properties["mrr"], call.properties["currency"]) == \
        ("Subscription Started", mrr, currency)


def test_plan_is_the_main_item_and_metered_items_are_excluded(fx, ctx):
    base = make_price(fx, "price_base", 1000, nickname="Base")
    seats = make_price(fx, "price_seats", 500, nickname="Seats")
    calls = make_price(fx, "price_calls", 9, nickname="API calls")
    calls["recurring"] = dict(calls["recurring"], usage_type="metered")
    sub = make_sub(fx, [make_item(fx, base, item_id="si_a"), make_item(fx, seats, quantity=4, item_id="si_b"),
                        make_item(fx, calls, quantity=None, item_id="si_c")])
    call = plain(map_event(make_event(fx, "customer.subscription.created", sub), ctx))
    assert call.properties["plan"] == "Seats" and call.properties["mrr"] == 30.0


def test_subscription_started_incomplete_has_zero_mrr(fx, ctx):
    sub = make_sub(fx, [make_item(fx, make_price(fx, "price_pro", 2000))], status="incomplete")
    call = plain(map_event(make_event(fx, "customer.subscription.created", sub), ctx))
    assert call.event == "Subscription Started" and call.properties["mrr"] == 0.0


# -- customer.subscription.updated --------------------------------------------------------------


def test_trial_converted_not_upgraded_although_mrr_rose(fx, ctx):
    price = make_price(fx, "price_pro", 2000)
    old_items = {"data": [make_item(fx, price, period_end=NOW)], "object": "list"}
    sub = make_sub(fx, [make_item(fx, price, period_end=NOW + 30 * DAY)], trial_start=NOW - 14 * DAY, trial_end=NOW)
    event = make_event(fx, "customer.subscription.updated", sub,
                       previous={"status": "trialing", "items": old_items, "latest_invoice": None})
    call = plain(map_event(event, ctx))
    assert call.event == "Trial Converted"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "mrr": 20.0, "currency": "usd"}


def test_trial_to_paused_sends_nothing(fx, ctx):
    sub = make_sub(fx, [make_item(fx, make_price(fx, "price_pro", 2000))], status="paused")
    event = make_event(fx, "customer.subscription.updated", sub, previous={"status": "trialing"})
    assert map_event(event, ctx) is None


def test_upgrade_via_quantity_change_in_previous_items(fx, ctx):
    price = make_price(fx, "price_pro", 2000)
    sub = make_sub(fx, [make_item(fx, price, quantity=3)])
    previous = {"items": {"data": [make_item(fx, price, quantity=1)], "has_more": False, "object": "list"}}
    call = plain(map_event(make_event(fx, "customer.subscription.updated", sub, previous=previous), ctx))
    assert call.event == "Subscription Upgraded"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "previous_plan": "Pro", "mrr": 60.0,
                               "previous_mrr": 20.0, "currency": "usd"}


def test_downgrade_via_price_change(fx, ctx):
    business = make_price(fx, "price_business", 5000, nickname="Business")
    starter = make_price(fx, "price_starter", 2000, nickname="Starter")
    sub = make_sub(fx, [make_item(fx, starter)])
    previous = {"items": {"data": [make_item(fx, business)], "object": "list"}}
    call = plain(map_event(make_event(fx, "customer.subscription.updated", sub, previous=previous), ctx))
    assert call.event == "Subscription Downgraded"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Starter", "previous_plan": "Business",
                               "mrr": 20.0, "previous_mrr": 50.0, "currency": "usd"}


def test_equal_mrr_sends_nothing(fx, ctx):
    price = make_price(fx, "price_pro", 2000)
    renewed = make_sub(fx, [make_item(fx, price, period_end=NOW + 30 * DAY)], latest_invoice="in_2")
    previous = {"items": {"data": [make_item(fx, price, period_end=NOW)], "object": "list"}, "latest_invoice": "in_1"}
    assert map_event(make_event(fx, "customer.subscription.updated", renewed, previous=previous), ctx) is None
    recovered = make_sub(fx, [make_item(fx, price)])
    assert map_event(make_event(fx, "customer.subscription.updated", recovered,
                                previous={"status": "past_due"}), ctx) is None


def test_without_mrr_fields_in_previous_attributes_the_stored_mrr_is_before(fx, ctx):
    sub = make_sub(fx, [make_item(fx, make_price(fx, "price_pro", 2000))], metadata={"team": "a"})
    event = make_event(fx, "customer.subscription.updated", sub, previous={"metadata": {"team": None}})
    assert map_event(event, ctx) is None  # nothing stored: no movement can be told
    ctx.stored["sub_1"] = (1000, "usd", "Old")
    call = plain(map_event(event, ctx))
    assert call.event == "Subscription Upgraded"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "previous_plan": "Old", "mrr": 20.0,
                               "previous_mrr": 10.0, "currency": "usd"}
    ctx.stored["sub_1"] = (2000, "usd", "Pro")
    assert map_event(event, ctx) is None


def test_tiered_price_gets_its_tiers_from_the_context(fx, ctx):
    tiers = [{"up_to": 5, "unit_amount": 1200, "unit_amount_decimal": "1200", "flat_amount": None,
              "flat_amount_decimal": None},
             {"up_to": None, "unit_amount": 1000, "unit_amount_decimal": "1000", "flat_amount": None,
              "flat_amount_decimal": None}]
    collapsed = make_price(fx, "price_seats", None, nickname="Seats", billing_scheme="tiered",
                           tiers_mode="graduated", unit_amount_decimal=None)  # events never carry tiers
    ctx.prices["price_seats"] = price_row({**collapsed, "tiers": tiers}, NOW - 100 * DAY)
    sub = make_sub(fx, [make_item(fx, collapsed, quantity=8)])
    previous = {"items": {"data": [make_item(fx, collapsed, quantity=5)], "object": "list"}}
    call = plain(map_event(make_event(fx, "customer.subscription.updated", sub, previous=previous), ctx))
    assert call.event == "Subscription Upgraded"
    assert (call.properties["mrr"], call.properties["previous_mrr"]) == (90.0, 60.0)  # 5x12 + 3x10
    assert call.properties["plan"] == "Seats"


def test_forever_coupon_behind_a_collapsed_discount_lowers_mrr(fx, ctx):
    ctx.coupons["co_forever"] = {"id": "co_forever", "percent_off": 20.0, "amount_off": None, "currency": None,
                                 "duration": "forever"}
    ctx.coupons["co_once"] = {"id": "co_once", "percent_off": 50.0, "amount_off": None, "currency": None,
                              "duration": "once"}
    ctx.discounts["di_forever"] = {"id": "di_forever", "coupon": "co_forever", "start": NOW - 60, "end": None}
    ctx.discounts["di_once"] = {"id": "di_once", "coupon": "co_once", "start": NOW - 60, "end": None}
    items = [make_item(fx, make_price(fx, "price_pro", 5000))]
    sub = make_sub(fx, items, discounts=["di_forever"])  # subscription.discounts are ids in events
    call = plain(map_event(make_event(fx, "customer.subscription.updated", sub, previous={"discounts": []}), ctx))
    assert call.event == "Subscription Downgraded"
    assert (call.properties["mrr"], call.properties["previous_mrr"]) == (40.0, 50.0)
    # a once coupon does not count for MRR by default ...
    sub = make_sub(fx, items, discounts=["di_once"])
    assert map_event(make_event(fx, "customer.subscription.updated", sub, previous={"discounts": []}), ctx) is None
    # ... but does with the all-in-effect rule
    call = map_event(make_event(fx, "customer.subscription.updated", sub, previous={"discounts": []}), ctx,
                     TraitsConfig(mrr_coupon_rule="all_in_effect"))
    assert call.event == "Subscription Downgraded" and call.properties["mrr"] == 25.0


def test_removed_discount_the_context_cannot_resolve_falls_back_to_the_stored_mrr(fx, ctx):
    sub = make_sub(fx, [make_item(fx, make_price(fx, "price_pro", 5000))])
    event = make_event(fx, "customer.subscription.updated", sub, previous={"discounts": ["di_gone"]})
    ctx.stored["sub_1"] = (4000, "usd", "Pro")
    call = plain(map_event(event, ctx))
    assert call.event == "Subscription Upgraded"
    assert (call.properties["mrr"], call.properties["previous_mrr"]) == (50.0, 40.0)


def test_out_of_order_updates_map_from_their_own_payload(fx, ctx):
    price = make_price(fx, "price_pro", 2000)
    items = {q: {"data": [make_item(fx, price, quantity=q)], "object": "list"} for q in (1, 2, 3)}
    older = make_event(fx, "customer.subscription.updated", make_sub(fx, items[2]["data"]), created=NOW,
                       event_id="evt_older", previous={"items": items[1]})
    newer = make_event(fx, "customer.subscription.updated", make_sub(fx, items[3]["data"]), created=NOW + 60,
                       event_id="evt_newer", previous={"items": items[2]})
    ctx.stored["sub_1"] = (6000, "usd", "Pro")  # the mirror already holds the newest state
    newer_first = [map_event(newer, ctx), map_event(older, ctx)]
    in_order = [map_event(older, ctx), map_event(newer, ctx)]
    assert newer_first == in_order[::-1]
    late = plain(newer_first[1])
    assert late.event == "Subscription Upgraded" and late.timestamp == NOW
    assert (late.properties["mrr"], late.properties["previous_mrr"]) == (40.0, 20.0)
    assert late.dedupe_key == "event:evt_older"


def test_legacy_api_version_subscription_shapes(fx, ctx):
    """Events keep their API version: top-level plan/quantity, item.plan, discount.coupon."""
    plan = deepcopy(fx["event"]["data"]["object"])  # a Plan object (object: plan), unit 2000 usd / month
    plan.update(id="plan_pro", product="prod_pro")
    coupon = deepcopy(fx["coupon"]) if "coupon" in fx else {"object": "coupon"}
    coupon.update(id="co_half", percent_off=50.0, amount_off=None, currency=None, duration="forever")
    sub = {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active", "currency": "usd",
           "plan": plan, "quantity": 2, "current_period_start": NOW - 10 * DAY, "current_period_end": NOW + 20 * DAY,
           "cancel_at_period_end": False, "ended_at": None, "trial_start": None, "trial_end": None,
           "discount": {"id": "di_old", "object": "discount", "coupon": coupon, "start": NOW - DAY, "end": None},
           "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "plan": plan,
                                                 "quantity": 2, "created": NOW - 40 * DAY}]}}
    event = make_event(fx, "customer.subscription.updated", sub, previous={"quantity": 1},
                       api_version="2017-08-15")
    call = plain(map_event(event, ctx))
    assert call.event == "Subscription Upgraded"
    assert (call.properties["mrr"], call.properties["previous_mrr"]) == (20.0, 10.0)
    assert call.properties["plan"] == "Pro"


# -- customer.subscription.deleted -------------------------------------------------------------


# Scheduled cancellations (Canceled at scheduling, Reactivated, Ended): test_cancellation_events.py


def test_deleted_during_trial_had_no_mrr(fx, ctx):
    items = [make_item(fx, make_price(fx, "price_pro", 2000))]
    ended = make_sub(fx, items, status="canceled", trial_start=NOW - 14 * DAY, trial_end=NOW, ended_at=NOW,
                     canceled_at=NOW)
    call = plain(map_event(make_event(fx, "customer.subscription.deleted", ended), ctx))
    assert call.event == "Subscription Canceled" and call.properties["mrr"] == 0.0


def test_deleted_without_priceable_items_uses_the_stored_mrr(fx, ctx):
    ended = make_sub(fx, [], status="canceled", ended_at=NOW, canceled_at=NOW)
    ctx.stored["sub_1"] = (4500, "usd", "Pro")
    call = plain(map_event(make_event(fx, "customer.subscription.deleted", ended), ctx))
    assert call.properties["mrr"] == 45.0 and call.properties["currency"] == "usd"


# -- payments -----------------------------------------------------------------------------------


def _failed_invoice(fx, **kw) -> dict:
    inv = deepcopy(fx["invoice"])
    inv.update(id="in_1", customer="cus_1", status="open", amount_due=4999, currency="usd", attempt_count=2,
               attempted=True, next_payment_attempt=NOW + 3 * DAY)
    inv.update(kw)
    return inv


def test_invoice_payment_failed_with_error_and_next_attempt(fx, ctx):
    ctx.invoice_errors["in_1"] = {"code": "card_declined", "message": "Your card was declined."}
    call = plain(map_event(make_event(fx, "invoice.payment_failed", _failed_invoice(fx)), ctx))
    assert call.event == "Payment Failed"
    assert call.properties == {"invoice_id": "in_1", "amount": 49.99, "currency": "usd", "attempt_count": 2,
                               "failure_code": "card_declined", "failure_message": "Your card was declined.",
                               "next_payment_attempt": "2026-02-03T12:00:00Z"}
    assert call.dedupe_key == "event:evt_1"


def test_invoice_payment_failed_unknown_error_last_attempt(fx, ctx):
    inv = _failed_invoice(fx, next_payment_attempt=None, attempt_count=4)
    call = plain(map_event(make_event(fx, "invoice.payment_failed", inv), ctx))
    assert call.properties["failure_code"] is None and call.properties["failure_message"] is None
    assert call.properties["next_payment_attempt"] is None and call.properties["attempt_count"] == 4


def test_charge_failed_without_invoice_is_a_payment_failed(fx, ctx):
    charge = make_charge(fx, "ch_9", amount=1500, status="failed", paid=False, captured=False,
                         failure_code="card_declined", failure_message="Your card has insufficient funds.")
    call = plain(map_event(make_event(fx, "charge.failed", charge), ctx))
    assert call.event == "Payment Failed"
    assert call.properties == {"charge_id": "ch_9", "invoice_id": None, "amount": 15.0, "currency": "usd",
                               "attempt_count": 1, "failure_code": "card_declined",
                               "failure_message": "Your card has insufficient funds.", "next_payment_attempt": None}


def test_charge_failed_of_an_invoice_is_left_to_invoice_payment_failed(fx, ctx):
    charge = make_charge(fx, "ch_inv", status="failed", failure_code="card_declined")
    ctx.invoice_charges.add("ch_inv")
    assert map_event(make_event(fx, "charge.failed", charge), ctx) is None
    # older API versions say it on the charge itself
    old = make_charge(fx, "ch_old", status="failed", invoice="in_7")
    assert map_event(make_event(fx, "charge.failed", old, api_version="2024-06-20"), ctx) is None
    standalone = make_charge(fx, "ch_old2", status="failed", invoice=None)
    ctx.invoice_charges.add("ch_old2")  # the payload's own answer wins
    assert map_event(make_event(fx, "charge.failed", standalone, api_version="2024-06-20"), ctx).event \
        == "Payment Failed"


@pytest.mark.parametrize("currency, amount, major", [("jpy", 3000, 3000.0), ("usd", 5000, 50.0),
                                                     ("usd", 1999, 19.99), ("kwd", 12_340, 12.34)])
def test_order_completed(fx, ctx, currency, amount, major):
    charge = make_charge(fx, amount=amount, currency=currency.upper() if currency == "jpy" else currency)
    call = plain(map_event(make_event(fx, "charge.succeeded", charge), ctx))
    assert call.event == "Order Completed"
    assert call.properties == {"order_id": "ch_1", "revenue": major, "total": major, "currency": currency}
    assert call.needs_attribution is True


def test_charge_of_no_customer_maps_to_nothing(fx, ctx):
    charge = make_charge(fx, customer=None)
    assert map_event(make_event(fx, "charge.succeeded", charge), ctx) is None
    assert map_event(make_event(fx, "charge.failed", dict(charge, status="failed")), ctx) is None


# -- refunds and disputes ----------------------------------------------------------------------


def _refund_events(fx, refund: dict, charge: dict, previous_refunded: int, n: int):
    created = make_event(fx, "refund.created", refund, created=refund["created"], event_id=f"evt_rc{n}")
    refunded = make_event(fx, "charge.refunded", charge, created=refund["created"], event_id=f"evt_cr{n}",
                          previous={"amount_refunded": previous_refunded})
    return created, refunded


def test_refund_double_event_gives_one_message_id_in_either_order(fx, ctx):
    refund = make_refund(fx, "re_1", 5000, NOW)
    charge = make_charge(fx, amount_refunded=5000, refunded=True)
    ctx.refunds["ch_1"] = [refund_row(refund)]
    ctx.charge_customers["ch_1"] = "cus_1"  # refunds carry no customer: the mirror's charge tells
    rc, cr = _refund_events(fx, refund, charge, 0, 1)
    for first, second in ((rc, cr), (cr, rc)):
        a, b = plain(map_event(first, ctx)), plain(map_event(second, ctx))
        assert a.message_id == b.message_id == message_id("track", "refund:re_1")
        assert a.properties == b.properties == {"order_id": "ch_1", "refund_id": "re_1", "total": 50.0,
                                                "currency": "usd", "reason": "requested_by_customer"}
        assert a.event == "Order Refunded" and a.dedupe_key == "refund:re_1"


def test_charge_refunded_before_the_refund_is_known_sends_nothing(fx, ctx):
    refund = make_refund(fx, "re_1", 5000, NOW)
    rc, cr = _refund_events(fx, refund, make_charge(fx, amount_refunded=5000, refunded=True), 0, 1)
    ctx.charge_customers["ch_1"] = "cus_1"
    sent = {c.message_id for c in (map_event(cr, ctx), map_event(rc, ctx)) if c is not None}
    assert sent == {message_id("track", "refund:re_1")}


def test_two_partial_refunds_give_two_message_ids(fx, ctx):
    r1 = make_refund(fx, "re_1", 500, NOW)
    r2 = make_refund(fx, "re_2", 300, NOW + 3600, reason="duplicate")
    ctx.refunds["ch_1"] = [refund_row(r1), refund_row(r2)]  # the mirror after the sync knows both
    ctx.charge_customers["ch_1"] = "cus_1"
    e1 = _refund_events(fx, r1, make_charge(fx, amount_refunded=500), 0, 1)
    e2 = _refund_events(fx, r2, make_charge(fx, amount_refunded=800), 500, 2)
    events = [*e1, *e2]
    for order in itertools.permutations(events):
        calls = [plain(map_event(e, ctx)) for e in order]
        assert {c.message_id for c in calls} == {message_id("track", "refund:re_1"),
                                                 message_id("track", "refund:re_2")}
    first_charge_refunded = plain(map_event(e1[1], ctx))
    assert first_charge_refunded.properties["refund_id"] == "re_1"  # not the later refund
    assert first_charge_refunded.properties["total"] == 5.0
    assert plain(map_event(e2[1], ctx)).properties["reason"] == "duplicate"


def test_same_second_partial_refunds_are_told_apart_by_the_refunded_amount(fx, ctx):
    r1 = make_refund(fx, "re_b", 500, NOW)
    r2 = make_refund(fx, "re_a", 300, NOW)
    ctx.refunds["ch_1"] = [refund_row(r1), refund_row(r2)]
    event = make_event(fx, "charge.refunded", make_charge(fx, amount_refunded=500), previous={"amount_refunded": 0})
    assert map_event(event, ctx).properties["refund_id"] == "re_b"
    event = make_event(fx, "charge.refunded", make_charge(fx, amount_refunded=800),
                       previous={"amount_refunded": 500}, event_id="evt_2")
    assert map_event(event, ctx).properties["refund_id"] == "re_a"


def test_charge_refunded_reads_refunds_listed_in_older_payloads(fx, ctx):
    refund = make_refund(fx, "re_1", 2000, NOW - 60)
    charge = make_charge(fx, amount_refunded=2000,
                         refunds={"object": "list", "data": [refund], "has_more": False, "url": "/v1/x"})
    call = plain(map_event(make_event(fx, "charge.refunded", charge, api_version="2020-08-27"), ctx))
    assert call.dedupe_key == "refund:re_1" and call.properties["total"] == 20.0


def test_failed_refund_is_not_reported(fx, ctx):
    refund = make_refund(fx, "re_1", 2000, NOW, status="failed")
    ctx.charge_customers["ch_1"] = "cus_1"
    assert map_event(make_event(fx, "refund.created", refund), ctx) is None


def test_dispute_created(fx, ctx):
    dispute = deepcopy(fx["dispute"])
    dispute.update(charge="ch_1", created=NOW)
    event = make_event(fx, "charge.dispute.created", dispute)
    assert map_event(event, ctx) is None  # nobody to attribute it to
    ctx.charge_customers["ch_1"] = "cus_1"
    call = plain(map_event(event, ctx))
    assert call.event == "Dispute Created" and call.stripe_customer_id == "cus_1"
    assert call.properties == {"charge_id": "ch_1", "amount": 10.0, "currency": "usd", "reason": "general"}


# -- everything else ------------------------------------------------------------------------------


def test_unknown_and_unmapped_event_types_map_to_nothing(fx, ctx):
    assert map_event(deepcopy(fx["event"]), ctx) is None  # plan.created, Stripe's example event
    assert map_event(make_event(fx, "invoice.paid", _failed_invoice(fx)), ctx) is None
    assert map_event(make_event(fx, "customer.subscription.trial_will_end", make_sub(fx, [])), ctx) is None
    assert "invoice.paid" not in MAPPED_EVENT_TYPES and "refund.created" in MAPPED_EVENT_TYPES


def test_same_event_same_message_id(fx, ctx):
    sub = make_sub(fx, [make_item(fx, make_price(fx, "price_pro", 2000))])
    event = make_event(fx, "customer.subscription.created", sub, event_id="evt_same")
    a, b = map_event(event, ctx), map_event(deepcopy(event), ctx)
    assert a == b and a.message_id == message_id("track", "event:evt_same")
    other = map_event(make_event(fx, "customer.subscription.created", sub, event_id="evt_other"), ctx)
    assert other.message_id != a.message_id
    assert map_event(event, ctx).message_id == a.message_id
