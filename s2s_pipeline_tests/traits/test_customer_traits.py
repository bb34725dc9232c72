"""Customer traits (contract "Identify traits"), hand-computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.core.contract import IDENTIFY_TRAITS
from s2s_pipeline.core.times import iso_utc_array
from s2s_pipeline.traits.customer_traits import EXTRA_COLUMNS, compute_customer_traits
from s2s_pipeline.traits.frames import empty_frames
from s2s_pipeline.traits.money import currency_exponent, minor_to_major
from s2s_pipeline_tests.traits.builders import DAY, NOW, Mirror
from s2s_pipeline_tests.traits.test_mrr import traits

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def one(mirror: Mirror, customer: str = "cus", config: TraitsConfig | None = None) -> pd.Series:
    return traits(mirror, config).loc[customer]


def test_columns_and_dtypes():
    m = Mirror().customer("cus").charge("cus", 1000)
    table = compute_customer_traits(m.frames(), TraitsConfig(), NOW)
    assert tuple(table.columns) == IDENTIFY_TRAITS + EXTRA_COLUMNS
    assert str(table["refund_rate"].dtype) == "Float64"
    assert str(table["payment_count"].dtype) == "Int64"
    assert str(table["cancel_at_period_end"].dtype) == "boolean"
    assert str(table["payment_delinquent"].dtype) == "boolean"
    assert str(table["mrr_minor"].dtype) == "Int64"
    for col in ("email", "plan", "first_payment_at", "spend_tier", "user_id"):
        assert table[col].dtype == object


def test_empty_mirror_gives_an_empty_table():
    table = compute_customer_traits(empty_frames(), TraitsConfig(), NOW)
    assert len(table) == 0
    assert tuple(table.columns) == IDENTIFY_TRAITS + EXTRA_COLUMNS


def test_one_row_per_non_deleted_customer_in_input_order():
    m = Mirror().customer("cus_b").customer("cus_gone", deleted=True).customer("cus_a")
    m.charge("cus_gone", 5000)
    table = compute_customer_traits(m.frames(), TraitsConfig(), NOW)
    assert table["stripe_customer_id"].tolist() == ["cus_b", "cus_a"]
    assert table.index.tolist() == [0, 1]


class TestLifetimeValue:
    def test_partial_refund(self):
        m = Mirror().customer("cus").charge("cus", 10000, amount_refunded=2500)
        row = one(m)
        assert (row["lifetime_value"], row["lifetime_value_minor"], row["refund_rate"]) == (75.0, 7500, 0.25)

    def test_full_refund(self):
        m = Mirror().customer("cus").charge("cus", 10000, amount_refunded=10000, refunded=True)
        row = one(m)
        assert (row["lifetime_value"], row["refund_rate"], row["spend_tier"]) == (0.0, 1.0, "none")
        assert row["payment_count"] == 1  # a refunded charge still succeeded

    def test_refunded_charge_counts_in_refund_rate(self):
        m = Mirror().customer("cus").charge("cus", 10000).charge("cus", 20000, amount_refunded=20000)
        m.charge("cus", 30000, amount_refunded=1000)
        row = one(m)
        assert row["lifetime_value"] == 390.00
        assert row["refund_rate"] == round(21000 / 60000, 4)

    def test_refund_rate_is_rounded_to_four_decimals(self):
        m = Mirror().customer("cus").charge("cus", 30000, amount_refunded=10000)
        assert one(m)["refund_rate"] == 0.3333

    def test_failed_and_pending_charges_are_not_revenue(self):
        m = Mirror().customer("cus").charge("cus", 10000, created=T0)
        m.charge("cus", 99999, status="failed", created=T0 + DAY, card_brand="amex")
        m.charge("cus", 55555, status="pending", created=T0 + 2 * DAY)
        row = one(m)
        assert (row["lifetime_value"], row["payment_count"], row["refund_rate"]) == (100.0, 1, 0.0)
        assert row["last_payment_at"] == "2026-01-01T00:00:00Z"
        assert row["card_brand"] == "visa"  # of the latest *succeeded* charge

    def test_customer_without_charges(self):
        row = one(Mirror().customer("cus"))
        assert row["lifetime_value"] == 0.0
        assert row["lifetime_value_minor"] == 0
        assert row["payment_count"] == 0
        assert pd.isna(row["refund_rate"])
        assert row["spend_tier"] == "none"
        for col in ("first_payment_at", "last_payment_at", "payment_method_type", "card_brand", "plan",
                    "billing_interval", "next_billing_date", "trial_end_date", "user_id"):
            assert row[col] is None, col
        assert row["subscription_status"] == "none"
        assert not row["cancel_at_period_end"]
        assert not row["payment_delinquent"]

    def test_zero_decimal_currency(self):
        m = Mirror().customer("cus", currency="jpy").price("p", 1000, currency="jpy")
        m.subscription("sub", "cus", ["p"], currency="jpy")
        m.charge("cus", 3000, currency="jpy", amount_refunded=500)
        row = one(m)
        assert (row["currency"], row["lifetime_value"], row["lifetime_value_minor"], row["mrr"]) == \
            ("jpy", 2500.0, 2500, 1000.0)
        assert row["spend_tier"] == "low"  # jpy thresholds are 100x: medium from 10,000

    def test_charges_in_another_currency_are_not_added(self):
        m = Mirror().customer("cus", currency="usd")
        m.charge("cus", 10000, currency="usd", created=T0)
        m.charge("cus", 900000, currency="jpy", created=T0 + DAY, payment_method_type="link", card_brand=None)
        row = one(m)
        assert (row["lifetime_value"], row["refund_rate"]) == (100.0, 0.0)
        assert row["payment_count"] == 2
        assert row["last_payment_at"] == "2026-01-02T00:00:00Z"
        assert (row["payment_method_type"], row["card_brand"]) == ("link", None)

    def test_payment_dates_are_iso_utc(self):
        m = Mirror().customer("cus").charge("cus", 100, created=T0 + 5).charge("cus", 100, created=T0 + 3 * DAY)
        row = one(m)
        assert (row["first_payment_at"], row["last_payment_at"]) == ("2026-01-01T00:00:05Z", "2026-01-04T00:00:00Z")

    def test_latest_charge_tie_is_decided_by_id(self):
        m = Mirror().customer("cus")
        m.charge("cus", 100, created=T0, id="ch_a", card_brand="visa")
        m.charge("cus", 100, created=T0, id="ch_b", card_brand="amex")
        assert one(m)["card_brand"] == "amex"


class TestSpendTier:
    @pytest.mark.parametrize("cents, tier", [
        (0, "none"), (1, "low"), (9999, "low"), (10000, "medium"), (99999, "medium"), (100000, "high"),
        (999999, "high"), (1000000, "vip"), (5000000, "vip"),
    ])
    def test_usd_boundaries(self, cents, tier):
        m = Mirror().customer("cus")
        if cents:
            m.charge("cus", cents)
        assert one(m)["spend_tier"] == tier

    @pytest.mark.parametrize("yen, tier", [(9999, "low"), (10000, "medium"), (100000, "high"), (1000000, "vip")])
    def test_jpy_thresholds_are_100x(self, yen, tier):
        m = Mirror().customer("cus", currency="jpy").charge("cus", yen, currency="jpy")
        assert one(m)["spend_tier"] == tier

    @pytest.mark.parametrize("currency", ["eur", "gbp", "chf", "cad", "aud"])
    def test_other_default_currencies(self, currency):
        m = Mirror().customer("cus", currency=currency).charge("cus", 10000, currency=currency)
        assert one(m)["spend_tier"] == "medium"

    def test_unknown_currency_has_no_tier_unless_configured(self):
        m = Mirror().customer("cus", currency="sek").charge("cus", 500000, currency="sek")
        assert one(m)["spend_tier"] is None
        config = TraitsConfig(tier_thresholds={"sek": (1000, 10000, 100000)})
        assert one(m, config=config)["spend_tier"] == "medium"

    def test_invalid_thresholds_are_rejected(self):
        with pytest.raises(ValueError, match="increasing"):
            TraitsConfig(tier_thresholds={"usd": (1000, 100, 10000)})
        with pytest.raises(ValueError, match="mrr_coupon_rule"):
            TraitsConfig(mrr_coupon_rule="sometimes")


class TestSubscriptionTraits:
    def test_trial(self):
        m = Mirror().customer("cus").price("p", 9900, nickname="Pro")
        m.subscription("sub", "cus", [("p", 1, {"current_period_end": T0 + 14 * DAY})], status="trialing",
                       trial_start=T0, trial_end=T0 + 14 * DAY)
        row = one(m)
        assert (row["subscription_status"], row["mrr"], row["plan"], row["billing_interval"]) == \
            ("trialing", 0.0, "Pro", "month")
        assert row["trial_end_date"] == "2026-01-15T00:00:00Z"
        assert row["next_billing_date"] == "2026-01-15T00:00:00Z"

    def test_canceled_subscription_with_history(self):
        m = Mirror().customer("cus").price("p", 2000, nickname="Old plan")
        m.subscription("sub", "cus", ["p"], status="canceled", ended_at=NOW - 30 * DAY, canceled_at=NOW - 30 * DAY)
        m.charge("cus", 2000, created=NOW - 90 * DAY).charge("cus", 2000, created=NOW - 60 * DAY)
        row = one(m)
        assert (row["subscription_status"], row["mrr"], row["plan"], row["lifetime_value"]) == \
            ("canceled", 0.0, "Old plan", 40.0)
        assert row["next_billing_date"] is None
        assert row["payment_count"] == 2

    def test_current_subscription_is_the_newest_not_ended(self):
        m = Mirror().customer("cus").price("old", 1000, nickname="Old").price("new", 3000, nickname="New")
        m.subscription("sub_live", "cus", ["old"], created=NOW - 300 * DAY)
        m.subscription("sub_dead", "cus", ["new"], status="canceled", created=NOW - 10 * DAY, ended_at=NOW - DAY)
        row = one(m)
        assert (row["subscription_status"], row["plan"], row["mrr"]) == ("active", "Old", 10.0)

    def test_cancel_at_period_end(self):
        m = Mirror().customer("cus").price("p", 8000, nickname="Eighty")
        m.subscription("sub", "cus", ["p"], cancel_at_period_end=True)
        row = one(m)
        assert (row["mrr"], row["cancel_at_period_end"], row["subscription_status"], row["plan"]) == \
            (0.0, True, "active", "Eighty")
        assert row["next_billing_date"] is None

    def test_next_billing_date_is_the_main_items_period_end(self):
        m = Mirror().customer("cus").price("small", 500).price("big", 5000, nickname="Big")
        m.subscription("sub", "cus", [("small", 1, {"current_period_end": T0 + DAY}),
                                      ("big", 1, {"current_period_end": T0 + 2 * DAY})])
        row = one(m)
        assert (row["plan"], row["next_billing_date"]) == ("Big", "2026-01-03T00:00:00Z")

    def test_cancel_at_before_period_end_means_no_next_billing(self):
        m = Mirror().customer("cus").price("p", 500)
        m.subscription("sub", "cus", [("p", 1, {"current_period_end": T0 + 10 * DAY})], cancel_at=T0 + 5 * DAY)
        assert one(m)["next_billing_date"] is None

    def test_plan_falls_back_to_product_name_then_price_id(self):
        m = Mirror().product("prod_1", "Team product").customer("a").customer("b")
        m.price("price_named", 1000, product="prod_1").price("price_bare", 1000, product="prod_missing")
        m.subscription("sub_a", "a", ["price_named"]).subscription("sub_b", "b", ["price_bare"])
        table = traits(m)
        assert table.loc["a", "plan"] == "Team product"
        assert table.loc["b", "plan"] == "price_bare"

    def test_main_item_tie_is_decided_by_item_id(self):
        m = Mirror().customer("cus").price("a", 1000, nickname="A").price("b", 1000, nickname="B")
        m.subscription("sub", "cus", [("b", 1, {"id": "si_1"}), ("a", 1, {"id": "si_2"})])
        assert one(m)["plan"] == "B"

    def test_annual_billing_interval(self):
        m = Mirror().customer("cus").price("p", 120000, recurring_interval="year")
        m.subscription("sub", "cus", ["p"])
        row = one(m)
        assert (row["billing_interval"], row["mrr"]) == ("year", 100.0)


class TestDelinquency:
    def row(self, status: str = "active", invoices: list[dict] = ()) -> pd.Series:
        m = Mirror().customer("cus").price("p", 1000).subscription("sub", "cus", ["p"], status=status)
        for inv in invoices:
            m.invoice("cus", **inv)
        return one(m)

    @pytest.mark.parametrize("status, expected", [("past_due", True), ("unpaid", True), ("active", False),
                                                  ("canceled", False)])
    def test_by_subscription_status(self, status, expected):
        assert self.row(status)["payment_delinquent"] == expected

    def test_latest_invoice_open_after_failed_attempt(self):
        assert self.row(invoices=[{"created": T0, "status": "paid"},
                                  {"created": T0 + DAY, "status": "open", "attempt_count": 1}])["payment_delinquent"]

    def test_open_invoice_not_attempted_yet(self):
        assert not self.row(invoices=[{"created": T0, "status": "open", "attempt_count": 0}])["payment_delinquent"]

    def test_paid_after_the_failure(self):
        assert not self.row(invoices=[{"created": T0, "status": "open", "attempt_count": 2},
                                      {"created": T0 + DAY, "status": "paid"}])["payment_delinquent"]

    def test_a_newer_draft_does_not_hide_the_failure(self):
        assert self.row(invoices=[{"created": T0, "status": "open", "attempt_count": 2},
                                  {"created": T0 + DAY, "status": "draft", "attempt_count": 0}])["payment_delinquent"]

    def test_customer_without_subscription(self):
        m = Mirror().customer("cus").invoice("cus", created=T0, status="open", attempt_count=3)
        assert one(m)["payment_delinquent"]


class TestIdentityAndCurrency:
    def test_user_id_from_the_first_present_metadata_key(self):
        m = Mirror().customer("a", metadata={"segment_user_id": "seg_1", "user_id": "u_1"})
        m.customer("b", metadata={"segment_user_id": "", "user_id": "u_2"})
        m.customer("c", metadata={"other": "x"}).customer("d", metadata=None)
        table = traits(m)
        assert table["user_id"].tolist() == ["seg_1", "u_2", None, None]

    def test_identity_keys_are_configurable(self):
        m = Mirror().customer("a", metadata={"segment_user_id": "seg_1", "app_id": "app_9"})
        assert one(m, "a", TraitsConfig(identity_metadata_keys=("app_id",)))["user_id"] == "app_9"

    def test_company_from_metadata(self):
        m = Mirror().customer("a", metadata={"company_id": "acme", "company_name": "Acme Inc"}).customer("b")
        table = traits(m)
        assert table.loc["a", ["company_id", "company_name"]].tolist() == ["acme", "Acme Inc"]
        assert table.loc["b", ["company_id", "company_name"]].tolist() == [None, None]
        config = TraitsConfig(company_id_key="org", company_name_key="org_name")
        m2 = Mirror().customer("a", metadata={"org": "o1", "org_name": "Org"})
        assert one(m2, "a", config)[["company_id", "company_name"]].tolist() == ["o1", "Org"]

    def test_metadata_that_is_not_a_dict_is_ignored(self):
        for first in (["segment_user_id", "x"], {"user_id": "u_1"}):
            m = Mirror().customer("a", metadata=first).customer("b", metadata=["user_id", "u_2"])
            m.customer("c", metadata={"user_id": "u_3"})
            expected = ["u_1" if isinstance(first, dict) else None, None, "u_3"]
            assert traits(m)["user_id"].tolist() == expected

    def test_metadata_as_json_text(self):
        m = Mirror().customer("a", metadata='{"user_id": "u_7"}')
        assert one(m, "a")["user_id"] == "u_7"

    def test_currency_falls_back_to_subscription_then_charges(self):
        m = Mirror().customer("by_sub", currency=None).customer("by_charge", currency=None)
        m.customer("by_failed", currency=None).customer("nothing", currency=None)
        m.price("eur", 1000, currency="eur").subscription("sub", "by_sub", ["eur"], currency="eur")
        m.charge("by_charge", 500, currency="gbp").charge("by_failed", 700, currency="chf", status="failed")
        table = traits(m)
        assert table["currency"].to_dict() == {"by_sub": "eur", "by_charge": "gbp", "by_failed": "chf",
                                               "nothing": None}
        assert table.loc["by_sub", "mrr"] == 10.0
        assert table.loc["by_charge", "lifetime_value"] == 5.0
        assert table.loc["nothing", "spend_tier"] == "none"

    def test_subscription_without_currency_uses_its_prices_currency(self):
        m = Mirror().customer("cus", currency=None).price("p", 1500, currency="gbp")
        m.subscription("sub", "cus", ["p"], currency=None)
        row = one(m)
        assert (row["currency"], row["mrr"]) == ("gbp", 15.0)

    def test_currency_code_is_lowercased(self):
        m = Mirror().customer("cus", currency="USD").charge("cus", 1000, currency="usd")
        row = one(m)
        assert (row["currency"], row["lifetime_value"]) == ("usd", 10.0)


def test_money_helpers():
    assert currency_exponent("JPY") == 0
    assert currency_exponent("usd") == 2
    assert currency_exponent("kwd") == 3
    assert currency_exponent(None) == 2
    assert minor_to_major([5000, 3000, 5120, None], ["usd", "jpy", "kwd", "usd"]).tolist()[:3] == [50.0, 3000.0, 5.12]


def test_iso_utc_array():
    values = np.array([0, 1_769_860_800, -1])
    assert iso_utc_array(values, values >= 0).tolist() == ["1970-01-01T00:00:00Z", "2026-01-31T12:00:00Z", None]
