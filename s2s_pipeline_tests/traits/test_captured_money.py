"""Money traits count captured money only (contract v2 ``lifetime_value``, ``refund_rate``, ``payment_count``,
``first_payment_at``, ``last_payment_at``), with lost disputes; plus ``payment_frequency_days``,
``paying_customer`` and ``trial_converted_at``. Objects in the pinned API's shapes
(``stripe_objects``) go through the mirror's own normalisation; expected values are
computed by hand in the comments (amounts in cents unless said otherwise). Charges
from event snapshots rendered before API 2025-03-31.basil are labelled ``before_basil``."""

from __future__ import annotations

import pandas as pd
import pytest

from s2s_pipeline_tests.traits import stripe_payment_objects as so
from s2s_pipeline_tests.traits.builders import DAY, NOW, Mirror
from s2s_pipeline_tests.traits.test_mrr import traits

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR = 3600


def one(mirror: Mirror, customer: str = "cus") -> pd.Series:
    return traits(mirror).loc[customer]


#: An API version before 2025-03-31.basil: event snapshots rendered at it show partial
#: captures and expiries the old way (the released money in ``amount_refunded``, a Refund for it).
BEFORE_BASIL = "2024-06-20"


def partial_capture(customer: str = "cus", authorized: int = 10000, captured: int = 6000, created: int = T0,
                    refunded_after: int = 0, currency: str = "usd") -> dict:
    """Authorized ``authorized``, captured ``captured``, in the pinned API's shape (since 2025-03-31.basil).

    Since basil a partial capture creates no Refund and does not update
    ``amount_refunded``, so it holds only what was refunded after capture
    (Stripe changelog 2025-03-31.basil, "remove refund from partial capture
    and payment cancellation flow").
    """
    return so.charge(customer, authorized, created, amount_captured=captured, currency=currency,
                     amount_refunded=refunded_after)


def partial_capture_before_basil(customer: str = "cus", authorized: int = 10000, captured: int = 6000,
                                 created: int = T0, refunded_after: int = 0, currency: str = "usd") -> dict:
    """The same charge as an event snapshot rendered before basil: the released remainder is in ``amount_refunded``.

    Mirror it with ``Mirror.stripe(..., api_version=BEFORE_BASIL)``.
    """
    released = authorized - captured
    return so.charge(customer, authorized, created, amount_captured=captured, currency=currency,
                     amount_refunded=released + refunded_after)


def expired_authorization(customer: str = "cus", amount: int = 5000, created: int = T0 + DAY) -> list[dict]:
    """An authorization never captured that expired, in the pinned API's shape: ``amount_captured`` 0,
    ``amount_refunded`` not updated, no Refund (basil: cancellations, at expiry too, make none)."""
    return [so.charge(customer, amount, created, captured=False)]


def expired_authorization_before_basil(customer: str = "cus", amount: int = 5000,
                                       created: int = T0 + DAY) -> list[dict]:
    """The same before basil: Stripe marked it refunded, with a Refund of reason ``expired_uncaptured_charge``."""
    ch = so.charge(customer, amount, created, captured=False, amount_refunded=amount)
    return [ch, so.refund(ch, amount, created + 7 * DAY, reason="expired_uncaptured_charge")]


class TestCapturedMoney:
    def test_authorize_then_capture_and_an_expired_authorization(self):
        # $100 authorized, $60 captured (amount_refunded stays 0) + $50 authorization expired (captured 0):
        # captured 6000 + 0; refunded after capture 0 -> LTV 60.00, refund_rate 0/6000 = 0,
        # payment_count 1 (the authorization is no payment)
        m = Mirror().customer("cus").stripe(partial_capture(), *expired_authorization())
        row = one(m)
        assert (row["lifetime_value"], row["lifetime_value_minor"], row["refund_rate"], row["payment_count"]) == \
            (60.0, 6000, 0.0, 1)
        assert (row["first_payment_at"], row["last_payment_at"]) == ("2026-01-01T00:00:00Z",) * 2
        assert row["spend_tier"] == "low"  # 60.00 > 0 and < 100

    def test_refund_after_a_partial_capture(self):
        # $100 authorized, $60 captured, then $30 refunded: amount_refunded 3000 (basil: the release is not in it)
        # refunded after capture 3000 -> LTV (6000 - 3000)/100 = 30.00, rate 3000/6000 = 0.5
        ch = partial_capture(refunded_after=3000)
        row = one(Mirror().customer("cus").stripe(ch, so.refund(ch, 3000, T0 + DAY)))
        assert (row["lifetime_value"], row["refund_rate"]) == (30.0, 0.5)

    def test_partial_capture_refunded_in_full(self):
        # $100 authorized, $60 captured, $60 refunded: amount_refunded 6000
        # refunded after capture min(6000, 6000) -> LTV 0.00, rate 6000/6000 = 1.0
        ch = partial_capture(refunded_after=6000)
        row = one(Mirror().customer("cus").stripe(ch, so.refund(ch, 6000, T0 + DAY)))
        assert (row["lifetime_value"], row["refund_rate"], row["payment_count"]) == (0.0, 1.0, 1)

    def test_before_basil_the_released_remainder_is_no_refund(self):
        # PRE-BASIL SHAPE (event snapshots rendered at 2024-06-20): amount_refunded includes the released 4000.
        # No refund after capture: 4000 - (10000 - 6000) = 0 -> LTV 60.00, rate 0;
        # $30 refunded after capture: amount_refunded 4000 + 3000 = 7000 -> 7000 - 4000 = 3000 -> 30.00, 0.5;
        # the expired $50 authorization (amount_refunded 5000, captured 0) counts nothing.
        m = Mirror().customer("cus").stripe(partial_capture_before_basil(), *expired_authorization_before_basil(),
                                            api_version=BEFORE_BASIL)
        row = one(m)
        assert (row["lifetime_value"], row["refund_rate"], row["payment_count"]) == (60.0, 0.0, 1)
        ch = partial_capture_before_basil(refunded_after=3000)
        row = one(Mirror().customer("cus").stripe(ch, so.refund(ch, 3000, T0 + DAY), api_version=BEFORE_BASIL))
        assert (row["lifetime_value"], row["refund_rate"]) == (30.0, 0.5)

    def test_a_pre_basil_charge_read_in_the_pinned_shape(self):
        # A charge partially captured before the account moved to basil, listed later at the pinned version:
        # amount_refunded 7000 > amount_captured 6000 cannot be refunds of captured money alone, so the
        # released 10000 - 6000 = 4000 is in it: refunded after capture 7000 - 4000 = 3000 -> 30.00, 0.5
        row = one(Mirror().customer("cus").stripe(partial_capture_before_basil(refunded_after=3000)))
        assert (row["lifetime_value"], row["refund_rate"]) == (30.0, 0.5)

    def test_partial_refund_of_a_full_capture(self):
        # captured 10000, refunded 2500 -> LTV 75.00, rate 2500/10000 = 0.25
        ch = so.charge("cus", 10000, T0, amount_refunded=2500)
        row = one(Mirror().customer("cus").stripe(ch, so.refund(ch, 2500, T0 + DAY)))
        assert (row["lifetime_value"], row["refund_rate"], row["payment_count"]) == (75.0, 0.25, 1)

    def test_authorization_not_yet_captured_is_no_payment(self):
        # captured False, amount_captured 0 -> nothing captured: LTV 0, no payment, refund_rate null
        row = one(Mirror().customer("cus").stripe(so.charge("cus", 5000, T0, captured=False)))
        assert (row["lifetime_value"], row["payment_count"], row["spend_tier"]) == (0.0, 0, "none")
        assert pd.isna(row["refund_rate"])
        assert row["first_payment_at"] is None and row["last_payment_at"] is None

    def test_only_an_expired_authorization(self):
        # never captured -> 0 captured, 0 refunded, rate null; the same for the pre-basil shape
        # (amount_refunded 5000 and an expired_uncaptured_charge refund)
        for objects, api_version in ((expired_authorization(), None),
                                     (expired_authorization_before_basil(), BEFORE_BASIL)):
            row = one(Mirror().customer("cus").stripe(*objects, api_version=api_version))
            assert (row["lifetime_value"], row["payment_count"]) == (0.0, 0)
            assert pd.isna(row["refund_rate"])

    def test_refund_rate_tie_rounds_half_even(self):
        # captured 20000, refunded 3: 3/20000 = 0.00015 -> 0.0002 (half-even; binary float gave 0.0001)
        # refunded 61 on another customer: 61/20000 = 0.00305 -> 0.0030 (binary float gave 0.0031)
        m = Mirror().customer("a").customer("b")
        m.stripe(so.charge("a", 20000, T0, amount_refunded=3), so.charge("b", 20000, T0, amount_refunded=61))
        table = traits(m)
        assert table.loc["a", "refund_rate"] == 0.0002
        assert table.loc["b", "refund_rate"] == 0.003

    def test_zero_decimal_partial_capture(self):
        # JPY: ¥10,000 authorized, ¥6,000 captured (¥4,000 released, not in amount_refunded) -> LTV 6000
        # (yen are major units), rate 0/6000 = 0
        m = Mirror().customer("cus", currency="jpy")
        m.stripe(partial_capture(authorized=10000, captured=6000, currency="jpy"))
        row = one(m)
        assert (row["lifetime_value"], row["lifetime_value_minor"], row["refund_rate"]) == (6000.0, 6000, 0.0)

    def test_three_decimal_currency(self):
        # KWD 12.340 captured (12340 fils), 2.110 refunded: (12340 - 2110) / 1000 = 10.230 -> 10.23
        # rate 2110/12340 = 0.170988... -> 0.1710
        m = Mirror().customer("cus", currency="kwd")
        m.stripe(so.charge("cus", 12340, T0, currency="kwd", amount_refunded=2110))
        row = one(m)
        assert (row["lifetime_value"], row["refund_rate"]) == (10.23, 0.171)


class TestDisputes:
    def with_dispute(self, status: str, disputed: int = 10000, refunded: int = 0, currency: str = "usd") -> pd.Series:
        ch = so.charge("cus", 10000, T0, amount_refunded=refunded, disputed=True, currency=currency)
        return one(Mirror().customer("cus").stripe(ch, so.dispute(ch, disputed, T0 + DAY, status=status)))

    def test_lost_dispute_lowers_lifetime_value(self):
        # captured 10000, lost 10000 -> LTV 0.00; a dispute is not a refund: rate 0/10000 = 0
        row = self.with_dispute("lost")
        assert (row["lifetime_value"], row["refund_rate"], row["payment_count"]) == (0.0, 0.0, 1)

    @pytest.mark.parametrize("status", ["won", "needs_response", "under_review", "warning_closed", "prevented"])
    def test_dispute_not_lost_keeps_the_money(self, status):
        # only a lost dispute takes money back: LTV stays 10000/100 = 100.00
        assert self.with_dispute(status)["lifetime_value"] == 100.0

    def test_partially_disputed_amount(self):
        # captured 10000, lost dispute of 4000 -> (10000 - 4000)/100 = 60.00
        assert self.with_dispute("lost", disputed=4000)["lifetime_value"] == 60.0

    def test_refund_and_lost_dispute_never_take_back_more_than_was_captured(self):
        # captured 10000, refunded 6000, lost 10000: returned min(10000, 6000 + 10000) = 10000 -> LTV 0.00
        # (Stripe withdraws no further dispute funds once a payment is refunded); rate 6000/10000 = 0.6
        row = self.with_dispute("lost", refunded=6000)
        assert (row["lifetime_value"], row["refund_rate"]) == (0.0, 0.6)

    def test_lost_dispute_on_a_charge_in_another_currency_is_not_subtracted(self):
        # customer in usd; the charge and its dispute are in eur: neither is in the usd LTV
        m = Mirror().customer("cus", currency="usd").stripe(so.charge("cus", 5000, T0))
        ch = so.charge("cus", 10000, T0 + DAY, currency="eur", disputed=True)
        row = one(m.stripe(ch, so.dispute(ch, 10000, T0 + 2 * DAY, status="lost")))
        assert row["lifetime_value"] == 50.0


class TestPaymentFrequency:
    def freq(self, *days_ago: float, captured: bool = True):
        m = Mirror().customer("cus")
        for d in days_ago:
            m.stripe(so.charge("cus", 1000, int(NOW - d * DAY), captured=captured))
        return one(m)["payment_frequency_days"]

    def test_no_or_one_payment_gives_null(self):
        assert pd.isna(self.freq())
        assert pd.isna(self.freq(10))

    def test_two_payments(self):
        # one gap: 40 - 10 = 30 days -> 30.0
        assert self.freq(40, 10) == 30.0

    def test_odd_number_of_gaps(self):
        # days ago 70, 60, 30, 10 -> gaps 10, 30, 20 -> sorted 10, 20, 30 -> median 20.0
        assert self.freq(70, 60, 30, 10) == 20.0

    def test_even_number_of_gaps(self):
        # days ago 16, 15, 13, 10, 0 -> gaps 1, 2, 3, 10 -> median (2 + 3) / 2 = 2.5
        assert self.freq(16, 15, 13, 10, 0) == 2.5

    def test_one_decimal_half_even(self):
        # gap 1.25 days (108,000 s) -> 1.2 (2 is even); gap 1.35 days (116,640 s) -> 1.4
        assert self.freq(11.25, 10) == 1.2
        assert self.freq(11.35, 10) == 1.4

    def test_trailing_365_days_boundary(self):
        # charges 366, 365 and 5 days ago: the window [now - 365 d, now] holds 365 and 5 -> gap 360.0
        assert self.freq(366, 365, 5) == 360.0
        # one second older than 365 days is outside: only one payment in the window -> null
        m = Mirror().customer("cus").stripe(so.charge("cus", 1000, NOW - 365 * DAY - 1),
                                            so.charge("cus", 1000, NOW - 5 * DAY))
        assert pd.isna(one(m)["payment_frequency_days"])

    def test_authorizations_are_not_payments(self):
        # captured 20 and 0 days ago, an uncaptured authorization 10 days ago: one gap of 20 -> 20.0
        m = Mirror().customer("cus").stripe(so.charge("cus", 1000, NOW - 20 * DAY), so.charge("cus", 1000, NOW),
                                            so.charge("cus", 1000, NOW - 10 * DAY, captured=False))
        assert one(m)["payment_frequency_days"] == 20.0


class TestPayingCustomer:
    @pytest.mark.parametrize("status, extra, paying", [
        ("active", {}, True), ("past_due", {}, True), ("trialing", {}, False), ("canceled", {}, False),
        ("active", {"cancel_at_period_end": True}, False),
    ])
    def test_true_while_mrr_above_zero(self, status, extra, paying):
        m = Mirror().customer("cus").price("p", 2000).subscription("sub", "cus", ["p"], status=status, **extra)
        assert one(m)["paying_customer"] == paying

    def test_one_off_payments_alone_are_no_paying_customer(self):
        # LTV 10.00 but mrr 0 -> not paying
        row = one(Mirror().customer("cus").stripe(so.charge("cus", 1000, T0)))
        assert (row["lifetime_value"], row["paying_customer"]) == (10.0, False)


class TestTrialConversion:
    TRIAL_END = T0 + 14 * DAY

    def mirror(self, status: str = "active", **sub) -> Mirror:
        m = Mirror().customer("cus").price("p", 2000)
        m.subscription("sub", "cus", ["p"], status=status, trial_start=T0, trial_end=self.TRIAL_END, **sub)
        # Stripe's $0 invoice when the trial starts [REFERENCE §B.5]
        return m.stripe(so.invoice("cus", "sub", T0, amount_paid=0, billing_reason="subscription_create"))

    def test_first_paid_invoice_after_trial_end(self):
        # invoice created at trial_end (the boundary counts), paid an hour later -> paid_at = 2026-01-15T01:00:00Z
        m = self.mirror().stripe(so.invoice("cus", "sub", self.TRIAL_END, amount_paid=2000,
                                            paid_at=self.TRIAL_END + HOUR),
                                 so.invoice("cus", "sub", self.TRIAL_END + 30 * DAY, amount_paid=2000))
        assert one(m)["trial_converted_at"] == "2026-01-15T01:00:00Z"

    def test_still_trialing(self):
        assert one(self.mirror(status="trialing"))["trial_converted_at"] is None

    def test_trial_ended_without_payment(self):
        # canceled at trial end (or paused without a payment method): only the $0 invoice -> null
        assert one(self.mirror(status="canceled", ended_at=self.TRIAL_END))["trial_converted_at"] is None
        m = self.mirror(status="past_due").stripe(so.invoice("cus", "sub", self.TRIAL_END, amount_paid=0,
                                                             status="open"))
        assert one(m)["trial_converted_at"] is None

    def test_an_invoice_paid_with_no_money_does_not_convert(self):
        # a 100%-off first invoice (amount_paid 0) is skipped; the next one with money converts
        m = self.mirror().stripe(so.invoice("cus", "sub", self.TRIAL_END, amount_paid=0),
                                 so.invoice("cus", "sub", self.TRIAL_END + 30 * DAY, amount_paid=2000))
        assert one(m)["trial_converted_at"] == "2026-02-14T00:00:00Z"  # T0 + 44 days

    def test_invoice_before_trial_end_does_not_count(self):
        # a paid invoice one second before trial_end (a one-off during the trial) -> not the conversion
        m = self.mirror().stripe(so.invoice("cus", "sub", self.TRIAL_END - 1, amount_paid=500))
        assert one(m)["trial_converted_at"] is None

    def test_another_subscriptions_invoice_does_not_count(self):
        m = self.mirror().stripe(so.invoice("cus", "sub_other", self.TRIAL_END, amount_paid=2000))
        assert one(m)["trial_converted_at"] is None

    def test_cancellation_after_conversion_still_counts(self):
        # Stripe: a cancellation after the first payment still counts as converted [REFERENCE §B.5, ST-TCR]
        m = self.mirror(status="canceled", ended_at=self.TRIAL_END + 20 * DAY)
        m.stripe(so.invoice("cus", "sub", self.TRIAL_END, amount_paid=2000))
        assert one(m)["trial_converted_at"] == "2026-01-15T00:00:00Z"

    def test_subscription_without_trial(self):
        m = Mirror().customer("cus").price("p", 2000).subscription("sub", "cus", ["p"])
        m.stripe(so.invoice("cus", "sub", T0, amount_paid=2000))
        assert one(m)["trial_converted_at"] is None

    def test_the_latest_trial_decides(self):
        # an old trial converted; a newer trial (later trial_end) is still running -> null until it converts
        m = self.mirror().stripe(so.invoice("cus", "sub", self.TRIAL_END, amount_paid=2000))
        m.subscription("sub_new", "cus", ["p"], status="trialing", created=NOW - DAY, trial_start=NOW - DAY,
                       trial_end=NOW + 13 * DAY)
        assert one(m)["trial_converted_at"] is None
        m.stripe(so.invoice("cus", "sub_new", NOW + 13 * DAY, amount_paid=2000))
        assert one(m)["trial_converted_at"] == "2026-02-13T12:00:00Z"  # NOW + 13 days
