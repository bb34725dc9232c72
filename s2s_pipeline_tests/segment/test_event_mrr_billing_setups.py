"""Event MRR on real billing setups agrees with the ``mrr`` trait to the cent (issue #10, contract v2).

The account is mirrored in a real state store as the extraction stores it
(prices and coupons listed with their includable fields expanded; customers
and subscriptions with their discounts and those discounts' coupons
expanded), the events come as Stripe renders them (never expanded: discounts
by id, no ``currency_options``, no ``applies_to``), and both the track call and the trait are computed from that
mirror. Expected values are computed by hand in the comments.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from s2s_pipeline.traits.money import to_major
from s2s_pipeline_tests.segment.mirror_world import MirrorWorld, event, without_includable
from s2s_pipeline_tests.traits.builders import DAY, NOW
from s2s_pipeline_tests.traits.stripe_objects import (
    coupon, customer, discount, invoice, price, subscription, tax_rate,
)
from s2s_pipeline_tests.traits.stripe_payment_objects import charge, refund

LISTED = NOW - 2 * DAY  # when the full sync listed the catalogue


@pytest.fixture
def world(state_store) -> MirrorWorld:
    return MirrorWorld(state_store)


def started(world: MirrorWorld, sub: dict, *catalogue: dict, cust: dict | None = None):
    """Mirror the catalogue, the customer and the subscription; map its ``customer.subscription.created``."""
    world.put(*catalogue, without_includable(cust or customer("cus", currency=sub["currency"])), version=LISTED)
    world.put(without_includable(sub), version=NOW)
    call = world.map(event("customer.subscription.created", sub, NOW), NOW)
    assert call is not None and call.event == "Subscription Started"
    return call


def agrees(world: MirrorWorld, call, expected: str, customer_id: str = "cus") -> None:
    """The event's ``mrr`` is the hand-computed figure, the subscription's own trait figure and the customer's."""
    mrr = Decimal(str(call.properties["mrr"]))
    assert mrr == Decimal(expected)
    assert world.subscription_mrr(NOW)[call.properties["subscription_id"]] == mrr
    assert world.trait_mrr(customer_id, NOW) == mrr


class TestTax:
    def test_inclusive_item_rate(self, world):
        # 12000 x 100 / (100 + 20) = 10000 -> 100.00
        sub = subscription("sub", "cus", [(price("p120", 12000), 1,
                                            {"tax_rates": [tax_rate("txr_incl20", 20.0, True)]})])
        agrees(world, started(world, sub, price("p120", 12000)), "100.00")

    def test_inclusive_rate_leaving_a_fraction_of_a_cent(self, world):
        # EUR 1000 with 20% inclusive: 1000 x 100/120 = 833.33... -> 833 (half-even, once) -> 8.33 in both
        p = price("p_eur10", 1000, currency="eur")
        sub = subscription("sub", "cus", [(p, 1, {"tax_rates": [tax_rate("txr_incl20", 20.0, True)]})],
                           currency="eur")
        agrees(world, started(world, sub, p), "8.33")

    def test_stripe_tax_on_a_120_dollar_price(self, world):
        # Stripe Tax invoiced 12000 of which 10000 is not tax: 12000 x 10000/12000 = 10000 -> 100.00
        p = price("p120i", 12000, tax_behavior="inclusive")
        sub = subscription("sub", "cus", [(p, 1)], automatic_tax=True)
        world.put(invoice("in_1", "cus", "sub", 12000, 10000), version=LISTED)
        agrees(world, started(world, sub, p), "100.00")

    def test_inclusive_subscription_default_rate(self, world):
        # 12500 x 100 / (100 + 25) = 10000 -> 100.00
        sub = subscription("sub", "cus", [(price("p125", 12500), 1)],
                           default_tax_rates=[tax_rate("txr_incl25", 25.0, True)])
        agrees(world, started(world, sub, price("p125", 12500)), "100.00")

    def test_stripe_tax_uses_the_subscriptions_newest_invoice(self, world):
        # Stripe Tax, tax-inclusive price 11900; newest paid invoice total 11900, of which 10000 is not tax:
        # 11900 x 10000 / 11900 = 10000 -> 100.00 (the older invoice's 19/119 share is not the newest)
        p = price("p119", 11900, tax_behavior="inclusive")
        sub = subscription("sub", "cus", [(p, 1)], automatic_tax=True, latest_invoice="in_new")
        world.put(invoice("in_old", "cus", "sub", 11900, 11000, created=NOW - 40 * DAY),
                  invoice("in_new", "cus", "sub", 11900, 10000, created=NOW - 10 * DAY), version=LISTED)
        agrees(world, started(world, sub, p), "100.00")

    def test_stripe_tax_with_an_exclusive_price_adds_nothing(self, world):
        # tax_behavior exclusive: Stripe Tax adds the tax on top, 11900 stays -> 119.00
        p = price("p119x", 11900, tax_behavior="exclusive")
        sub = subscription("sub", "cus", [(p, 1)], automatic_tax=True)
        world.put(invoice("in_1", "cus", "sub", 14161, 11900), version=LISTED)
        agrees(world, started(world, sub, p), "119.00")


class TestMultiCurrency:
    EUR_OPTIONS = {"eur": {"custom_unit_amount": None, "tax_behavior": "unspecified", "tiers": None,
                           "unit_amount": 900, "unit_amount_decimal": "900"}}

    def usd_price(self):
        return price("p_usd10", 1000, currency="usd", currency_options=self.EUR_OPTIONS)

    def test_eur_subscription_uses_the_eur_option_of_a_usd_price(self, world):
        # EUR subscription on a USD 1000 price whose EUR option is 900: 900 -> 9.00 EUR (not 10.00)
        sub = subscription("sub", "cus", [(self.usd_price(), 1)], currency="eur")
        call = started(world, sub, self.usd_price())
        assert call.properties["currency"] == "eur"
        agrees(world, call, "9.00")

    def test_upgrade_on_the_eur_option(self, world):
        # quantity 1 -> 3 at the EUR option 900: previous 900 -> 9.00, now 2700 -> 27.00
        one = subscription("sub", "cus", [(self.usd_price(), 1)], currency="eur")
        started(world, one, self.usd_price())
        three = subscription("sub", "cus", [(self.usd_price(), 3)], currency="eur")
        world.put(without_includable(three), version=NOW + 1)
        call = world.map(event("customer.subscription.updated", three, NOW + 1, "evt_up",
                               previous={"items": one["items"]}), NOW + 1)
        assert call.event == "Subscription Upgraded"
        assert (call.properties["previous_mrr"], call.properties["mrr"]) == (9.0, 27.0)
        assert world.trait_mrr("cus", NOW + 1) == Decimal("27.00")

    def test_amount_off_coupon_uses_its_eur_option(self, world):
        # EUR option 900 less the coupon's EUR option 150 (its own amount is 200 USD): 750 -> 7.50 EUR
        co = coupon("co_usd2", amount_off=200, currency="usd", currency_options={"eur": {"amount_off": 150}})
        sub = subscription("sub", "cus", [(self.usd_price(), 1)], currency="eur",
                           discounts=[discount("di_1", co, "cus", subscription="sub")])
        agrees(world, started(world, sub, self.usd_price(), co), "7.50")


    def test_amount_off_coupon_embedded_without_its_options_uses_the_mirrors(self, world):
        # An older API version's `discount` embeds the coupon without currency_options (includable); the
        # mirror's coupon has the EUR option 150: 900 - 150 = 750 -> 7.50 EUR (not 9.00: skipped without it)
        co = coupon("co_usd2", amount_off=200, currency="usd", currency_options={"eur": {"amount_off": 150}})
        sub = subscription("sub", "cus", [(self.usd_price(), 1)], currency="eur")
        sub.pop("discounts")
        sub["discount"] = {"id": "di_1", "object": "discount", "coupon": co, "customer": "cus", "end": None,
                           "start": NOW - 60 * DAY, "subscription": "sub"}
        agrees(world, started(world, sub, self.usd_price(), co), "7.50")


class TestCoupons:
    def two_products(self, discounts=None, **kw):
        a, b = price("pA", 10000, product="prod_A"), price("pB", 2000, product="prod_B")
        return subscription("sub", "cus", [(a, 1), (b, 1)], discounts=discounts, **kw), a, b

    def test_product_restricted_coupon_discounts_only_its_products(self, world):
        # 50% on prod_A only: A 10000 x 0.5 = 5000, B 2000 stays: 7000 -> 70.00 (not 60.00)
        co = coupon("co_halfA", percent_off=50.0, applies_to=["prod_A"])
        sub, a, b = self.two_products(discounts=[discount("di_1", co, "cus", subscription="sub")])
        agrees(world, started(world, sub, a, b, co), "70.00")

    def test_product_restricted_coupon_embedded_in_an_older_api_versions_discount(self, world):
        # Before 2025-09-30.clover a subscription carried `discount` with its coupon embedded, and without
        # applies_to (includable): the mirror's coupon says prod_A only. 5000 + 2000 = 7000 -> 70.00
        co = coupon("co_halfA", percent_off=50.0, applies_to=["prod_A"])
        legacy = {"id": "di_1", "object": "discount", "coupon": co, "customer": "cus", "end": None,
                  "start": NOW - 60 * DAY, "subscription": "sub"}
        sub, a, b = self.two_products()
        sub.pop("discounts")
        sub["discount"] = legacy
        agrees(world, started(world, sub, a, b, co), "70.00")

    def test_deleted_coupon_still_applied_keeps_its_terms(self, world):
        # coupon.deleted carried the coupon as it was (25% forever); the discount stays: 4000 x 0.75 = 3000
        co = coupon("co_gone", percent_off=25.0)
        p = price("p40", 4000)
        sub = subscription("sub", "cus", [(p, 1)], discounts=[discount("di_1", co, "cus", subscription="sub")])
        world.put(co, version=LISTED)
        world.put({**co, "deleted": True, "valid": False}, version=LISTED + 1)  # the coupon.deleted snapshot
        agrees(world, started(world, sub, p), "30.00")

    def test_customer_level_forever_coupon(self, world):
        # the customer's 20% forever coupon reaches a subscription without its own discount:
        # 5000 x 0.8 = 4000 -> 40.00 (not 50.00)
        co = coupon("co_cust20", percent_off=20.0)
        cust = customer("cus", discount_obj=discount("di_cust", co, "cus"))
        p = price("p50", 5000)
        sub = subscription("sub", "cus", [(p, 1)])
        agrees(world, started(world, sub, p, co, cust=cust), "40.00")

    def test_subscription_discount_wins_over_the_customers(self, world):
        # own 10% forever instead of the customer's 20%: 5000 x 0.9 = 4500 -> 45.00
        own, cust_co = coupon("co_own10", percent_off=10.0), coupon("co_cust20", percent_off=20.0)
        cust = customer("cus", discount_obj=discount("di_cust", cust_co, "cus"))
        p = price("p50", 5000)
        sub = subscription("sub", "cus", [(p, 1)], discounts=[discount("di_own", own, "cus", subscription="sub")])
        agrees(world, started(world, sub, p, own, cust_co, cust=cust), "45.00")

    def test_scheduled_cancellation_loses_the_discounted_mrr(self, world):
        # customer coupon 20% forever on 5000: 4000 leaves at scheduling -> Canceled mrr 40.00, trait 0
        co = coupon("co_cust20", percent_off=20.0)
        cust = customer("cus", discount_obj=discount("di_cust", co, "cus"))
        p = price("p50", 5000)
        sub = subscription("sub", "cus", [(p, 1)])
        started(world, sub, p, co, cust=cust)
        scheduled = {**sub, "cancel_at_period_end": True, "cancel_at": NOW + 20 * DAY, "canceled_at": NOW + 1}
        world.put(without_includable(scheduled), version=NOW + 1)
        call = world.map(event("customer.subscription.updated", scheduled, NOW + 1, "evt_sched",
                               previous={"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None}),
                         NOW + 1)
        assert call.event == "Subscription Canceled" and call.properties["mrr"] == 40.0
        assert world.trait_mrr("cus", NOW + 1) == Decimal("0.00")


class TestOrderMoney:
    """Order Completed / Order Refunded amounts by ``traits.money.to_major``, the traits' one rounding rule."""

    @pytest.mark.parametrize("currency, amount, expected", [
        ("usd", 5000, 50.0),  # 5000 / 100
        ("jpy", 3000, 3000.0),  # zero-decimal: 3000
        ("kwd", 1015, 1.02),  # 1015 / 1000 = 1.015 exactly -> half-even to 2 decimals = 1.02 (float rounding: 1.01)
        ("bhd", 2025, 2.02),  # 2.025 exactly -> half-even = 2.02
    ])
    def test_order_completed_revenue_is_the_lifetime_value_figure(self, world, currency, amount, expected):
        ch = charge("cus", amount, NOW - DAY, currency=currency, id=f"ch_{currency}")
        world.put(customer("cus", currency=currency), ch, version=NOW)
        call = world.map(event("charge.succeeded", ch, NOW - DAY), NOW)
        assert call.event == "Order Completed"
        assert call.properties["revenue"] == call.properties["total"] == expected == to_major(amount, currency)
        assert world.traits(NOW).loc["cus", "lifetime_value"] == expected  # the same charge's trait

    @pytest.mark.parametrize("currency, amount, expected", [
        ("usd", 1234, 12.34),
        ("kwd", 1015, 1.02),  # 1.015 -> 1.02 half-even
        ("kwd", 1025, 1.02),  # 1.025 -> 1.02 half-even (the even neighbour)
    ])
    def test_order_refunded_total(self, world, currency, amount, expected):
        ch = charge("cus", 5000, NOW - 2 * DAY, currency=currency, amount_refunded=amount, id="ch_r")
        re = refund(ch, amount, NOW - DAY)
        world.put(customer("cus", currency=currency), ch, re, version=NOW)
        call = world.map(event("refund.created", re, NOW - DAY), NOW)
        assert call.event == "Order Refunded"
        assert call.properties["total"] == expected == to_major(amount, currency)
