"""Property: on real billing setups, event MRR and the ``mrr`` trait agree to the cent (contract v2).

The sibling of ``test_mrr_reconciliation`` on the setups of issue #10, played
through a real state store (``mirror_world``): the subscription is mirrored as
the client lists it after each change (discounts and their coupons expanded,
the catalogue listed with ``currency_options`` and ``applies_to``) and the
event comes as Stripe sends it (never expanded). One EUR customer, with or
without a customer-level ``forever`` coupon of 20%, has subscriptions on
these setups (monthly figures per unit of quantity q; all whole cents, so
per-subscription figures add up without rounding):

- ``tax_rate``: EUR 12000 with a 20% inclusive tax rate on the item:
  12000 x 100/120 = 10000 q (x 0.8 = 8000 q with the customer's coupon);
- ``currency_options``: a USD 1000 price whose EUR option is 900: 900 q (720 q);
- ``restricted``: product A at 10000 x q and product B at 2000, with the
  subscription's own 50% forever coupon restricted to A: 5000 q + 2000 (the
  customer's coupon does not apply: the subscription has its own discount);
- ``annual``: EUR 99900 a year: 8325 q (6660 q);
- ``stripe_tax``: Stripe Tax, a tax-inclusive EUR 11900, the newest invoice
  showing 100/119 of its total as not tax: 10000 q (8000 q).

Changes: create (active or trialing), quantity, own 20% forever coupon added
(6660 q ... as the customer's), a cancellation scheduled by the flag or by
``cancel_at``, withdrawn, deletion, trial conversion, past_due and back.

After every event: each MRR figure in it equals what the ``mrr`` rule gives
that subscription alone, from the mirror, at that moment (``mrr`` now,
``previous_mrr`` and a scheduled Canceled's ``mrr`` just before), and the
movements so far sum to the customer's ``mrr`` trait.
"""

from __future__ import annotations

import tempfile
from copy import deepcopy
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline_tests.segment.mirror_world import MirrorWorld, event, without_includable
from s2s_pipeline_tests.segment.test_mrr_reconciliation import movement
from s2s_pipeline_tests.traits.builders import DAY, NOW
from s2s_pipeline_tests.traits.stripe_objects import (
    coupon, customer, discount, invoice, price, subscription, tax_rate,
)

CUSTOMER = "cus_eu"
SETUPS = ("tax_rate", "currency_options", "restricted", "annual", "stripe_tax")
EUR_OPTION = {"eur": {"custom_unit_amount": None, "tax_behavior": "unspecified", "tiers": None,
                      "unit_amount": 900, "unit_amount_decimal": "900"}}
CATALOGUE = {
    "tax_rate": price("p_eur120", 12000, currency="eur"),
    "currency_options": price("p_usd10", 1000, currency="usd", currency_options=EUR_OPTION),
    "restricted_a": price("p_eur_a", 10000, currency="eur", product="prod_A"),
    "restricted_b": price("p_eur_b", 2000, currency="eur", product="prod_B"),
    "annual": price("p_eur_year", 99900, currency="eur", interval="year"),
    "stripe_tax": price("p_eur119", 11900, currency="eur", tax_behavior="inclusive"),
}
HALF_OFF_A = coupon("co_half_a", percent_off=50.0, applies_to=["prod_A"])
OWN_20 = coupon("co_own20", percent_off=20.0)
CUSTOMER_20 = coupon("co_cust20", percent_off=20.0)
VAT_20_INCLUSIVE = tax_rate("txr_vat20_incl", 20.0, True)

OPS = st.lists(st.tuples(
    st.sampled_from(["create", "create", "create_trial", "quantity", "own_coupon", "schedule_flag", "schedule_at",
                     "withdraw", "delete", "convert", "past_due", "recover"]),
    st.integers(min_value=0, max_value=4),  # which setup / which subscription
    st.integers(min_value=1, max_value=4),  # a quantity / days until cancel_at
), min_size=1, max_size=10)


def scheduled(sub: dict) -> bool:
    return bool(sub.get("cancel_at_period_end")) or sub.get("cancel_at") is not None


class Account:
    """One EUR customer's subscriptions, mirrored as listed after each change, and the events Stripe sends."""

    def __init__(self, world: MirrorWorld, customer_coupon: bool) -> None:
        self.world = world
        self.now = NOW
        self.subs: dict[str, dict] = {}
        self.setup: dict[str, str] = {}
        self.events = 0
        cust_discount = discount("di_cust", CUSTOMER_20, CUSTOMER) if customer_coupon else None
        world.put(*CATALOGUE.values(), HALF_OFF_A, OWN_20, CUSTOMER_20,
                  without_includable(customer(CUSTOMER, currency="eur", discount_obj=cust_discount)),
                  version=NOW - DAY)

    def snapshot(self, sid: str, setup: str, quantity: int, discounts: list | None = None, **fields) -> dict:
        if setup == "restricted":
            items = [(CATALOGUE["restricted_a"], quantity), (CATALOGUE["restricted_b"], 1)]
            discounts = [discount(f"di_{sid}_a", HALF_OFF_A, CUSTOMER, subscription=sid)]
        elif setup == "tax_rate":
            items = [(CATALOGUE["tax_rate"], quantity, {"tax_rates": [VAT_20_INCLUSIVE]})]
        else:
            items = [(CATALOGUE[setup], quantity)]
        sub = subscription(sid, CUSTOMER, items, currency="eur", discounts=discounts,
                           automatic_tax=setup == "stripe_tax")
        sub.update(fields)
        return sub

    def record(self, type_: str, sub: dict, old: dict | None = None):
        """Mirror the snapshot as the client lists it, then map the event the change sends."""
        self.world.put(without_includable(sub), version=self.now)
        previous = None
        if old is not None:
            previous = {k: deepcopy(old.get(k)) for k in sub if old.get(k) != sub.get(k)}
        self.events += 1
        evt = event(type_, sub, self.now, f"evt_{self.events:03d}", previous=previous)
        return self.world.map(evt, self.now)

    def live(self, index: int) -> str | None:
        ids = [sid for sid, s in self.subs.items() if s["status"] != "canceled"]
        return ids[index % len(ids)] if ids else None

    def apply(self, op: str, which: int, n: int):
        """Play one change; the track call it yields (None when it yields none, or nothing changed)."""
        self.now += DAY
        if op in ("create", "create_trial"):
            sid, setup = f"sub_{len(self.subs) + 1}", SETUPS[which]
            fields = {"status": "trialing", "trial_start": self.now, "trial_end": self.now + 14 * DAY} \
                if op == "create_trial" else {}
            sub = self.snapshot(sid, setup, n, created=self.now, start_date=self.now, **fields)
            if setup == "stripe_tax":
                # the first invoice: 100/119 of what the customer pays is not tax
                self.world.put(invoice(f"in_{sid}", CUSTOMER, sid, 11900 * n, 10000 * n, created=self.now,
                                       currency="eur"), version=self.now)
            self.subs[sid], self.setup[sid] = sub, setup
            return self.record("customer.subscription.created", sub)
        sid = self.live(which)
        if sid is None:
            return None
        old = self.subs[sid]
        new = deepcopy(old)
        first = old["items"]["data"][0]
        if op == "quantity" and first["quantity"] != n:
            rebuilt = self.snapshot(sid, self.setup[sid], n, discounts=old["discounts"])
            new["items"] = rebuilt["items"]
        elif op == "own_coupon" and not old["discounts"]:
            new["discounts"] = [discount(f"di_{sid}_own", OWN_20, CUSTOMER, subscription=sid, start=self.now)]
        elif op == "schedule_flag" and not scheduled(old):
            # Stripe sets cancel_at to the period end together with the flag
            new.update(cancel_at_period_end=True, cancel_at=first["current_period_end"], canceled_at=self.now)
        elif op == "schedule_at" and not scheduled(old):
            new.update(cancel_at=self.now + n * DAY, canceled_at=self.now)
        elif op == "withdraw" and scheduled(old):
            new.update(cancel_at_period_end=False, cancel_at=None, canceled_at=None)
        elif op == "delete":
            new.update(status="canceled", ended_at=self.now, canceled_at=old.get("canceled_at") or self.now)
            self.subs[sid] = new
            return self.record("customer.subscription.deleted", new)
        elif op == "convert" and old["status"] == "trialing":
            new.update(status="active", trial_end=self.now)
        elif op == "past_due" and old["status"] == "active":
            new.update(status="past_due")
        elif op == "recover" and old["status"] == "past_due":
            new.update(status="active")
        else:
            return None
        self.subs[sid] = new
        return self.record("customer.subscription.updated", new, old)


def figures_agree(call, before: dict[str, Decimal], after: dict[str, Decimal]) -> None:
    """Each MRR figure of the call is the ``mrr`` rule's figure for its subscription alone."""
    p = call.properties
    sid = p["subscription_id"]
    if call.event in ("Subscription Started", "Trial Converted", "Subscription Reactivated"):
        assert Decimal(str(p["mrr"])) == after[sid]
    elif call.event in ("Subscription Upgraded", "Subscription Downgraded"):
        assert (Decimal(str(p["previous_mrr"])), Decimal(str(p["mrr"]))) == (before[sid], after[sid])
    elif call.event == "Subscription Canceled":
        assert Decimal(str(p["mrr"])) == before[sid] and after[sid] == 0
    if "currency" in p:  # Trial Started has none
        assert p["currency"] == "eur"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, customer_coupon=st.booleans())
def test_event_figures_and_movements_agree_with_the_mrr_trait(ops, customer_coupon):
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore.from_url(f"sqlite:///{tmp}/state.db")
        try:
            account = Account(MirrorWorld(store), customer_coupon)
            total = Decimal(0)
            before: dict[str, Decimal] = {}
            for op in ops:
                call = account.apply(*op)
                traits, after = account.world.mrr_view(account.now)
                if call is not None:
                    assert call.stripe_customer_id == CUSTOMER
                    figures_agree(call, before, after)
                    total += movement(call)
                assert total == traits[CUSTOMER], (op, customer_coupon)
                before = after
        finally:
            store.dispose()


def test_hand_computed_sequence(tmp_path):
    """One sequence with its figures by hand (customer coupon 20%)."""
    store = StateStore.from_url(f"sqlite:///{tmp_path}/state.db")
    try:
        account = Account(MirrorWorld(store), customer_coupon=True)
        # currency_options q=2: 900 x 2 x 0.8 = 1440 -> Started 14.40
        call = account.apply("create", 1, 2)
        assert (call.event, call.properties["mrr"]) == ("Subscription Started", 14.4)
        # stripe_tax q=1: 11900 x 0.8 x 100/119 = 8000 -> Started 80.00; customer 14.40 + 80.00 = 94.40
        call = account.apply("create", 4, 1)
        assert (call.event, call.properties["mrr"]) == ("Subscription Started", 80.0)
        # restricted q=1: 10000 x 0.5 + 2000 = 7000 (own discount: no customer coupon) -> 70.00
        call = account.apply("create", 2, 1)
        assert (call.event, call.properties["mrr"]) == ("Subscription Started", 70.0)
        # sub_1 quantity 2 -> 3: 1440 -> 900 x 3 x 0.8 = 2160: Upgraded 14.40 -> 21.60
        call = account.apply("quantity", 0, 3)
        assert call.event == "Subscription Upgraded"
        assert (call.properties["previous_mrr"], call.properties["mrr"]) == (14.4, 21.6)
        # sub_2 scheduled to cancel: its 80.00 leaves now
        call = account.apply("schedule_flag", 1, 1)
        assert (call.event, call.properties["mrr"], call.properties["immediate"]) == ("Subscription Canceled",
                                                                                    80.0, False)
        # trait: 2160 + 0 + 7000 = 9160 -> 91.60 = 14.40 + 80.00 + 70.00 + 7.20 - 80.00
        assert account.world.trait_mrr(CUSTOMER, account.now) == Decimal("91.60")
    finally:
        store.dispose()
