"""MRR on real billing setups (issue #10): tax, multi-currency prices, coupons, exact rounding.

Every case is built from Stripe objects in the pinned API's shapes
(``stripe_objects``), normalized as the mirror stores them; the expected
values are computed by hand in the comments.
"""

from __future__ import annotations

import pytest

from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.frames import with_fast_dtypes
from s2s_pipeline.traits.mrr import compute_subscription_mrr
from s2s_pipeline_tests.traits.builders import DAY, NOW
from s2s_pipeline_tests.traits.stripe_objects import (
    coupon, customer, discount, frames_of, invoice, price, subscription, tax_rate,
)


def traits(*objects):
    frames = frames_of(*objects)
    plain = compute_customer_traits(frames, TraitsConfig(), NOW)
    fast = compute_customer_traits(with_fast_dtypes(frames), TraitsConfig(), NOW)
    assert plain.equals(fast)
    return plain.set_index("stripe_customer_id", drop=False)


def mrr_minor(*objects) -> int:
    """The one customer's ``mrr_minor``, checked to equal the subscription view's figure (events use it)."""
    table = traits(*objects)
    (value,) = table["mrr_minor"].tolist()
    subs = compute_subscription_mrr(frames_of(*objects), TraitsConfig(), NOW)
    assert int(subs["mrr_minor"].sum()) == value
    return value


def one_sub(items, currency="usd", **kw):
    cur = "eur" if currency == "eur" else currency
    return [customer("cus", currency=cur), subscription("sub", "cus", items, currency=currency, **kw)]


class TestTax:
    def test_inclusive_item_rate_is_divided_out(self):
        # 12000 x 100 / (100 + 20) = 10000
        item = (price("p120", 12000), 1, {"tax_rates": [tax_rate("txr_incl20", 20.0, True)]})
        assert mrr_minor(*one_sub([item])) == 10000

    def test_exclusive_rate_adds_nothing(self):
        # exclusive tax is added on top of the price: 12000 stays
        item = (price("p120", 12000), 1, {"tax_rates": [tax_rate("txr_excl20", 20.0, False)]})
        assert mrr_minor(*one_sub([item])) == 12000

    def test_subscription_default_rate_applies_to_items_without_their_own(self):
        # default_tax_rates 20% inclusive: 12000 x 100/120 = 10000
        objs = one_sub([(price("p120", 12000), 1)], default_tax_rates=[tax_rate("txr_incl20", 20.0, True)])
        assert mrr_minor(*objs) == 10000

    def test_item_rates_override_the_subscription_default(self):
        # the item's exclusive 10% replaces the default inclusive 20%: 12000 stays
        item = (price("p120", 12000), 1, {"tax_rates": [tax_rate("txr_excl10", 10.0, False)]})
        objs = one_sub([item], default_tax_rates=[tax_rate("txr_incl20", 20.0, True)])
        assert mrr_minor(*objs) == 12000

    def test_two_inclusive_rates_add_up(self):
        # 19% + 1% inclusive: 12000 x 100 / 120 = 10000
        item = (price("p120", 12000), 1, {"tax_rates": [tax_rate("txr_19", 19.0, True), tax_rate("txr_1", 1.0, True)]})
        assert mrr_minor(*one_sub([item])) == 10000

    def test_german_vat_on_ten_euros_rounds_once(self):
        # 1000 x 100 / 119 = 840.336... -> 840
        item = (price("p_eur", 1000, currency="eur"), 1, {"tax_rates": [tax_rate("txr_de", 19.0, True)]})
        assert mrr_minor(*one_sub([item], currency="eur")) == 840

    def test_inclusive_tax_after_a_percent_coupon(self):
        # (12000 x 0.5) x 100/120 = 5000
        item = (price("p120", 12000), 1, {"tax_rates": [tax_rate("txr_incl20", 20.0, True)]})
        c = coupon("half", percent_off=50.0)
        objs = one_sub([item], discounts=[discount("di_1", c, "cus", "sub")])
        assert mrr_minor(c, *objs) == 5000

    def stripe_tax(self, behavior: str, invoices):
        p = price("p120", 12000, tax_behavior=behavior)
        return [*one_sub([(p, 1)], automatic_tax=True, latest_invoice=invoices[-1]["id"] if invoices else None),
                *invoices]

    def test_stripe_tax_inclusive_price_uses_the_latest_invoice_without_tax(self):
        # total 12000, total_excluding_tax 10000: 12000 x 10000/12000 = 10000
        objs = self.stripe_tax("inclusive", [invoice("in_1", "cus", "sub", 12000, 10000)])
        assert mrr_minor(*objs) == 10000

    def test_stripe_tax_takes_the_newest_paid_or_open_invoice_not_a_draft(self):
        # newest paid: total 12000, excl. 9000 (a 33.3% rate) -> 9000; the newer draft (excl. 12000) is ignored
        objs = self.stripe_tax("inclusive", [
            invoice("in_old", "cus", "sub", 12000, 10000, created=NOW - 40 * DAY),
            invoice("in_new", "cus", "sub", 12000, 9000, created=NOW - 10 * DAY),
            invoice("in_draft", "cus", "sub", 12000, 12000, status="draft", created=NOW - DAY),
        ])
        assert mrr_minor(*objs) == 9000

    def test_stripe_tax_exclusive_price_is_not_reduced(self):
        # exclusive: the tax is added to the invoice (14400 = 12000 + 20%); the price stays 12000
        objs = self.stripe_tax("exclusive", [invoice("in_1", "cus", "sub", 14400, 12000)])
        assert mrr_minor(*objs) == 12000

    def test_stripe_tax_without_an_invoice_keeps_the_price(self):
        # no paid/open invoice mirrored: the tax share is unknown, 12000 stays
        assert mrr_minor(*self.stripe_tax("inclusive", [])) == 12000

    def test_inclusive_price_without_stripe_tax_is_not_reduced(self):
        # tax_behavior only matters when Stripe Tax computes the tax
        p = price("p120", 12000, tax_behavior="inclusive")
        assert mrr_minor(*one_sub([(p, 1)]), invoice("in_1", "cus", "sub", 12000, 10000)) == 12000


class TestCurrencyOptions:
    USD_WITH_EUR = {"eur": {"custom_unit_amount": None, "tax_behavior": "unspecified", "unit_amount": 900,
                            "unit_amount_decimal": "900"},
                    "usd": {"custom_unit_amount": None, "tax_behavior": "unspecified", "unit_amount": 1000,
                            "unit_amount_decimal": "1000"}}

    def test_eur_subscription_uses_the_eur_option(self):
        # EUR subscription on a USD price whose EUR option is 900: 900, not 1000
        p = price("p_multi", 1000, currency_options=self.USD_WITH_EUR)
        objs = one_sub([(p, 2)], currency="eur")
        assert mrr_minor(*objs) == 1800  # 900 x 2
        assert traits(*objs).loc["cus", "currency"] == "eur"

    def test_usd_subscription_uses_the_price_itself(self):
        p = price("p_multi", 1000, currency_options=self.USD_WITH_EUR)
        assert mrr_minor(*one_sub([(p, 1)])) == 1000

    def test_option_tax_behavior_applies_with_stripe_tax(self):
        # EUR option 1190 tax-inclusive; invoice total 1190, excl. 1000: 1190 x 1000/1190 = 1000
        options = {"eur": {"tax_behavior": "inclusive", "unit_amount": 1190, "unit_amount_decimal": "1190"}}
        p = price("p_multi", 1000, tax_behavior="exclusive", currency_options=options)
        objs = [*one_sub([(p, 1)], currency="eur", automatic_tax=True),
                invoice("in_1", "cus", "sub", 1190, 1000, currency="eur")]
        assert mrr_minor(*objs) == 1000

    def test_option_tiers(self):
        # EUR option graduated tiers: 5 x 800 + 3 x 700 = 6100
        options = {"eur": {"tax_behavior": "unspecified", "unit_amount": None, "unit_amount_decimal": None,
                           "tiers": [{"up_to": 5, "unit_amount": 800, "unit_amount_decimal": "800",
                                      "flat_amount": None, "flat_amount_decimal": None},
                                     {"up_to": None, "unit_amount": 700, "unit_amount_decimal": "700",
                                      "flat_amount": None, "flat_amount_decimal": None}]}}
        p = price("p_tiered", None, billing_scheme="tiered", tiers_mode="graduated", currency_options=options,
                  tiers=[{"up_to": None, "unit_amount": 1000, "unit_amount_decimal": "1000",
                          "flat_amount": None, "flat_amount_decimal": None}])
        assert mrr_minor(*one_sub([(p, 8)], currency="eur")) == 6100


class TestCoupons:
    A = price("price_A", 10000, product="prod_A")
    B = price("price_B", 2000, product="prod_B")

    def test_percent_coupon_restricted_to_a_product(self):
        # 50% on product A only: 10000 x 0.5 + 2000 = 7000
        c = coupon("half_A", percent_off=50.0, applies_to=["prod_A"])
        objs = one_sub([(self.A, 1), (self.B, 1)], discounts=[discount("di_1", c["id"], "cus", "sub")])
        assert mrr_minor(c, *objs) == 7000

    def test_restricted_customer_level_coupon(self):
        # the customer's coupon, restricted to A: 5000 + 2000 = 7000
        c = coupon("half_A", percent_off=50.0, applies_to=["prod_A"])
        objs = [customer("cus", discount_obj=discount("di_c", c["id"], "cus")),
                subscription("sub", "cus", [(self.A, 1), (self.B, 1)])]
        assert mrr_minor(c, *objs) == 7000

    def test_restricted_amount_off_is_capped_at_the_eligible_items(self):
        # 3000 off product B's items only: B is 2000, so 2000 comes off; A keeps 10000
        c = coupon("off30_B", amount_off=3000, currency="usd", applies_to=["prod_B"])
        objs = one_sub([(self.A, 1), (self.B, 1)], discounts=[discount("di_1", c["id"], "cus", "sub")])
        assert mrr_minor(c, *objs) == 10000

    def test_item_coupon_for_another_product_does_not_apply(self):
        # an item discount on B with a coupon restricted to A: nothing comes off
        c = coupon("half_A", percent_off=50.0, applies_to=["prod_A"])
        b_item = (self.B, 1, {"id": "si_b", "discounts": [discount("di_i", c["id"], "cus", "sub", item="si_b")]})
        assert mrr_minor(c, *one_sub([(self.A, 1), b_item])) == 12000

    def test_unexpanded_coupon_applies_everywhere(self):
        # applies_to never fetched (not expanded): treated as unrestricted, 12000 x 0.5 = 6000
        c = coupon("half", percent_off=50.0, expanded=False)
        objs = one_sub([(self.A, 1), (self.B, 1)], discounts=[discount("di_1", c["id"], "cus", "sub")])
        assert mrr_minor(c, *objs) == 6000

    def test_amount_off_uses_the_currency_option(self):
        # USD 500 off, EUR option 400 off: EUR subscription 2000 - 400 = 1600
        c = coupon("off5", amount_off=500, currency="usd", currency_options={"eur": {"amount_off": 400}})
        objs = one_sub([(price("p_eur", 2000, currency="eur"), 1)], currency="eur",
                       discounts=[discount("di_1", c["id"], "cus", "sub")])
        assert mrr_minor(c, *objs) == 1600

    def test_amount_off_without_an_option_for_the_currency_is_skipped(self):
        # USD 500 off, no EUR option: the EUR subscription keeps 2000
        c = coupon("off5", amount_off=500, currency="usd")
        objs = one_sub([(price("p_eur", 2000, currency="eur"), 1)], currency="eur",
                       discounts=[discount("di_1", c["id"], "cus", "sub")])
        assert mrr_minor(c, *objs) == 2000

    def test_deleted_coupon_still_applied_keeps_reducing_mrr(self):
        # coupon.deleted carries the coupon as it was: 25% off 2000 = 1500
        deleted = {**coupon("gone25", percent_off=25.0, expanded=False), "deleted": True}
        objs = one_sub([(price("p20", 2000), 1)], discounts=[discount("di_1", "gone25", "cus", "sub")])
        assert mrr_minor(deleted, *objs) == 1500

    def test_unknown_coupon_terms_come_from_the_expanded_discount(self):
        # GET /v1/coupons/gone25 would 404; discounts.source.coupon (expanded) carries 25%: 1500
        embedded = coupon("gone25", percent_off=25.0, expanded=False)
        objs = one_sub([(price("p20", 2000), 1)], discounts=[discount("di_1", embedded, "cus", "sub")])
        assert mrr_minor(*objs) == 1500

    def test_older_api_discount_coupon(self):
        # before 2025-09-30.clover the discount carried ``coupon`` itself: 25% off 2000 = 1500
        old = discount("di_1", None, "cus", "sub")
        old.pop("source")
        old["coupon"] = coupon("c25", percent_off=25.0, expanded=False)
        assert mrr_minor(*one_sub([(price("p20", 2000), 1)], discounts=[old])) == 1500

    def test_customer_discount_event_object(self):
        # a customer.discount.created payload (object "discount") applies the customer's coupon: 2000 x 0.9
        c = coupon("ten", percent_off=10.0)
        assert mrr_minor(c, *one_sub([(price("p20", 2000), 1)]), discount("di_c", "ten", "cus")) == 1800


class TestExactRounding:
    def test_kwd_a_year_trait_and_subscription_agree(self):
        # KWD 6.900 a year = 6900 fils / 12 = 575 fils exactly = 0.575 KWD; rounded once, half-even,
        # to the display step of 10 fils (0.01 KWD): 57.5 steps -> 58 (57 is odd) -> 580 fils = 0.58.
        # Trait and subscription view (the events' figure) both 580.
        objs = one_sub([(price("p_kwd", 6900, currency="kwd", interval="year"), 1)], currency="kwd")
        assert mrr_minor(*objs) == 580
        assert traits(*objs).loc["cus", "mrr"] == 0.58

    def test_three_decimal_total_is_rounded_once_to_the_display_step(self):
        # BHD 20.070 a month incl. 10% tax: 20070 fils x 100/110 = 18245.4545... fils = 18.2454... BHD.
        # Once, half-even to 0.01 BHD (10 fils): 1824.545... steps -> 1825 -> 18250 fils = 18.25.
        # (Rounding to whole fils first gave 18245 = 1824.5 steps -> 1824 (even) = 18.24: rounded twice.)
        item = (price("p_bhd", 20070, currency="bhd"), 1, {"tax_rates": [tax_rate("txr_bh10", 10.0, True)]})
        objs = one_sub([item], currency="bhd")
        assert mrr_minor(*objs) == 18250
        assert traits(*objs).loc["cus", "mrr"] == 18.25
        assert compute_subscription_mrr(frames_of(*objs), TraitsConfig(), NOW)["mrr"].tolist() == [18.25]

    def test_fractional_fils_are_not_rounded_to_whole_fils_first(self):
        # 565.4 fils a month (unit_amount_decimal): 56.54 steps of 10 fils -> 57 -> 570 fils = 0.57 KWD.
        # (565.4 -> 565 fils -> 56.5 steps -> 56 (even) = 0.56 was two roundings.)
        p = price("p_kwd_dec", None, currency="kwd", unit_amount_decimal="565.4")
        objs = one_sub([(p, 1)], currency="kwd")
        assert mrr_minor(*objs) == 570
        assert traits(*objs).loc["cus", "mrr"] == 0.57

    def test_two_decimal_and_zero_decimal_steps_are_one_minor_unit(self):
        # USD 10.05 a year: 1005 / 12 = 83.75 cents -> 84 (step 1 cent) = 0.84;
        # JPY 1,001 a year: 1001 / 12 = 83.41... yen -> 83 (step 1 yen) = 83.0
        usd = one_sub([(price("p_usd_y", 1005, interval="year"), 1)])
        jpy = one_sub([(price("p_jpy_y", 1001, currency="jpy", interval="year"), 1)], currency="jpy")
        assert (mrr_minor(*usd), traits(*usd).loc["cus", "mrr"]) == (84, 0.84)
        assert (mrr_minor(*jpy), traits(*jpy).loc["cus", "mrr"]) == (83, 83.0)

    def test_just_above_a_half_rounds_up(self):
        # 100.5000001 cents: not a half, exactly -> 101 (snapping floats to 1e-6 gave 100)
        p = price("p_dec", None, unit_amount_decimal="100.5000001")
        assert mrr_minor(*one_sub([(p, 1)])) == 101

    def test_twelve_decimal_tie_breaker(self):
        # 1806.000000000006 a year / 12 = 150.5000000000005 -> 151 (exact, not 150 from a snapped float)
        p = price("p_dec", None, interval="year", unit_amount_decimal="1806.000000000006")
        assert mrr_minor(*one_sub([(p, 1)])) == 151

    def test_exact_half_after_tax_rounds_to_even(self):
        # 178.5 cents incl. 19%: 178.5 x 100/119 = 150 exactly; 180.81 incl. 19%... use 357 x 100/119 = 300
        # and 0.595 -> 0.5 -> 0 (half to even), 1.785 -> 1.5 -> 2
        for unit, expected in (("0.595", 0), ("1.785", 2)):
            item = (price("p_dec", None, unit_amount_decimal=unit), 1,
                    {"tax_rates": [tax_rate("txr_de", 19.0, True)]})
            assert mrr_minor(*one_sub([item])) == expected

    @pytest.mark.parametrize("unit, expected", [(1806, 150), (1818, 152), (1830, 152)])
    def test_yearly_halves_round_half_even(self, unit, expected):
        # 1806/12 = 150.5 -> 150; 1818/12 = 151.5 -> 152; 1830/12 = 152.5 -> 152
        objs = one_sub([(price("p_y", unit, interval="year"), 1)])
        assert mrr_minor(*objs) == expected
