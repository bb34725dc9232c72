"""Property tests: random mirrors keep the invariants of the trait table."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.frames import with_fast_dtypes
from s2s_pipeline_tests.traits.builders import DAY, NOW, Mirror

CURRENCIES = ["usd", "eur", "jpy"]
STATUSES = ["active", "past_due", "trialing", "canceled", "unpaid", "incomplete", "paused"]

price_st = st.fixed_dictionaries({
    "unit": st.one_of(st.integers(0, 500_000), st.decimals(0, 10_000, places=4).map(str)),
    "recurring_interval": st.sampled_from(["day", "week", "month", "year"]),
    "recurring_interval_count": st.integers(1, 12),
    "recurring_usage_type": st.sampled_from(["licensed", "licensed", "metered"]),
    "tiered": st.sampled_from([None, "volume", "graduated"]),
    "divide_by": st.sampled_from([None, None, 10, 1000]),
})
coupon_st = st.fixed_dictionaries({
    "duration": st.sampled_from(["forever", "once", "repeating"]),
    "percent_off": st.one_of(st.none(), st.floats(1, 100)),
    "amount_off": st.one_of(st.none(), st.integers(1, 1_000_000)),
})
charge_st = st.fixed_dictionaries({
    "customer": st.integers(0, 5),
    "status": st.sampled_from(["succeeded", "succeeded", "failed", "pending"]),
    "currency": st.sampled_from(CURRENCIES),
    "amount": st.integers(0, 10_000_000),
    "refund_share": st.sampled_from([0.0, 0.0, 0.3, 1.0]),
    "created": st.integers(NOW - 1000 * DAY, NOW),
})
subscription_st = st.fixed_dictionaries({
    "customer": st.integers(0, 5),
    "status": st.sampled_from(STATUSES),
    "cancel_at_period_end": st.booleans(),
    "prices": st.lists(st.integers(0, 3), min_size=1, max_size=3),
    "quantity": st.integers(0, 60),
    "coupon": st.one_of(st.none(), st.integers(0, 2)),
    "item_coupon": st.one_of(st.none(), st.integers(0, 2)),
    "created": st.integers(NOW - 1000 * DAY, NOW),
})
mirror_st = st.fixed_dictionaries({
    "customers": st.lists(st.tuples(st.sampled_from(CURRENCIES + [None]), st.booleans()), min_size=1, max_size=6),
    "prices": st.lists(price_st, min_size=4, max_size=4),
    "coupons": st.lists(coupon_st, min_size=3, max_size=3),
    "charges": st.lists(charge_st, max_size=25),
    "subscriptions": st.lists(subscription_st, max_size=8),
    "coupon_rule": st.sampled_from(["forever_only", "all_in_effect"]),
})


def build(spec: dict) -> tuple[Mirror, dict[str, str | None]]:
    m = Mirror()
    currency_of = {}
    for i, (currency, deleted) in enumerate(spec["customers"]):
        m.customer(f"cus_{i}", currency=currency, deleted=deleted and i > 0)
        currency_of[f"cus_{i}"] = currency
    for cur in CURRENCIES:
        for j, p in enumerate(spec["prices"]):
            extra = {}
            if p["tiered"]:
                extra = {"billing_scheme": "tiered", "tiers_mode": p["tiered"], "tiers": [
                    {"up_to": 5, "unit_amount_decimal": "1000", "flat_amount_decimal": "250"},
                    {"up_to": None, "unit_amount_decimal": str(p["unit"]), "flat_amount_decimal": None}]}
            if p["divide_by"]:
                extra.update(transform_divide_by=p["divide_by"], transform_round="up")
            m.price(f"p_{cur}_{j}", p["unit"], currency=cur, recurring_interval=p["recurring_interval"],
                    recurring_interval_count=p["recurring_interval_count"],
                    recurring_usage_type=p["recurring_usage_type"], **extra)
    for j, c in enumerate(spec["coupons"]):
        m.coupon(f"co_{j}", c["duration"], percent_off=c["percent_off"],
                 amount_off=None if c["percent_off"] else c["amount_off"], currency="usd")
    n = len(spec["customers"])
    for k, ch in enumerate(spec["charges"]):
        captured = ch["amount"] if ch["status"] == "succeeded" else 0
        m.charge(f"cus_{ch['customer'] % n}", ch["amount"], status=ch["status"], currency=ch["currency"],
                 amount_captured=captured, amount_refunded=int(captured * ch["refund_share"]), created=ch["created"])
    for k, s in enumerate(spec["subscriptions"]):
        customer = f"cus_{s['customer'] % n}"
        cur = currency_of[customer] or "usd"
        m.subscription(f"sub_{k}", customer, [(f"p_{cur}_{j}", s["quantity"]) for j in s["prices"]],
                       currency=cur, status=s["status"], cancel_at_period_end=s["cancel_at_period_end"],
                       created=s["created"])
        if s["coupon"] is not None:
            m.discount(f"co_{s['coupon']}", customer, f"sub_{k}", end=NOW + 30 * DAY)
        if s["item_coupon"] is not None:
            m.discount(f"co_{s['item_coupon']}", customer, f"sub_{k}", item=f"si_sub_{k}_0")
    return m, currency_of


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mirror_st)
def test_trait_table_invariants(spec):
    mirror, currency_of = build(spec)
    frames = mirror.frames()
    config = TraitsConfig(mrr_coupon_rule=spec["coupon_rule"])
    table = compute_customer_traits(frames, config, NOW)

    # exactly one row per non-deleted customer
    live = [r["id"] for r in mirror.rows["customers"] if not r["deleted"]]
    assert table["stripe_customer_id"].tolist() == live
    assert table["stripe_customer_id"].is_unique

    # MRR is never negative
    assert (table["mrr_minor"] >= 0).all()
    assert (table["mrr"] >= 0).all()

    # LTV = sum of net captured amounts of succeeded charges in the customer's currency
    by_id = table.set_index("stripe_customer_id")
    for cid in live:
        currency = by_id.loc[cid, "currency"]
        expected = sum(c["amount_captured"] - c["amount_refunded"] for c in mirror.rows["charges"]
                       if c["customer"] == cid and c["status"] == "succeeded" and c["currency"] == currency)
        assert by_id.loc[cid, "lifetime_value_minor"] == expected
        if currency_of[cid] is not None:
            assert currency == currency_of[cid]
        # contract v2: a payment is a succeeded charge that captured money
        payments = [c for c in mirror.rows["charges"]
                    if c["customer"] == cid and c["status"] == "succeeded" and c["amount_captured"] > 0]
        assert by_id.loc[cid, "payment_count"] == len(payments)

    # refund rate within 0..1
    rates = table["refund_rate"].dropna()
    assert ((rates >= 0) & (rates <= 1)).all()

    # the loader's categorical dtypes give the same table
    assert table.equals(compute_customer_traits(with_fast_dtypes(frames), config, NOW))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**9), st.integers(0, 10**9)), max_size=30))
def test_ltv_is_the_sum_of_net_captured_amounts(charges):
    m = Mirror()
    for i in range(4):
        m.customer(f"cus_{i}")
    for i, (who, captured, refunded) in enumerate(charges):
        refunded = min(refunded, captured)
        m.charge(f"cus_{who}", captured, amount_refunded=refunded, created=NOW - i)
    table = compute_customer_traits(m.frames(), TraitsConfig(), NOW).set_index("stripe_customer_id")
    for i in range(4):
        net = sum(c - min(r, c) for who, c, r in charges if who == i)
        assert table.loc[f"cus_{i}", "lifetime_value_minor"] == net
        assert table.loc[f"cus_{i}", "lifetime_value"] == round(net / 100, 2)
