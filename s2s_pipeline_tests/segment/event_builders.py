"""Stripe event payloads for mapping tests, built from Stripe's own example objects, and a fake context.

The fake answers what ``segment.mapping_context.MappingContext`` asks (the
mirror / the Stripe API) from plain dicts that a test fills in.
"""

from __future__ import annotations

import json
from copy import deepcopy

import pytest

from s2s_pipeline.segment.event_mapping import TrackCall
from s2s_pipeline.segment.messages import message_id

NOW = 1_769_860_800  # 2026-01-31T12:00:00Z
DAY = 86_400
API = "2026-10-28.endive"


# -- a fake of what the caller (mirror / Stripe API) answers -------------------------------


class FakeContext:
    def __init__(self) -> None:
        self.prices: dict[str, dict] = {}
        self.products: dict[str, str] = {"prod_pro": "Pro"}
        self.coupons: dict[str, dict] = {}
        self.discounts: dict[str, dict] = {}
        self.stored: dict[str, tuple] = {}
        self.invoice_errors: dict[str, dict] = {}
        self.invoice_charges: set[str] = set()
        self.refunds: dict[str, list[dict]] = {}
        self.charge_customers: dict[str, str] = {}
        self.charges: dict[str, dict] = {}
        self.customer_level: dict[str, list[dict]] = {}
        self.invoices: dict[str, list[dict]] = {}

    def price(self, price_id):
        return self.prices.get(price_id)

    def product_name(self, product_id):
        return self.products.get(product_id)

    def coupon(self, coupon_id):
        return self.coupons.get(coupon_id)

    def discount(self, discount_id):
        return self.discounts.get(discount_id)

    def customer_discounts(self, customer_id):
        return list(self.customer_level.get(customer_id, []))

    def subscription_invoices(self, subscription_id):
        return list(self.invoices.get(subscription_id, []))

    def stored_subscription_mrr(self, subscription_id):
        return self.stored.get(subscription_id)

    def invoice_payment_error(self, invoice):
        return self.invoice_errors.get(invoice["id"])

    def charge_belongs_to_invoice(self, charge):
        return charge["id"] in self.invoice_charges

    def refunds_of_charge(self, charge_id):
        return list(self.refunds.get(charge_id, []))

    def customer_of_charge(self, charge_id):
        return self.charge_customers.get(charge_id)

    def charge(self, charge_id):
        return self.charges.get(charge_id)


@pytest.fixture
def ctx() -> FakeContext:
    return FakeContext()


@pytest.fixture
def fx(stripe_fixtures) -> dict:
    return stripe_fixtures


# -- payload builders (Stripe's example objects with the fields of each case set) ------------


def make_price(fx, pid: str, unit: int, nickname: str | None = None, interval: str = "month",
               currency: str = "usd", product: str = "prod_pro", **kw) -> dict:
    p = deepcopy(fx["subscription"]["items"]["data"][0]["price"])
    p.update(id=pid, unit_amount=unit, unit_amount_decimal=str(unit), nickname=nickname, currency=currency,
             product=product, transform_quantity=None)
    p["recurring"] = dict(p["recurring"], interval=interval, interval_count=1)
    p.update(kw)
    return p


def make_item(fx, price: dict, quantity: int = 1, item_id: str = "si_1", period_end: int = NOW + 20 * DAY) -> dict:
    it = deepcopy(fx["subscription"]["items"]["data"][0])
    it.pop("plan")  # the example's legacy plan is placeholder data
    it.update(id=item_id, price=deepcopy(price), quantity=quantity, discounts=[],
              current_period_start=period_end - 30 * DAY, current_period_end=period_end, subscription="sub_1")
    return it


def make_sub(fx, items: list[dict], status: str = "active", **kw) -> dict:
    s = deepcopy(fx["subscription"])
    s.update(id="sub_1", customer="cus_1", status=status, currency="usd", cancel_at_period_end=False,
             cancel_at=None, canceled_at=None, ended_at=None, pause_collection=None, trial_start=None,
             trial_end=None, discounts=[], created=NOW - 40 * DAY, start_date=NOW - 40 * DAY, latest_invoice=None)
    s["items"] = dict(s["items"], data=deepcopy(items))
    s.update(kw)
    return s


def make_event(fx, type_: str, obj: dict, created: int = NOW, event_id: str = "evt_1",
               previous: dict | None = None, api_version: str = API) -> dict:
    e = deepcopy(fx["event"])
    e.update(id=event_id, type=type_, created=created, api_version=api_version, data={"object": deepcopy(obj)})
    if previous is not None:
        e["data"]["previous_attributes"] = deepcopy(previous)
    return e


def make_charge(fx, charge_id: str = "ch_1", amount: int = 5000, currency: str = "usd", **kw) -> dict:
    c = deepcopy(fx["charge"])
    c.update(id=charge_id, customer="cus_1", amount=amount, amount_captured=amount, captured=True,
             currency=currency, created=NOW - DAY, payment_intent="pi_1")
    c.pop("refunds")  # current API versions do not include refunds unless expanded
    c.update(kw)
    return c


def make_refund(fx, refund_id: str, amount: int, created: int, charge: str = "ch_1", **kw) -> dict:
    r = deepcopy(fx["refund"])
    r.update(id=refund_id, amount=amount, created=created, charge=charge, reason="requested_by_customer",
             status="succeeded")
    r.update(kw)
    return r


def refund_row(refund: dict) -> dict:
    """The mirror's row of a refund (what ``refunds_of_charge`` answers)."""
    return {k: refund.get(k) for k in ("id", "charge", "amount", "currency", "reason", "created", "status")}


def plain(call: TrackCall | None) -> TrackCall:
    """The call exists and its properties are plain JSON (no numpy or Decimal values)."""
    assert call is not None
    assert json.loads(json.dumps(call.properties)) == call.properties
    for value in call.properties.values():
        assert value is None or type(value) in (str, int, float, bool)
    assert call.message_id == message_id("track", call.dedupe_key)
    return call
