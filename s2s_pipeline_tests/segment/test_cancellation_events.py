"""Scheduled cancellations and their events (contract v2 "Track events"), hand-computed.

Stripe (pinned API 2026-10-28.endive, stripe-python 16.1.0): ``cancel_at`` is
"a date in the future at which the subscription will automatically get
canceled"; ``cancel_at_period_end`` says whether it "will (if status=active)
or did (if status=canceled) cancel at the end of the current billing period";
setting the flag also sets ``cancel_at`` to the period end. The ``mrr`` trait
drops a subscription at scheduling (Stripe's default, REFERENCE §A.1), so the
events move MRR at the same moment: ``Subscription Canceled`` (immediate =
false) at scheduling, ``Subscription Reactivated`` when withdrawn,
``Subscription Ended`` (no MRR) when it finally ends.
"""

from __future__ import annotations

from s2s_pipeline.segment.event_mapping import map_event
from s2s_pipeline_tests.segment.event_builders import (  # noqa: F401 - fixtures ctx and fx
    DAY,
    NOW,
    ctx,
    fx,
    make_event,
    make_item,
    make_price,
    make_sub,
    plain,
)

PERIOD_END = NOW + 20 * DAY  # 2026-02-20T12:00:00Z, the items' current_period_end
SCHEDULE_FIELDS = {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None}


def pro(fx, quantity: int = 1, unit: int = 2000):
    return [make_item(fx, make_price(fx, "price_pro", unit), quantity=quantity, period_end=PERIOD_END)]


def updated(fx, sub, previous, **kw):
    return make_event(fx, "customer.subscription.updated", sub, previous=previous, **kw)


# -- scheduling ---------------------------------------------------------------------------------


def test_cancel_at_period_end_is_a_subscription_canceled_not_a_downgrade(fx, ctx):
    # $20/month; flag false -> true (Stripe also sets cancel_at = period end and canceled_at = now)
    sub = make_sub(fx, pro(fx), cancel_at_period_end=True, cancel_at=PERIOD_END, canceled_at=NOW)
    call = plain(map_event(updated(fx, sub, SCHEDULE_FIELDS), ctx))
    assert call.event == "Subscription Canceled"
    # the MRR lost is what it brought in before: 2,000¢ x 1 = 20.00
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "mrr": 20.0, "currency": "usd",
                               "cancel_at": "2026-02-20T12:00:00Z", "immediate": False}
    assert call.dedupe_key == "event:evt_1"


def test_cancel_at_alone_is_a_scheduled_cancellation(fx, ctx):
    # 2 seats x $20 = 40.00 lost; cancel_at 45 days out (2026-03-17T12:00:00Z), flag stays false
    sub = make_sub(fx, pro(fx, quantity=2), cancel_at=NOW + 45 * DAY, canceled_at=NOW)
    call = plain(map_event(updated(fx, sub, {"cancel_at": None, "canceled_at": None}), ctx))
    assert call.event == "Subscription Canceled"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "mrr": 40.0, "currency": "usd",
                               "cancel_at": "2026-03-17T12:00:00Z", "immediate": False}


def test_flag_without_cancel_at_ends_at_the_main_items_period_end(fx, ctx):
    # older shapes set only the flag: it ends at current_period_end (items, 2026-02-20T12:00:00Z)
    sub = make_sub(fx, pro(fx), cancel_at_period_end=True)
    call = plain(map_event(updated(fx, sub, {"cancel_at_period_end": False}), ctx))
    assert call.event == "Subscription Canceled"
    assert (call.properties["cancel_at"], call.properties["mrr"]) == ("2026-02-20T12:00:00Z", 20.0)


def test_scheduling_together_with_a_quantity_change_loses_the_mrr_it_had(fx, ctx):
    # one update: quantity 1 -> 3 and cancel at period end. Before: 1 x 2,000¢ = 20.00, after: 0
    # (scheduled). One call per event: the cancellation, with the MRR that left (20.00).
    sub = make_sub(fx, pro(fx, quantity=3), cancel_at_period_end=True, cancel_at=PERIOD_END, canceled_at=NOW)
    previous = {**SCHEDULE_FIELDS, "items": {"object": "list", "data": pro(fx, quantity=1)}}
    call = plain(map_event(updated(fx, sub, previous), ctx))
    assert call.event == "Subscription Canceled" and call.properties["mrr"] == 20.0


def test_trialing_subscription_set_to_cancel_loses_no_mrr(fx, ctx):
    # trialing counts 0 for MRR: the cancellation is reported, the MRR lost is 0.00
    sub = make_sub(fx, pro(fx), status="trialing", trial_start=NOW - 3 * DAY, trial_end=NOW + 11 * DAY,
                   cancel_at_period_end=True, cancel_at=NOW + 11 * DAY, canceled_at=NOW)
    call = plain(map_event(updated(fx, sub, SCHEDULE_FIELDS), ctx))
    assert call.event == "Subscription Canceled"
    assert (call.properties["mrr"], call.properties["cancel_at"]) == (0.0, "2026-02-11T12:00:00Z")


def test_moving_the_cancellation_date_sends_nothing(fx, ctx):
    # scheduled before and after: MRR 0 -> 0, no row matches
    sub = make_sub(fx, pro(fx), cancel_at=NOW + 40 * DAY, canceled_at=NOW - DAY)
    assert map_event(updated(fx, sub, {"cancel_at": NOW + 10 * DAY}), ctx) is None


def test_price_change_while_scheduled_sends_nothing(fx, ctx):
    # MRR is 0 before and after while scheduled; the reactivation will carry the new figure
    sub = make_sub(fx, pro(fx, quantity=5), cancel_at_period_end=True, cancel_at=PERIOD_END, canceled_at=NOW)
    previous = {"items": {"object": "list", "data": pro(fx, quantity=1)}}
    assert map_event(updated(fx, sub, previous), ctx) is None


# -- withdrawing ----------------------------------------------------------------------------------


def test_withdrawn_cancellation_is_a_subscription_reactivated(fx, ctx):
    sub = make_sub(fx, pro(fx))
    call = plain(map_event(updated(fx, sub, {"cancel_at_period_end": True, "cancel_at": PERIOD_END,
                                             "canceled_at": NOW - DAY}), ctx))
    assert call.event == "Subscription Reactivated"
    # the MRR restored: 2,000¢ x 1 = 20.00
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "mrr": 20.0, "currency": "usd"}


def test_withdrawn_cancel_at_restores_the_mrr_it_has_now(fx, ctx):
    # the quantity went 1 -> 4 while it was scheduled: restored 4 x 2,000¢ = 80.00
    sub = make_sub(fx, pro(fx, quantity=4))
    call = plain(map_event(updated(fx, sub, {"cancel_at": NOW + 9 * DAY, "canceled_at": NOW - DAY}), ctx))
    assert call.event == "Subscription Reactivated" and call.properties["mrr"] == 80.0


# -- ending ---------------------------------------------------------------------------------------


def test_deleted_without_a_schedule_is_an_immediate_cancellation(fx, ctx):
    # canceled at once: 2 x 2,000¢ = 40.00 leaves now; cancel_at = ended_at (2026-01-31T12:00:00Z)
    ended = make_sub(fx, pro(fx, quantity=2), status="canceled", ended_at=NOW, canceled_at=NOW)
    call = plain(map_event(make_event(fx, "customer.subscription.deleted", ended), ctx))
    assert call.event == "Subscription Canceled"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "mrr": 40.0, "currency": "usd",
                               "cancel_at": "2026-01-31T12:00:00Z", "immediate": True}


def test_deleted_after_a_scheduled_cancellation_is_subscription_ended(fx, ctx):
    # its 40.00 left at scheduling (Subscription Canceled, immediate false): no MRR now
    ended = make_sub(fx, pro(fx, quantity=2), status="canceled", ended_at=PERIOD_END, canceled_at=NOW,
                     cancel_at_period_end=True, cancel_at=PERIOD_END)
    call = plain(map_event(make_event(fx, "customer.subscription.deleted", ended, created=PERIOD_END), ctx))
    assert call.event == "Subscription Ended"
    assert call.properties == {"subscription_id": "sub_1", "plan": "Pro", "currency": "usd"}


def test_deleted_after_cancel_at_alone_is_subscription_ended(fx, ctx):
    ended = make_sub(fx, pro(fx), status="canceled", ended_at=NOW, canceled_at=NOW - 5 * DAY, cancel_at=NOW)
    assert plain(map_event(make_event(fx, "customer.subscription.deleted", ended), ctx)).event \
        == "Subscription Ended"


def test_deleted_during_trial_is_an_immediate_cancellation_of_nothing(fx, ctx):
    ended = make_sub(fx, pro(fx), status="canceled", trial_start=NOW - 3 * DAY, trial_end=NOW + 11 * DAY,
                     ended_at=NOW, canceled_at=NOW)
    call = plain(map_event(make_event(fx, "customer.subscription.deleted", ended), ctx))
    assert call.event == "Subscription Canceled"
    assert (call.properties["mrr"], call.properties["immediate"]) == (0.0, True)


def test_movements_of_one_subscription_sum_to_its_mrr(fx, ctx):
    """Started +20, Canceled (scheduled) -20, Reactivated +20, Upgraded +20 (20 -> 40): 40.00, the trait."""
    started = plain(map_event(make_event(fx, "customer.subscription.created", make_sub(fx, pro(fx)),
                                         event_id="evt_a"), ctx))
    scheduled = make_sub(fx, pro(fx), cancel_at_period_end=True, cancel_at=PERIOD_END, canceled_at=NOW)
    canceled = plain(map_event(updated(fx, scheduled, SCHEDULE_FIELDS, event_id="evt_b"), ctx))
    reactivated = plain(map_event(updated(fx, make_sub(fx, pro(fx)), {"cancel_at_period_end": True,
                                                                      "cancel_at": PERIOD_END,
                                                                      "canceled_at": NOW},
                                          event_id="evt_c"), ctx))
    upgraded = plain(map_event(updated(fx, make_sub(fx, pro(fx, quantity=2)),
                                       {"items": {"object": "list", "data": pro(fx)}}, event_id="evt_d"), ctx))
    assert [c.event for c in (started, canceled, reactivated, upgraded)] == [
        "Subscription Started", "Subscription Canceled", "Subscription Reactivated", "Subscription Upgraded"]
    total = (started.properties["mrr"] - canceled.properties["mrr"] + reactivated.properties["mrr"]
             + upgraded.properties["mrr"] - upgraded.properties["previous_mrr"])
    assert total == 40.0
