"""Order Completed / Order Refunded on captured money only (contract v2 "Track events"), hand-computed.

Stripe: ``paid`` is true "if the charge succeeded, or was successfully
authorized for later capture", ``captured`` says whether it has been captured,
``amount_captured`` "can be less than the amount attribute on the charge if a
partial capture was made" (stripe-python 16.1.0 ``Charge``). ``charge.captured``
"occurs whenever a previously uncaptured charge is captured". Since API
2025-03-31.basil a partial capture or a cancellation (manual or at expiry)
creates no Refund and sends no ``charge.refunded``; before it, Stripe created
refunds for them (reason ``expired_uncaptured_charge`` at expiry). Stripe's
own example charge (fixtures3) is an uncaptured authorization.
"""

from __future__ import annotations

from copy import deepcopy

from s2s_pipeline.segment.event_mapping import MAPPED_EVENT_TYPES, map_event
from s2s_pipeline.segment.messages import message_id
from s2s_pipeline_tests.segment.event_builders import (  # noqa: F401 - fixtures ctx and fx
    DAY,
    NOW,
    ctx,
    fx,
    make_charge,
    make_event,
    make_refund,
    plain,
    refund_row,
)

OLD_API = "2024-06-20"  # before 2025-03-31.basil: releases still created Refund objects


def authorization(fx, amount: int = 10_000, **kw) -> dict:
    """A $100 authorization not captured yet."""
    fields = {"amount_captured": 0, "captured": False, "paid": True, "status": "succeeded", **kw}
    return make_charge(fx, amount=amount, **fields)


def test_stripes_example_charge_is_an_uncaptured_authorization(fx, ctx):
    charge = deepcopy(fx["charge"])
    charge["customer"] = "cus_1"
    assert (charge["captured"], charge["amount_captured"], charge["paid"]) == (False, 0, True)
    assert map_event(make_event(fx, "charge.succeeded", charge), ctx) is None


def test_uncaptured_charge_succeeded_sends_nothing(fx, ctx):
    assert map_event(make_event(fx, "charge.succeeded", authorization(fx)), ctx) is None


def test_partial_capture_completes_the_order_for_the_captured_amount(fx, ctx):
    # authorized 10,000¢, captured 6,000¢: revenue = total = 60.00 (the customer paid $60)
    captured = authorization(fx, amount_captured=6000, captured=True)
    call = plain(map_event(make_event(fx, "charge.captured", captured, event_id="evt_cap",
                                      previous={"amount_captured": 0, "captured": False}), ctx))
    assert call.event == "Order Completed"
    assert call.properties == {"order_id": "ch_1", "revenue": 60.0, "total": 60.0, "currency": "usd"}
    assert call.dedupe_key == "charge:ch_1:succeeded" and call.needs_attribution is True


def test_one_order_per_charge_whichever_event_arrives(fx, ctx):
    # an automatic capture says it in charge.succeeded; a later charge.captured of the same charge
    # (or the history path) yields the same messageId: 5,000¢ -> 50.00 once
    charge = make_charge(fx, amount=5000)
    a = plain(map_event(make_event(fx, "charge.succeeded", charge, event_id="evt_s"), ctx))
    b = plain(map_event(make_event(fx, "charge.captured", charge, event_id="evt_c"), ctx))
    assert a.message_id == b.message_id == message_id("track", "charge:ch_1:succeeded")
    assert a.properties == b.properties == {"order_id": "ch_1", "revenue": 50.0, "total": 50.0, "currency": "usd"}


def test_order_completed_from_older_payloads_without_amount_captured(fx, ctx):
    charge = make_charge(fx, amount=2500)
    del charge["amount_captured"]  # not rendered by very old API versions: captured -> the amount
    call = plain(map_event(make_event(fx, "charge.succeeded", charge, api_version="2019-12-03"), ctx))
    assert call.properties["revenue"] == 25.0


def test_charge_captured_is_a_mapped_event_type():
    assert {"charge.captured", "charge.succeeded", "refund.created", "charge.refunded"} <= MAPPED_EVENT_TYPES


def test_refund_of_captured_money_is_reported_once(fx, ctx):
    # captured 6,000¢ of 10,000¢, then refunded 1,000¢: Order Refunded total 10.00, one messageId
    charge = authorization(fx, amount_captured=6000, captured=True, amount_refunded=1000)
    refund = make_refund(fx, "re_1", 1000, NOW)
    ctx.refunds["ch_1"] = [refund_row(refund)]
    ctx.charges["ch_1"] = {"id": "ch_1", "customer": "cus_1", "captured": True, "amount": 10_000,
                           "amount_captured": 6000}
    ctx.charge_customers["ch_1"] = "cus_1"
    created = plain(map_event(make_event(fx, "refund.created", refund, event_id="evt_rc"), ctx))
    refunded = plain(map_event(make_event(fx, "charge.refunded", charge, event_id="evt_cr",
                                          previous={"amount_refunded": 0}), ctx))
    assert created.message_id == refunded.message_id == message_id("track", "refund:re_1")
    assert created.properties == {"order_id": "ch_1", "refund_id": "re_1", "total": 10.0, "currency": "usd",
                                  "reason": "requested_by_customer"}


def test_expired_authorization_is_never_a_refund(fx, ctx):
    # old API: at expiry Stripe refunded the whole 5,000¢ authorization itself
    charge = authorization(fx, amount=5000, refunded=True, amount_refunded=5000)
    expiry = make_refund(fx, "re_exp", 5000, NOW, reason="expired_uncaptured_charge")
    ctx.refunds["ch_1"] = [refund_row(expiry)]
    ctx.charges["ch_1"] = {"id": "ch_1", "customer": "cus_1", "captured": False, "amount": 5000,
                           "amount_captured": 0}
    ctx.charge_customers["ch_1"] = "cus_1"
    assert map_event(make_event(fx, "refund.created", expiry, api_version=OLD_API), ctx) is None
    assert map_event(make_event(fx, "charge.refunded", charge, api_version=OLD_API,
                                previous={"amount_refunded": 0, "refunded": False}), ctx) is None
    # the pinned API sends charge.expired instead, which is no order event
    assert map_event(make_event(fx, "charge.expired", authorization(fx, amount=5000)), ctx) is None


def test_refund_of_an_uncaptured_charge_is_a_released_authorization(fx, ctx):
    # a canceled authorization (old API: refunded, reason not set); the charge never captured money
    release = make_refund(fx, "re_rel", 10_000, NOW, reason=None)
    ctx.charges["ch_1"] = {"id": "ch_1", "customer": "cus_1", "captured": False, "amount": 10_000,
                           "amount_captured": 0}
    ctx.charge_customers["ch_1"] = "cus_1"
    assert map_event(make_event(fx, "refund.created", release, api_version=OLD_API), ctx) is None
    # an expanded charge on the refund says the same without the mirror
    ctx.charges.clear()
    expanded = dict(release, charge=authorization(fx))
    assert map_event(make_event(fx, "refund.created", expanded, api_version=OLD_API), ctx) is None


def test_old_api_partial_capture_remainder_is_not_a_refund(fx, ctx):
    # old API: capturing 6,000¢ of 10,000¢ refunded the 4,000¢ remainder as the charge's first refund;
    # a customer refund of 1,000¢ later is a real refund
    remainder = make_refund(fx, "re_rest", 4000, NOW, reason=None)
    later = make_refund(fx, "re_cust", 1000, NOW + DAY)
    ctx.refunds["ch_1"] = [refund_row(remainder), refund_row(later)]
    ctx.charges["ch_1"] = {"id": "ch_1", "customer": "cus_1", "captured": True, "amount": 10_000,
                           "amount_captured": 6000}
    ctx.charge_customers["ch_1"] = "cus_1"
    assert map_event(make_event(fx, "refund.created", remainder, api_version=OLD_API), ctx) is None
    charge = authorization(fx, amount_captured=6000, captured=True, amount_refunded=4000)
    assert map_event(make_event(fx, "charge.refunded", charge, api_version=OLD_API, created=NOW,
                                previous={"amount_refunded": 0}), ctx) is None
    call = plain(map_event(make_event(fx, "refund.created", later, api_version=OLD_API, event_id="evt_2",
                                      created=NOW + DAY), ctx))
    assert (call.properties["refund_id"], call.properties["total"]) == ("re_cust", 10.0)


def test_pinned_api_refund_equal_to_the_uncaptured_part_is_a_real_refund(fx, ctx):
    # pinned API: a partial capture creates no refund, so refunding 4,000¢ of the 6,000¢ captured
    # (equal to the 4,000¢ never captured, by chance) is money returned: 40.00
    refund = make_refund(fx, "re_1", 4000, NOW)
    ctx.refunds["ch_1"] = [refund_row(refund)]
    ctx.charges["ch_1"] = {"id": "ch_1", "customer": "cus_1", "captured": True, "amount": 10_000,
                           "amount_captured": 6000}
    ctx.charge_customers["ch_1"] = "cus_1"
    call = plain(map_event(make_event(fx, "refund.created", refund), ctx))
    assert call.properties["total"] == 40.0


def test_dispute_customer_comes_from_its_charge(fx, ctx):
    dispute = deepcopy(fx["dispute"])
    assert "customer" not in dispute  # Stripe's Dispute has no customer field
    dispute.update(charge=make_charge(fx, customer="cus_9"), created=NOW)  # expanded charge
    call = plain(map_event(make_event(fx, "charge.dispute.created", dispute), ctx))
    assert call.stripe_customer_id == "cus_9"
    # 1,000¢ disputed -> 10.00
    assert call.properties == {"charge_id": "ch_1", "amount": 10.0, "currency": "usd", "reason": "general"}


def test_history_charge_rows_follow_the_same_rules(fx, ctx):
    """The history path wraps mirror rows (typed columns) as charge.succeeded."""
    row = {"id": "ch_h", "object": "charge", "customer": "cus_1", "status": "succeeded", "currency": "usd",
           "amount": 10_000, "amount_captured": 0, "amount_refunded": 0, "captured": False, "created": NOW}
    event = {"id": "history:ch_h", "object": "event", "type": "charge.succeeded", "created": NOW,
             "data": {"object": row}}
    assert map_event(event, ctx) is None
    row.update(captured=True, amount_captured=7500)
    call = plain(map_event(event, ctx))
    assert call.properties["revenue"] == 75.0 and call.dedupe_key == "charge:ch_h:succeeded"
