"""Property: the MRR movements of a customer's events sum to its ``mrr`` trait (contract v2 "Track events").

Random sequences of subscription changes (create active or trialing, quantity
and price up or down, schedule a cancellation by ``cancel_at_period_end`` or
by ``cancel_at``, withdraw it, delete, convert a trial, past_due and back) are
played as Stripe would report them: ``customer.subscription.*`` events whose
``data.object`` is the snapshot after the change and whose
``data.previous_attributes`` holds the old values of the changed top-level
fields (``items`` as the whole list object), built from Stripe's example
subscription. After every change, the movements of the mapped events so far
(Started, Trial Converted and Reactivated add their ``mrr``; Upgraded and
Downgraded add ``mrr - previous_mrr``; Canceled takes its ``mrr`` away; Trial
Started and Ended move nothing) must equal, to the cent, the ``mrr`` trait
that ``compute_customer_traits`` computes from the mirror rows of the latest
snapshots.

Prices are whole cents a month (the yearly 99,900¢ is 8,325¢ a month), so
per-subscription event figures add up without rounding; how one figure is
rounded is the ``mrr`` rule's own business (tests in traits/).
"""

from __future__ import annotations

from copy import deepcopy
from decimal import Decimal

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2s_pipeline.segment.event_mapping import map_event
from s2s_pipeline.stripe.normalize import to_rows
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.frames import TABLE_COLUMNS
from s2s_pipeline_tests.segment.event_builders import (
    DAY,
    NOW,
    FakeContext,
    make_event,
    make_item,
    make_price,
    make_sub,
)
from s2s_pipeline_tests.traits.builders import Mirror

CUSTOMER = "cus_1"
#: price id -> (interval, unit amount ¢, nickname); monthly figures are whole cents
PRICES = {"price_basic": ("month", 1500, "Basic"), "price_team": ("month", 4900, "Team"),
          "price_annual": ("year", 99_900, "Annual")}
PRICE_IDS = sorted(PRICES)

OPS = st.lists(st.tuples(
    st.sampled_from(["create", "create_trial", "quantity", "price", "schedule_flag", "schedule_at", "withdraw",
                     "delete", "convert", "past_due", "recover"]),
    st.integers(min_value=0, max_value=3),  # which subscription / which price
    st.integers(min_value=1, max_value=5),  # a quantity / days until cancel_at
), min_size=1, max_size=14)


def scheduled(sub: dict) -> bool:
    return bool(sub.get("cancel_at_period_end")) or sub.get("cancel_at") is not None


class Account:
    """One customer's subscriptions as Stripe holds them, and the events Stripe sends about them."""

    def __init__(self, fx: dict) -> None:
        self.fx = fx
        self.now = NOW
        self.subs: dict[str, dict] = {}
        self.events: list[dict] = []

    def price(self, index: int) -> dict:
        pid = PRICE_IDS[index % len(PRICE_IDS)]
        interval, unit, nickname = PRICES[pid]
        return make_price(self.fx, pid, unit, nickname=nickname, interval=interval)

    def item(self, sid: str, price: dict, quantity: int) -> dict:
        item = make_item(self.fx, price, quantity=quantity, item_id=f"si_{sid}", period_end=self.now + 30 * DAY)
        item["subscription"] = sid
        return item

    def emit(self, type_: str, sub: dict, previous: dict | None = None) -> None:
        self.events.append(make_event(self.fx, type_, sub, created=self.now, previous=previous,
                                      event_id=f"evt_{len(self.events):03d}"))

    def live(self, index: int) -> str | None:
        ids = [sid for sid, s in self.subs.items() if s["status"] != "canceled"]
        return ids[index % len(ids)] if ids else None

    def update(self, sid: str, changes: dict, items: list[dict] | None = None) -> None:
        old = self.subs[sid]
        new = deepcopy(old)
        new.update(changes)
        previous = {key: deepcopy(old.get(key)) for key in changes}
        if items is not None:
            new["items"] = dict(old["items"], data=items)
            previous["items"] = deepcopy(old["items"])
        self.subs[sid] = new
        self.emit("customer.subscription.updated", new, previous)

    def apply(self, op: str, which: int, n: int) -> None:
        self.now += DAY
        if op in ("create", "create_trial"):
            sid = f"sub_{len(self.subs) + 1}"
            trial = {"status": "trialing", "trial_start": self.now, "trial_end": self.now + 14 * DAY} \
                if op == "create_trial" else {}
            sub = make_sub(self.fx, [self.item(sid, self.price(which), n)], id=sid, customer=CUSTOMER,
                           created=self.now, start_date=self.now, **trial)
            self.subs[sid] = sub
            self.emit("customer.subscription.created", sub)
            return
        sid = self.live(which)
        if sid is None:
            return
        sub = self.subs[sid]
        item = sub["items"]["data"][0]
        if op == "quantity" and item["quantity"] != n:
            self.update(sid, {}, items=[self.item(sid, item["price"], n)])
        elif op == "price" and item["price"]["id"] != PRICE_IDS[(which + n) % len(PRICE_IDS)]:
            self.update(sid, {}, items=[self.item(sid, self.price(which + n), item["quantity"])])
        elif op == "schedule_flag" and not scheduled(sub):
            # Stripe sets cancel_at to the period end together with the flag
            self.update(sid, {"cancel_at_period_end": True, "cancel_at": item["current_period_end"],
                              "canceled_at": self.now})
        elif op == "schedule_at" and not scheduled(sub):
            self.update(sid, {"cancel_at": self.now + n * DAY, "canceled_at": self.now})
        elif op == "withdraw" and scheduled(sub):
            self.update(sid, {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None})
        elif op == "delete":
            ended = deepcopy(sub)
            ended.update(status="canceled", ended_at=self.now, canceled_at=sub.get("canceled_at") or self.now)
            self.subs[sid] = ended
            self.emit("customer.subscription.deleted", ended)
        elif op == "convert" and sub["status"] == "trialing":
            self.update(sid, {"status": "active", "trial_end": self.now})
        elif op == "past_due" and sub["status"] == "active":
            self.update(sid, {"status": "past_due"})
        elif op == "recover" and sub["status"] == "past_due":
            self.update(sid, {"status": "active"})

    def mrr_trait(self) -> Decimal:
        """The customer's ``mrr`` trait from the mirror rows of the latest snapshots."""
        frames = Mirror().customer(CUSTOMER).frames()
        tables = {"subscriptions": [], "subscription_items": [], "prices": {}}
        for snapshot in self.subs.values():
            rows = to_rows(snapshot, self.now)
            tables["subscriptions"] += rows.parents["subscription"]
            for item_rows in rows.items.values():
                tables["subscription_items"] += item_rows
            tables["prices"].update({p["id"]: p for p in rows.embedded.get("price", [])})
        tables["prices"] = list(tables["prices"].values())
        for table, rows in tables.items():
            setattr(frames, table, pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object)
                                                 for c in TABLE_COLUMNS[table]}))
        traits = compute_customer_traits(frames, TraitsConfig(), self.now).set_index("stripe_customer_id")
        return Decimal(str(traits.loc[CUSTOMER, "mrr"]))


def movement(call) -> Decimal:
    p = call.properties
    if call.event in ("Subscription Started", "Trial Converted", "Subscription Reactivated"):
        return Decimal(str(p["mrr"]))
    if call.event in ("Subscription Upgraded", "Subscription Downgraded"):
        return Decimal(str(p["mrr"])) - Decimal(str(p["previous_mrr"]))
    if call.event == "Subscription Canceled":
        return -Decimal(str(p["mrr"]))
    assert call.event in ("Trial Started", "Subscription Ended"), call.event
    return Decimal(0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_event_movements_sum_to_the_mrr_trait(stripe_fixtures, ops):
    account = Account(stripe_fixtures)
    ctx = FakeContext()
    total = Decimal(0)
    for op in ops:
        before = len(account.events)
        account.apply(*op)
        for event in account.events[before:]:
            call = map_event(event, ctx)
            if call is not None:
                assert call.stripe_customer_id == CUSTOMER
                total += movement(call)
        assert total == account.mrr_trait(), (op, [e["type"] for e in account.events])
