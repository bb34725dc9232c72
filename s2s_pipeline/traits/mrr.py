"""MRR per subscription item, subscription and customer (REFERENCE §A.2, contract "mrr").

Rules:

- Only subscriptions with status ``active`` or ``past_due`` count. ``trialing``,
  ``canceled``, ``unpaid``, ``incomplete``, ``incomplete_expired`` and ``paused``
  give 0, and so do subscriptions with ``pause_collection`` set, with a
  scheduled cancellation (``cancel_at_period_end``, or ``cancel_at`` set, in
  the future or already passed while Stripe has not ended it yet: Stripe's
  default, churn counts at the API call that schedules it), that ended
  (``ended_at``) or that are flagged deleted.
- Metered items (``recurring_usage_type == "metered"`` or ``recurring_meter`` set) are excluded.
- Amount per billing period: ``per_unit`` = ``unit_amount_decimal`` x q, where q is
  the quantity (missing -> 1) after ``transform_quantity`` (divide_by, then round
  up or down); ``tiered`` = from ``prices.tiers``: ``volume`` prices every unit at
  the tier that contains q and adds that tier's flat amount, ``graduated`` prices
  each tier's own units and adds the flat amount of every tier reached. A
  quantity of 0 is 0. Tiers not fetched (None) price the item at 0.
- Discounts: item discounts first (on the item's amount per period), then
  subscription discounts (on the subscription's monthly amount). A subscription
  without a subscription-level discount in effect takes the customer-level
  discounts instead (Stripe: the subscription's own discount wins over the
  customer's). Within one level, percentages multiply first, then amounts are
  taken off; ``amount_off`` is per invoice, so it is spread over the billing
  period (monthly factor below) and the result is capped at 0. An ``amount_off``
  coupon only applies to subscriptions in its currency. Which coupons count:
  ``TraitsConfig.mrr_coupon_rule`` -- ``forever_only`` (default, Stripe's
  default) or ``all_in_effect`` (every discount with ``start <= now < end``;
  ``end`` null means open-ended).
- Monthly factor with n = ``recurring_interval_count``: month 1/n, year 1/(12n),
  week 52/(12n), day 365/(12n). A subscription-level ``amount_off`` uses the
  factor of the subscription's shortest item interval (its most frequent invoice).

Precision: amounts are float64 minor units on vectorized columns and are
rounded half-even once, per customer (or per subscription for the
subscription view), by :func:`round_minor`. float64 carries ~15.9 significant
digits and each step (one multiplication by a factor, a discount, a sum over a
customer's few items) adds at most about one ulp (1.1e-16 relative). For a
monthly amount below 1e9 minor units (USD 10M a month per customer) the
accumulated error stays far below 1e-6 minor units, so :func:`round_minor`
first snaps to 1e-6 minor units -- turning representation noise such as
150.49999999999997 back into the exact half 150.5 -- and then rounds half to
even. Only an amount that is genuinely within 1e-6 of a half (possible only with
a ``unit_amount_decimal`` of more than 6 decimals) could round the other way,
by one minor unit. Money that is summed exactly (LTV) uses int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.frames import (
    Lookup,
    MirrorFrames,
    Vocabulary,
    bools,
    column,
    floats,
    ints,
    isin,
    json_values,
    present,
    take_text,
)
from s2s_pipeline.traits.money import exponents, major_from_exponents

#: Statuses whose subscriptions count for MRR (Stripe Billing analytics).
MRR_STATUSES = ("active", "past_due")
#: Statuses of subscriptions that are over.
ENDED_STATUSES = ("canceled", "incomplete_expired")

_NO_TIME = np.iinfo(np.int64).min

# interval -> (numerator, denominator per interval_count) of the monthly factor
_MONTHLY = {"month": (1.0, 1.0), "year": (1.0, 12.0), "week": (52.0, 12.0), "day": (365.0, 12.0)}


def round_minor(amounts: np.ndarray) -> np.ndarray:
    """Float minor units -> int64, half to even, after snapping float noise to 1e-6 (see module doc)."""
    snapped = np.round(np.asarray(amounts, dtype=np.float64), 6)
    return np.rint(snapped).astype(np.int64)


def cancellation_scheduled(subs: pd.DataFrame) -> np.ndarray:
    """Per subscription row: a cancellation is scheduled (``cancel_at_period_end``, or ``cancel_at`` set)."""
    return bools(column(subs, "cancel_at_period_end")) | present(column(subs, "cancel_at"))


@dataclass
class SubscriptionArrays:
    """Per subscription row: the facts the MRR and the customer traits need."""

    customer: np.ndarray  # customer position, -1 unknown
    currency: np.ndarray  # currency code (Vocabulary), -1 missing
    created: np.ndarray
    ended: np.ndarray  # canceled / incomplete_expired / ended_at set / deleted
    counts_for_mrr: np.ndarray  # the status rules above

    @classmethod
    def build(cls, subs: pd.DataFrame, customers: Lookup, currencies: Vocabulary) -> "SubscriptionArrays":
        deleted = bools(column(subs, "deleted"))
        ended = isin(column(subs, "status"), ENDED_STATUSES) | present(column(subs, "ended_at")) | deleted
        counts = (isin(column(subs, "status"), MRR_STATUSES) & ~ended
                  & ~cancellation_scheduled(subs)
                  & ~present(column(subs, "pause_collection_behavior")))
        return cls(
            customer=customers.positions(column(subs, "customer")),
            currency=currencies.encode(column(subs, "currency")),
            created=ints(column(subs, "created"), _NO_TIME),
            ended=ended,
            counts_for_mrr=counts,
        )


@dataclass
class PriceArrays:
    """Per price row: amount rules and the tier table."""

    unit: np.ndarray  # unit amount (minor units, float); NaN unknown
    tiered: np.ndarray
    graduated: np.ndarray
    metered: np.ndarray
    monthly_factor: np.ndarray  # 0 without a recurring interval
    divide_by: np.ndarray  # 0 = no transform_quantity
    round_up: np.ndarray
    currency: np.ndarray
    # tier table, rows grouped by price: price's tiers are tier_*[tier_start[p] : tier_start[p] + tier_count[p]]
    tier_start: np.ndarray
    tier_count: np.ndarray
    tier_lower: np.ndarray
    tier_upper: np.ndarray
    tier_unit: np.ndarray
    tier_flat: np.ndarray

    @classmethod
    def build(cls, prices: pd.DataFrame, currencies: Vocabulary) -> "PriceArrays":
        n = len(prices)
        unit = floats(column(prices, "unit_amount_decimal"))
        fallback = floats(column(prices, "unit_amount"))
        unit = np.where(np.isnan(unit), fallback, unit)
        interval_count = np.maximum(ints(column(prices, "recurring_interval_count"), 1), 1)
        factor = np.zeros(n)
        intervals = column(prices, "recurring_interval")
        for name, (num, den) in _MONTHLY.items():
            mask = isin(intervals, [name])
            factor[mask] = num / (den * interval_count[mask])
        tiered = isin(column(prices, "billing_scheme"), ["tiered"])
        starts, counts, lower, upper, t_unit, t_flat = _tier_table(json_values(column(prices, "tiers")), tiered)
        return cls(
            unit=unit,
            tiered=tiered,
            graduated=isin(column(prices, "tiers_mode"), ["graduated"]),
            metered=(isin(column(prices, "recurring_usage_type"), ["metered"])
                     | present(column(prices, "recurring_meter"))),
            monthly_factor=factor,
            divide_by=np.maximum(ints(column(prices, "transform_divide_by"), 0), 0),
            round_up=isin(column(prices, "transform_round"), ["up"]),
            currency=currencies.encode(column(prices, "currency")),
            tier_start=starts, tier_count=counts, tier_lower=lower, tier_upper=upper,
            tier_unit=t_unit, tier_flat=t_flat,
        )


def _decimal(value) -> float:
    """Decimal text (or a number) -> float; missing or invalid -> 0."""
    if value is None:
        return 0.0
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0.0


def _tier_table(tiers: pd.Series, tiered: np.ndarray):
    """Flatten the tiers of tiered prices. One pass over the price catalogue (not over customers)."""
    n = len(tiers)
    counts = np.zeros(n, dtype=np.int64)
    lower, upper, unit, flat = [], [], [], []
    values = tiers.to_numpy(dtype=object)
    for p in np.flatnonzero(tiered):
        price_tiers = values[p]
        if not isinstance(price_tiers, (list, tuple)):
            continue  # tiers not fetched: the item is priced at 0
        bound = 0.0
        for tier in price_tiers:
            up_to = tier.get("up_to")
            top = np.inf if up_to in (None, "inf") else float(up_to)
            lower.append(bound)
            upper.append(top)
            unit.append(_decimal(tier.get("unit_amount_decimal", tier.get("unit_amount"))))
            flat.append(_decimal(tier.get("flat_amount_decimal", tier.get("flat_amount"))))
            bound = top
        counts[p] = len(price_tiers)
    starts = np.cumsum(counts) - counts
    return (starts, counts, np.array(lower, dtype=np.float64), np.array(upper, dtype=np.float64),
            np.array(unit, dtype=np.float64), np.array(flat, dtype=np.float64))


@dataclass
class ItemMrr:
    """Per subscription item row."""

    subscription: np.ndarray  # subscription row, -1 unknown
    customer: np.ndarray  # customer position, -1 unknown
    currency: np.ndarray  # the subscription's currency (else the price's)
    price: np.ndarray  # price row, -1 unknown
    metered: np.ndarray
    list_monthly: np.ndarray  # before discounts and status rules (0 for metered), float minor units
    mrr: np.ndarray  # what the item contributes to MRR, float minor units (unrounded)


def _amount_per_period(items: pd.DataFrame, item_price: np.ndarray, prices: PriceArrays) -> np.ndarray:
    n = len(items)
    known = item_price >= 0
    quantity = ints(column(items, "quantity"), 1).astype(np.float64)
    amount = np.zeros(n)
    tiered = _pad(prices.tiered, False)[item_price]
    per_unit = known & ~tiered
    divide_by = _pad(prices.divide_by, 0)[item_price].astype(np.float64)
    steps = quantity / np.maximum(divide_by, 1.0)
    transformed = np.where(_pad(prices.round_up, False)[item_price], np.ceil(steps), np.floor(steps))
    q = np.where(divide_by > 0, transformed, quantity)
    unit = np.nan_to_num(_pad(prices.unit, np.nan)[item_price], nan=0.0)
    amount[per_unit] = unit[per_unit] * q[per_unit]

    tiered_rows = np.flatnonzero(known & tiered & (_pad(prices.tier_count, 0)[item_price] > 0))
    if tiered_rows.size:
        p = item_price
        tp = p[tiered_rows]
        counts = prices.tier_count[tp]
        rep = np.repeat(tiered_rows, counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        t = np.repeat(prices.tier_start[tp], counts) + within
        qr = quantity[rep]
        lo, hi, t_unit, t_flat = prices.tier_lower[t], prices.tier_upper[t], prices.tier_unit[t], prices.tier_flat[t]
        graduated = prices.graduated[p[rep]]
        units_in = np.clip(np.minimum(qr, hi) - lo, 0, None)
        grad_value = units_in * t_unit + np.where(units_in > 0, t_flat, 0.0)
        contains = (qr > lo) & (qr <= hi)
        vol_value = np.where(contains, qr * t_unit + t_flat, 0.0)
        value = np.where(graduated, grad_value, vol_value)
        amount += np.bincount(rep, weights=value, minlength=n)
    return amount


def _pad(values: np.ndarray, fill) -> np.ndarray:
    """``values`` plus one trailing entry for "unknown" (index -1 then reads ``fill``)."""
    return np.append(values, np.array([fill], dtype=values.dtype))


def compute_item_arrays(frames: MirrorFrames, config: TraitsConfig, now: int, customers: Lookup,
                        currencies: Vocabulary, subs: SubscriptionArrays,
                        sub_lookup: Lookup) -> ItemMrr:
    """MRR of every subscription item (unrounded float minor units), following the module rules."""
    items = frames.subscription_items
    n_items, n_subs = len(items), len(subs.customer)
    prices = PriceArrays.build(frames.prices, currencies)
    item_sub = sub_lookup.positions(column(items, "subscription"))
    item_price = Lookup(column(frames.prices, "id")).positions(column(items, "price"))
    has_sub, price_known = item_sub >= 0, item_price >= 0
    # index -1 (unknown) reads the padded last entry
    sub_currency = _pad(subs.currency, -1)[item_sub]
    item_customer = np.where(has_sub, _pad(subs.customer, -1)[item_sub],
                             customers.positions(column(items, "customer")))
    item_currency = np.where(sub_currency >= 0, sub_currency, _pad(prices.currency, -1)[item_price])
    metered = _pad(prices.metered, False)[item_price]
    factor = _pad(prices.monthly_factor, 0.0)[item_price]

    per_period = np.where(metered, 0.0, _amount_per_period(items, item_price, prices))
    list_monthly = per_period * factor

    discount = _Discounts(frames, config, now, customers, currencies, sub_lookup,
                          Lookup(column(items, "id")))
    # item level, on the amount per period
    item_mult, item_off = discount.item_level(n_items, item_currency)
    after_item = np.maximum(per_period * item_mult - item_off, 0.0) * factor

    # subscription level, on the subscription's monthly amount
    counted = has_sub & price_known & ~metered
    sub_before = np.bincount(item_sub[counted], weights=after_item[counted], minlength=n_subs)
    sub_factor = np.zeros(n_subs)
    np.maximum.at(sub_factor, item_sub[counted], factor[counted])
    sub_mult, sub_off = discount.subscription_level(subs)
    sub_after = np.maximum(sub_before * sub_mult - sub_off * sub_factor, 0.0)
    ratio = np.divide(sub_after, sub_before, out=np.zeros(n_subs), where=sub_before > 0)
    counts = counted & _pad(subs.counts_for_mrr, False)[item_sub]
    mrr = np.where(counts, after_item * _pad(ratio, 0.0)[item_sub], 0.0)
    return ItemMrr(subscription=item_sub, customer=item_customer, currency=item_currency, price=item_price,
                   metered=metered, list_monthly=list_monthly, mrr=mrr)


class _Discounts:
    """The discounts that count under the coupon rule, resolved to items, subscriptions, customers."""

    def __init__(self, frames: MirrorFrames, config: TraitsConfig, now: int, customers: Lookup,
                 currencies: Vocabulary, sub_lookup: Lookup, item_lookup: Lookup) -> None:
        d = frames.discounts
        coupons = frames.coupons
        c = Lookup(column(coupons, "id")).positions(column(d, "coupon"))
        known = c >= 0
        start = ints(column(d, "start"), _NO_TIME)
        end = ints(column(d, "end"), np.iinfo(np.int64).max)
        in_effect = known & (start <= now) & (end > now)
        if config.mrr_coupon_rule == "forever_only":
            counts = in_effect & _pad(isin(column(coupons, "duration"), ["forever"]), False)[c]
        else:
            counts = in_effect
        percent = floats(column(coupons, "percent_off"))
        amount_off = floats(column(coupons, "amount_off"))
        coupon_currency = currencies.encode(column(coupons, "currency"))
        self.multiplier = np.clip(1.0 - np.nan_to_num(_pad(percent, np.nan)[c]) / 100.0, 0.0, 1.0)
        self.amount = np.nan_to_num(_pad(amount_off, np.nan)[c])
        self.currency = _pad(coupon_currency, -1)[c]
        has_item = present(column(d, "subscription_item"))
        has_sub = present(column(d, "subscription"))
        self.item = np.where(has_item, item_lookup.positions(column(d, "subscription_item")), -1)
        self.sub = np.where(~has_item & has_sub, sub_lookup.positions(column(d, "subscription")), -1)
        self.customer = np.where(~has_item & ~has_sub, customers.positions(column(d, "customer")), -1)
        self.counts = counts
        self.in_effect = in_effect

    def _apply(self, targets: np.ndarray, n: int, target_currency: np.ndarray):
        mult = np.ones(n)
        off = np.zeros(n)
        rows = np.flatnonzero(self.counts & (targets >= 0))
        if rows.size:
            t = targets[rows]
            np.multiply.at(mult, t, self.multiplier[rows])
            same_currency = self.currency[rows] == target_currency[t]
            np.add.at(off, t[same_currency], self.amount[rows][same_currency])
        return mult, off

    def item_level(self, n_items: int, item_currency: np.ndarray):
        return self._apply(self.item, n_items, item_currency)

    def subscription_level(self, subs: SubscriptionArrays):
        n_subs = len(subs.customer)
        mult, off = self._apply(self.sub, n_subs, subs.currency)
        cust_rows = np.flatnonzero(self.counts & (self.customer >= 0))
        if cust_rows.size and n_subs:
            own = np.zeros(n_subs, dtype=bool)
            own[self.sub[(self.sub >= 0) & self.in_effect]] = True
            takers = np.flatnonzero(~own & (subs.customer >= 0))
            # customer discounts x the customer's subscriptions without their own discount
            frame = pd.DataFrame({"customer": self.customer[cust_rows], "row": cust_rows})
            pairs = frame.merge(pd.DataFrame({"customer": subs.customer[takers], "sub": takers}), on="customer")
            r, s = pairs["row"].to_numpy(), pairs["sub"].to_numpy()
            np.multiply.at(mult, s, self.multiplier[r])
            same = self.currency[r] == subs.currency[s]
            np.add.at(off, s[same], self.amount[r][same])
        return mult, off


def subscription_currency(subs: SubscriptionArrays, items: ItemMrr) -> np.ndarray:
    """Each subscription's currency code; one without a currency takes its items' (prices') currency."""
    from_items = np.full(len(subs.currency), -1, dtype=np.int32)
    with_sub = items.subscription >= 0
    np.maximum.at(from_items, items.subscription[with_sub], items.currency[with_sub])
    return np.where(subs.currency >= 0, subs.currency, from_items)


def _context(frames: MirrorFrames):
    currencies = Vocabulary()
    customers = Lookup(column(frames.customers, "id"))
    sub_lookup = Lookup(column(frames.subscriptions, "id"))
    subs = SubscriptionArrays.build(frames.subscriptions, customers, currencies)
    return currencies, customers, sub_lookup, subs


def compute_item_mrr(frames: MirrorFrames, config: TraitsConfig, now: int) -> pd.DataFrame:
    """One row per subscription item: ``id``, ``subscription``, ``currency``, ``metered``,
    ``list_monthly_minor`` (undiscounted, status ignored) and ``mrr_minor`` (float, unrounded)."""
    currencies, customers, sub_lookup, subs = _context(frames)
    items = compute_item_arrays(frames, config, now, customers, currencies, subs, sub_lookup)
    return pd.DataFrame({
        "id": column(frames.subscription_items, "id").to_numpy(dtype=object),
        "subscription": column(frames.subscription_items, "subscription").to_numpy(dtype=object),
        "currency": currencies.decode(items.currency),
        "metered": items.metered,
        "list_monthly_minor": items.list_monthly,
        "mrr_minor": items.mrr,
    })


def compute_subscription_mrr(frames: MirrorFrames, config: TraitsConfig, now: int) -> pd.DataFrame:
    """One row per subscription: ``id``, ``customer``, ``currency``, ``mrr_minor`` (int, rounded
    half-even once per subscription) and ``mrr`` (major units, 2 decimals).

    For event properties (``Subscription Started`` ...): build a MirrorFrames with
    the one subscription, its items, prices, discounts and coupons.
    """
    currencies, customers, sub_lookup, subs = _context(frames)
    items = compute_item_arrays(frames, config, now, customers, currencies, subs, sub_lookup)
    n_subs = len(subs.customer)
    ok = items.subscription >= 0
    total = np.bincount(items.subscription[ok], weights=items.mrr[ok], minlength=n_subs)
    minor = round_minor(total)
    currency = subscription_currency(subs, items)
    exp = np.append(exponents(currencies.values), 2)
    return pd.DataFrame({
        "id": column(frames.subscriptions, "id").to_numpy(dtype=object),
        "customer": take_text(column(frames.subscriptions, "customer"), np.arange(n_subs)),
        "currency": currencies.decode(currency),
        "mrr_minor": minor,
        "mrr": major_from_exponents(minor, exp[currency]),
    })
