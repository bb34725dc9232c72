"""MRR rules (REFERENCE §A.2, contract "mrr"), hand-computed."""

from __future__ import annotations

import pytest

from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.frames import with_fast_dtypes
from s2s_pipeline.traits.mrr import compute_item_mrr, compute_subscription_mrr
from s2s_pipeline.traits.summary import mrr_by_currency
from s2s_pipeline_tests.traits.builders import DAY, NOW, Mirror


ALL_IN_EFFECT = TraitsConfig(mrr_coupon_rule="all_in_effect")


def traits(mirror: Mirror, config: TraitsConfig | None = None):
    """Trait rows by customer id, checked to be identical on the categorical (loader) dtypes."""
    frames = mirror.frames()
    config = config or TraitsConfig()
    plain = compute_customer_traits(frames, config, NOW)
    fast = compute_customer_traits(with_fast_dtypes(frames), config, NOW)
    assert plain.equals(fast)
    return plain.set_index("stripe_customer_id", drop=False)


def mrr_of(mirror: Mirror, config: TraitsConfig | None = None) -> dict[str, float]:
    return traits(mirror, config)["mrr"].to_dict()


def worked_example() -> Mirror:
    """REFERENCE §A.4, one customer per row."""
    m = Mirror()
    m.price("seat25", 2500, nickname="Seat")
    m.price("annual1200", 120000, recurring_interval="year", nickname="Annual")
    m.price("quarter270", 27000, recurring_interval="month", recurring_interval_count=3, nickname="Quarterly")
    m.price("trial99", 9900, nickname="Trial plan")
    m.price("week10", 1000, recurring_interval="week", nickname="Weekly")
    m.price("api", "0.5", recurring_usage_type="metered", nickname="API calls")
    m.price("eur200", 20000, currency="eur", nickname="Euro plan")
    m.price("graduated", None, billing_scheme="tiered", tiers_mode="graduated", nickname="Graduated", tiers=[
        {"up_to": 5, "unit_amount_decimal": "1200", "flat_amount_decimal": None},
        {"up_to": None, "unit_amount_decimal": "1000", "flat_amount_decimal": None},
    ])
    m.price("monthly80", 8000, nickname="Eighty")
    m.coupon("pct20_forever", "forever", percent_off=20.0)
    m.coupon("eur50_repeating", "repeating", amount_off=5000, currency="eur", duration_in_months=3)
    for i in range(1, 9):
        m.customer(f"cus_{i}", currency="eur" if i == 6 else "usd")
    m.subscription("sub_1", "cus_1", [("seat25", 4)])
    m.subscription("sub_2", "cus_2", ["annual1200"])
    m.discount("pct20_forever", "cus_2", "sub_2")
    m.subscription("sub_3", "cus_3", ["quarter270"], status="past_due")
    m.subscription("sub_4", "cus_4", ["trial99"], status="trialing", trial_end=NOW + 7 * DAY)
    m.subscription("sub_5", "cus_5", ["week10", "api"])
    m.subscription("sub_6", "cus_6", ["eur200"], currency="eur")
    m.discount("eur50_repeating", "cus_6", "sub_6", start=NOW - 30 * DAY, end=NOW + 60 * DAY)
    m.subscription("sub_7", "cus_7", [("graduated", 8)])
    m.subscription("sub_8", "cus_8", ["monthly80"], cancel_at_period_end=True)
    return m


def test_worked_example_per_customer():
    assert mrr_of(worked_example()) == {
        "cus_1": 100.00, "cus_2": 80.00, "cus_3": 90.00, "cus_4": 0.00,
        "cus_5": 43.33, "cus_6": 200.00, "cus_7": 90.00, "cus_8": 0.00,
    }


def test_worked_example_totals_per_currency():
    table = traits(worked_example())
    assert table["mrr_minor"].to_dict() == {
        "cus_1": 10000, "cus_2": 8000, "cus_3": 9000, "cus_4": 0,
        "cus_5": 4333, "cus_6": 20000, "cus_7": 9000, "cus_8": 0,
    }
    assert mrr_by_currency(table) == {"usd": 403.33, "eur": 200.00}


def test_worked_example_repeating_coupon_counts_only_when_configured():
    # €50 off each monthly invoice while the repeating discount is in effect
    assert mrr_of(worked_example(), ALL_IN_EFFECT)["cus_6"] == 150.00


def test_subscription_and_item_views_of_the_worked_example():
    frames = worked_example().frames()
    subs = compute_subscription_mrr(frames, TraitsConfig(), NOW).set_index("id")
    assert subs.loc["sub_5", "mrr_minor"] == 4333
    assert subs.loc["sub_6", ["currency", "mrr"]].tolist() == ["eur", 200.0]
    assert subs.loc["sub_4", "mrr_minor"] == 0
    items = compute_item_mrr(frames, TraitsConfig(), NOW).set_index("id")
    assert items.loc["si_sub_5_1", "metered"]
    assert items.loc["si_sub_5_1", "mrr_minor"] == 0
    assert items.loc["si_sub_5_0", "mrr_minor"] == pytest.approx(1000 * 52 / 12)
    # the trial's undiscounted monthly amount is known even though it does not count
    assert items.loc["si_sub_4_0", "list_monthly_minor"] == 9900


@pytest.mark.parametrize("interval, count, unit, expected", [
    ("month", 1, 4900, 49.00),
    ("month", 3, 12000, 40.00),  # quarterly
    ("month", 6, 30000, 50.00),
    ("year", 1, 49000, 40.83),  # 4083.33 cents
    ("year", 2, 240000, 100.00),
    ("week", 1, 900, 39.00),
    ("week", 2, 1000, 21.67),  # 1000 x 52 / 24 = 2166.67 cents
    ("day", 1, 100, 30.42),  # 100 x 365 / 12 = 3041.67 cents
    ("day", 7, 700, 30.42),
])
def test_interval_normalization(interval, count, unit, expected):
    m = Mirror().customer("cus").price("p", unit, recurring_interval=interval, recurring_interval_count=count)
    m.subscription("sub", "cus", ["p"])
    assert mrr_of(m)["cus"] == expected


@pytest.mark.parametrize("status, expected", [
    ("active", 20.0), ("past_due", 20.0), ("trialing", 0.0), ("canceled", 0.0), ("unpaid", 0.0),
    ("incomplete", 0.0), ("incomplete_expired", 0.0), ("paused", 0.0),
])
def test_only_active_and_past_due_count(status, expected):
    m = Mirror().customer("cus").price("p", 2000).subscription("sub", "cus", ["p"], status=status)
    assert mrr_of(m)["cus"] == expected


def test_pause_collection_gives_zero():
    m = Mirror().customer("cus").price("p", 2000)
    m.subscription("sub", "cus", ["p"], pause_collection_behavior="keep_as_draft")
    row = traits(m).loc["cus"]
    assert row["mrr"] == 0.0
    assert row["subscription_status"] == "active"
    assert row["next_billing_date"] is None  # no invoice is collected while paused


def test_metered_items_are_excluded_by_usage_type_or_meter():
    m = Mirror().customer("cus").price("seat", 1500)
    m.price("usage", 3, recurring_usage_type="metered").price("meter", 7, recurring_meter="mtr_123")
    m.subscription("sub", "cus", ["seat", ("usage", None), ("meter", None)])
    assert mrr_of(m)["cus"] == 15.00


def test_quantity_multiplies_and_decimal_unit_amounts_are_exact():
    m = Mirror().customer("cus").price("p", "333.3333333333")
    m.subscription("sub", "cus", [("p", 3)])  # 999.9999999999 cents -> 1000 (rounded once)
    assert traits(m).loc["cus", "mrr_minor"] == 1000


def test_half_cents_round_half_even_once_per_customer():
    # two items of 0.5 cent each: summed before rounding (1 cent), not rounded per item (0 + 0)
    m = Mirror().customer("cus").price("half", "0.5")
    m.subscription("sub", "cus", ["half", "half"])
    assert traits(m).loc["cus", "mrr_minor"] == 1
    # 1806 cents a year = 150.5 cents a month -> 150 (half to even), 1818 -> 151.5 -> 152
    for unit, expected in ((1806, 150), (1818, 152)):
        m = Mirror().customer("cus").price("y", unit, recurring_interval="year")
        m.subscription("sub", "cus", ["y"])
        assert traits(m).loc["cus", "mrr_minor"] == expected



def test_two_subscriptions_add_up_and_the_bigger_item_is_the_plan():
    m = Mirror().customer("cus").price("basic", 1500, nickname="Basic").price("addon", 4000, nickname="Add-on")
    m.subscription("sub_old", "cus", ["basic"], created=NOW - 300 * DAY)
    m.subscription("sub_new", "cus", ["addon"], created=NOW - 10 * DAY)
    row = traits(m).loc["cus"]
    assert row["mrr"] == 55.00
    assert row["plan"] == "Add-on"


def test_subscriptions_in_another_currency_are_not_added():
    m = Mirror().customer("cus", currency="usd").price("usd", 1000).price("eur", 5000, currency="eur")
    m.subscription("sub_usd", "cus", ["usd"])
    m.subscription("sub_eur", "cus", ["eur"], currency="eur")
    row = traits(m).loc["cus"]
    assert (row["currency"], row["mrr"], row["plan"]) == ("usd", 10.00, "usd")


class TestCoupons:
    def mirror(self, coupon: dict, start: int = NOW - 30 * DAY, end: int | None = None,
               price: tuple = (2000, {})) -> Mirror:
        m = Mirror().customer("cus").price("p", price[0], **price[1])
        m.coupon("c", **coupon)
        m.subscription("sub", "cus", ["p"])
        m.discount("c", "cus", "sub", start=start, end=end)
        return m

    def test_forever_percent_off(self):
        assert mrr_of(self.mirror({"duration": "forever", "percent_off": 25.0}))["cus"] == 15.00

    def test_once_coupon_ignored_by_default_counted_while_attached_when_configured(self):
        m = self.mirror({"duration": "once", "percent_off": 50.0})
        assert mrr_of(m)["cus"] == 20.00
        assert mrr_of(m, ALL_IN_EFFECT)["cus"] == 10.00

    def test_repeating_coupon_in_effect(self):
        m = self.mirror({"duration": "repeating", "percent_off": 50.0, "duration_in_months": 3},
                        start=NOW - 30 * DAY, end=NOW + 60 * DAY)
        assert mrr_of(m)["cus"] == 20.00  # forever_only: ignored
        assert mrr_of(m, ALL_IN_EFFECT)["cus"] == 10.00

    def test_repeating_coupon_that_ended(self):
        m = self.mirror({"duration": "repeating", "percent_off": 50.0, "duration_in_months": 3},
                        start=NOW - 120 * DAY, end=NOW - 30 * DAY)
        assert mrr_of(m)["cus"] == 20.00
        assert mrr_of(m, ALL_IN_EFFECT)["cus"] == 20.00

    def test_discount_starting_later_is_not_in_effect(self):
        m = self.mirror({"duration": "forever", "percent_off": 50.0}, start=NOW + DAY)
        assert mrr_of(m)["cus"] == 20.00

    def test_amount_off_per_invoice_is_spread_over_the_billing_period(self):
        assert mrr_of(self.mirror({"duration": "forever", "amount_off": 500, "currency": "usd"}))["cus"] == 15.00
        annual = self.mirror({"duration": "forever", "amount_off": 12000, "currency": "usd"},
                             price=(120000, {"recurring_interval": "year"}))
        assert mrr_of(annual)["cus"] == 90.00  # (1200 - 120) / 12

    def test_amount_off_is_capped_at_zero(self):
        assert mrr_of(self.mirror({"duration": "forever", "amount_off": 5000, "currency": "usd"}))["cus"] == 0.0

    def test_amount_off_in_another_currency_does_not_apply(self):
        assert mrr_of(self.mirror({"duration": "forever", "amount_off": 500, "currency": "eur"}))["cus"] == 20.00

    def test_item_discount_comes_before_subscription_discount(self):
        m = Mirror().customer("cus").price("a", 10000).price("b", 2000)
        m.coupon("item_pct", "forever", percent_off=50.0)
        m.coupon("sub_off", "forever", amount_off=1000, currency="usd")
        m.subscription("sub", "cus", ["a", "b"])
        m.discount("item_pct", "cus", "sub", item="si_sub_0")
        m.discount("sub_off", "cus", "sub")
        # items: 100 x 0.5 + 20 = 70; then the subscription's 10 off -> 60
        assert mrr_of(m)["cus"] == 60.00

    def test_customer_discount_applies_to_subscriptions_without_their_own(self):
        m = Mirror().customer("cus").price("a", 10000).price("b", 2000)
        m.coupon("cust10", "forever", percent_off=10.0).coupon("sub50", "forever", percent_off=50.0)
        m.subscription("sub_a", "cus", ["a"])
        m.subscription("sub_b", "cus", ["b"])
        m.discount("cust10", "cus")  # customer-level
        m.discount("sub50", "cus", "sub_b")
        assert mrr_of(m)["cus"] == 90.00 + 10.00

    def test_hundred_percent_off_is_free(self):
        m = self.mirror({"duration": "forever", "percent_off": 100.0})
        assert mrr_of(m)["cus"] == 0.0

    def test_unknown_coupon_is_ignored(self):
        m = Mirror().customer("cus").price("p", 2000).subscription("sub", "cus", ["p"])
        m.discount("missing_coupon", "cus", "sub")
        assert mrr_of(m)["cus"] == 20.00


class TestTiersAndTransform:
    TIERS = [
        {"up_to": 10, "unit_amount_decimal": "1000", "flat_amount_decimal": None},
        {"up_to": 50, "unit_amount_decimal": "800", "flat_amount_decimal": "500"},
        {"up_to": None, "unit_amount_decimal": "600", "flat_amount_decimal": "1000"},
    ]

    def mrr(self, mode: str, quantity: int) -> float:
        m = Mirror().customer("cus")
        m.price("t", None, billing_scheme="tiered", tiers_mode=mode, tiers=self.TIERS)
        m.subscription("sub", "cus", [("t", quantity)])
        return mrr_of(m)["cus"]

    @pytest.mark.parametrize("quantity, expected", [
        (0, 0.0), (1, 10.00), (10, 100.00), (11, 93.00), (15, 125.00), (50, 405.00), (51, 316.00),
    ])
    def test_volume(self, quantity, expected):
        # the tier containing the quantity prices every unit, plus that tier's flat amount
        assert self.mrr("volume", quantity) == expected

    @pytest.mark.parametrize("quantity, expected", [
        (0, 0.0), (5, 50.00), (10, 100.00), (11, 113.00), (50, 425.00), (52, 447.00),
    ])
    def test_graduated(self, quantity, expected):
        # 10 x 10 + (q - 10) x 8 + 5 flat once tier 2 is reached; above 50: 6 each + 10 flat
        assert self.mrr("graduated", quantity) == expected

    def test_tiers_not_fetched_price_the_item_at_zero(self):
        m = Mirror().customer("cus").price("t", None, billing_scheme="tiered", tiers_mode="volume", tiers=None)
        m.subscription("sub", "cus", [("t", 3)])
        assert mrr_of(m)["cus"] == 0.0

    @pytest.mark.parametrize("rounding, quantity, expected", [
        ("up", 2501, 15.00), ("down", 2501, 10.00), ("up", 3000, 15.00), ("down", 999, 0.0),
    ])
    def test_transform_quantity(self, rounding, quantity, expected):
        m = Mirror().customer("cus").price("per_1000", 500, transform_divide_by=1000, transform_round=rounding)
        m.subscription("sub", "cus", [("per_1000", quantity)])
        assert mrr_of(m)["cus"] == expected
