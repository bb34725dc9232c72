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
- The price of an item is the price's ``currency_options`` entry for the
  subscription's currency when the price has one (unit amount, tiers and
  ``tax_behavior`` of that currency), else the price itself.
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
  period (monthly factor below) and the result is capped at 0. A coupon with
  ``applies_to.products`` only discounts items of those products (an
  ``amount_off`` at most their amount, shared among them pro rata). An
  ``amount_off`` coupon applies in its own currency, or in the subscription's
  currency through its ``currency_options`` entry; without either it is
  skipped. A coupon flagged deleted still counts (Stripe keeps applied
  discounts of a deleted coupon). Which coupons count:
  ``TraitsConfig.mrr_coupon_rule`` -- ``forever_only`` (default, Stripe's
  default) or ``all_in_effect`` (every discount with ``start <= now < end``;
  ``end`` null means open-ended).
- Tax is never MRR. Manual tax rates: the item's ``tax_rates``, else the
  subscription's ``default_tax_rates``; the inclusive ones (percentages p1, p2
  ...) are inside the amount, so it is multiplied by 100 / (100 + p1 + p2 ...);
  exclusive rates are added on top of the price and change nothing. Stripe Tax
  (``automatic_tax.enabled``) with a tax-inclusive price (``tax_behavior``
  ``inclusive``): the item is multiplied by ``total_excluding_tax / total`` of
  the subscription's newest ``paid`` or ``open`` invoice with ``total > 0``
  (the share of what the customer pays that is not tax); no such invoice
  mirrored leaves the amount as it is.
- Monthly factor with n = ``recurring_interval_count``: month 1/n, year 1/(12n),
  week 52/(12n), day 365/(12n). A subscription-level ``amount_off`` uses the
  factor of the subscription's shortest item interval (its most frequent invoice).

Exactness: the result is the exact rational value of these rules, rounded half
to even once per customer and currency (:func:`mrr_minor_totals`), or per
subscription for the subscription view, to the currency's display step
(``money.display_step``: 0.01 of the major unit, e.g. 10 fils for KWD, or the
minor unit when that is coarser), so ``mrr_minor`` is a multiple of the step
and the major-unit figure is that same rounding, not a second one. The rules are written once, over
vectorized columns, for two number types: float64 for every row, and exact
``Fraction``s (decimal text parsed exactly, factors such as 52/12 and
100/119 kept as fractions) for the few groups whose float total lies so close
to a half that float error (at most about 100 ulps of the largest amount the
group handles; the tolerance allows 2**-36 of it, ~10^5 ulps) could decide the
rounding. Those groups (exact halves such as 1806 cents a year = 150.5 a
month, mostly) are recomputed exactly, so no total is ever rounded from a
float that might be on the wrong side of a half. Money that is summed
exactly (LTV) uses int64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Callable, Iterable

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
    text_values,
)
from s2s_pipeline.traits.money import display_step, exponents, major_from_exponents

#: Statuses whose subscriptions count for MRR (Stripe Billing analytics).
MRR_STATUSES = ("active", "past_due")
#: Statuses of subscriptions that are over.
ENDED_STATUSES = ("canceled", "incomplete_expired")
#: Invoice statuses whose amounts show the tax Stripe Tax charges (not drafts, not voided).
TAX_EVIDENCE_STATUSES = ("paid", "open")

_NO_TIME = np.iinfo(np.int64).min

# interval -> (numerator, denominator per interval_count) of the monthly factor
_MONTHLY = {"month": (1, 1), "year": (1, 12), "week": (52, 12), "day": (365, 12)}

#: Relative float error allowed for before a total is recomputed exactly (see module doc).
_RELATIVE_TOLERANCE = 2.0 ** -36
_ABSOLUTE_TOLERANCE = 1e-9



def cancellation_scheduled(subs: pd.DataFrame) -> np.ndarray:
    """Per subscription row: a cancellation is scheduled (``cancel_at_period_end``, or ``cancel_at`` set)."""
    return bools(column(subs, "cancel_at_period_end")) | present(column(subs, "cancel_at"))


# -- number types ------------------------------------------------------------------


def _fraction(value) -> Fraction | None:
    """Decimal text or a number -> exact Fraction (a float by its shortest repr, as Stripe wrote it)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        return Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


class _Floats:
    """float64 columns: fast, used for every row."""

    exact = False

    @staticmethod
    def parse(values: Iterable) -> np.ndarray:
        """Decimal text / numbers -> float64, NaN when missing or invalid."""
        return floats(pd.Series(list(values) if not isinstance(values, pd.Series) else values, dtype=object))

    @staticmethod
    def column(series: pd.Series) -> np.ndarray:
        return floats(series)

    @staticmethod
    def zeros(n: int) -> np.ndarray:
        return np.zeros(n)

    @staticmethod
    def ones(n: int) -> np.ndarray:
        return np.ones(n)

    @staticmethod
    def whole(values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    @staticmethod
    def scalar(value) -> float:
        return float(value)

    @staticmethod
    def ratio(numerator, denominator) -> np.ndarray:
        return np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)

    @staticmethod
    def known(values: np.ndarray) -> np.ndarray:
        return ~np.isnan(values)

    @staticmethod
    def or_zero(values: np.ndarray) -> np.ndarray:
        return np.nan_to_num(values, nan=0.0)

    @staticmethod
    def sum_at(n: int, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=n)

    @staticmethod
    def divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """a / b, 0 where b is 0."""
        return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)


class _Fractions:
    """Object columns of exact Fractions: for the few rows whose rounding float cannot decide."""

    exact = True

    @staticmethod
    def parse(values: Iterable) -> np.ndarray:
        parsed = [_fraction(v) for v in values]
        out = np.empty(len(parsed), dtype=object)
        out[:] = parsed
        return out

    @classmethod
    def column(cls, series: pd.Series) -> np.ndarray:
        return cls.parse(series.astype(object).to_numpy(dtype=object))

    @staticmethod
    def zeros(n: int) -> np.ndarray:
        return np.full(n, Fraction(0), dtype=object)

    @staticmethod
    def ones(n: int) -> np.ndarray:
        return np.full(n, Fraction(1), dtype=object)

    @staticmethod
    def whole(values: np.ndarray) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = [Fraction(int(v)) for v in values]
        return out

    @staticmethod
    def scalar(value) -> Fraction:
        return Fraction(value)

    @staticmethod
    def ratio(numerator, denominator) -> np.ndarray:
        """numerator / denominator (integers, arrays or scalars broadcast) as Fractions."""
        num, den = np.broadcast_arrays(np.atleast_1d(np.asarray(numerator, dtype=object)),
                                       np.atleast_1d(np.asarray(denominator, dtype=object)))
        out = np.empty(num.shape[0], dtype=object)
        out[:] = [Fraction(int(a), int(b)) for a, b in zip(num, den)]
        return out

    @staticmethod
    def known(values: np.ndarray) -> np.ndarray:
        return np.fromiter((v is not None for v in values), dtype=bool, count=len(values))

    @classmethod
    def or_zero(cls, values: np.ndarray) -> np.ndarray:
        out = values.copy()
        out[~cls.known(values)] = Fraction(0)
        return out

    @classmethod
    def sum_at(cls, n: int, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = cls.zeros(n)
        np.add.at(out, index, values)
        return out

    @classmethod
    def divide(cls, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = cls.zeros(len(a))
        ok = np.asarray(b > 0, dtype=bool)
        out[ok] = a[ok] / b[ok]
        return out


_Numbers = type[_Floats] | type[_Fractions]


def _pad(values: np.ndarray, fill) -> np.ndarray:
    """``values`` plus one trailing entry for "unknown" (index -1 then reads ``fill``)."""
    if values.dtype == object:
        out = np.empty(len(values) + 1, dtype=object)
        out[:-1] = values
        out[-1] = fill
        return out
    return np.append(values, np.array([fill], dtype=values.dtype))


class _Codes:
    """Integer codes of text values (product ids, ...), first seen first."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def code(self, value) -> int:
        if value is None or (isinstance(value, float) and value != value) or value == "":
            return -1
        return self._codes.setdefault(str(value), len(self._codes))

    def encode(self, values: Iterable) -> np.ndarray:
        return np.fromiter((self.code(v) for v in values), dtype=np.int64)


def _pair_keys(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One int64 key per (left, right) pair of non-negative codes."""
    return left.astype(np.int64) * (1 << 31) + right.astype(np.int64)


def _find(table_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Position of each key in ``table_keys`` (sorted unique), -1 when absent."""
    if table_keys.size == 0 or keys.size == 0:
        return np.full(keys.shape, -1, dtype=np.int64)
    pos = np.searchsorted(table_keys, keys)
    pos = np.minimum(pos, table_keys.size - 1)
    return np.where(table_keys[pos] == keys, pos, -1)


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
    """Per price row -- the catalogue's prices, then one row per ``currency_options`` entry --
    with the amount rules and the tier table."""

    unit: np.ndarray  # unit amount (minor units, number type); missing -> NaN / None
    tiered: np.ndarray
    graduated: np.ndarray
    metered: np.ndarray
    monthly_factor: np.ndarray  # number type; 0 without a recurring interval
    divide_by: np.ndarray  # 0 = no transform_quantity
    round_up: np.ndarray
    currency: np.ndarray
    product: np.ndarray  # product code (_Codes), -1 unknown
    tax_inclusive: np.ndarray  # tax_behavior == "inclusive"
    # currency option rows: key (catalogue row, currency code) -> row, sorted by key
    option_keys: np.ndarray
    option_rows: np.ndarray
    n_catalogue: int
    # tier table, rows grouped by price: price's tiers are tier_*[tier_start[p] : tier_start[p] + tier_count[p]]
    tier_start: np.ndarray
    tier_count: np.ndarray
    tier_lower: np.ndarray
    tier_upper: np.ndarray
    tier_unit: np.ndarray
    tier_flat: np.ndarray

    @classmethod
    def build(cls, prices: pd.DataFrame, currencies: Vocabulary, products: _Codes,
              num: _Numbers = _Floats) -> "PriceArrays":
        n = len(prices)
        unit = num.column(column(prices, "unit_amount_decimal"))
        fallback = num.column(column(prices, "unit_amount"))
        unit = np.where(num.known(unit), unit, fallback)
        interval_count = np.maximum(ints(column(prices, "recurring_interval_count"), 1), 1)
        factor = num.zeros(n)
        intervals = column(prices, "recurring_interval")
        for name, (numerator, denominator) in _MONTHLY.items():
            mask = isin(intervals, [name])
            if mask.any():
                factor[mask] = num.ratio(numerator, denominator * interval_count[mask])
        tiered = isin(column(prices, "billing_scheme"), ["tiered"])
        tiers = list(json_values(column(prices, "tiers")).to_numpy(dtype=object))
        currency = currencies.encode(column(prices, "currency"))
        product = products.encode(text_values(column(prices, "product"))[:n])
        inclusive = isin(column(prices, "tax_behavior"), ["inclusive"])

        # currency_options: extra rows copying the catalogue row, with the option's amounts
        base_rows, option_currency, option_unit, option_tiers, option_inclusive = [], [], [], [], []
        options = json_values(column(prices, "currency_options")).to_numpy(dtype=object)
        for p in np.flatnonzero(pd.notna(options)):
            if not isinstance(options[p], dict):
                continue
            for cur, option in options[p].items():
                code = currencies.code(cur)
                if code < 0 or code == currency[p] or not isinstance(option, dict):
                    continue
                base_rows.append(p)
                option_currency.append(code)
                option_unit.append(option.get("unit_amount_decimal"))
                option_tiers.append(option.get("tiers"))
                behavior = option.get("tax_behavior")
                option_inclusive.append(inclusive[p] if behavior is None else behavior == "inclusive")
        base = np.array(base_rows, dtype=np.int64)
        m = len(base)
        keys = _pair_keys(base, np.array(option_currency, dtype=np.int64))
        order = np.argsort(keys, kind="stable")

        def extend(values: np.ndarray, extra: np.ndarray) -> np.ndarray:
            if values.dtype == object:
                out = np.empty(n + m, dtype=object)
                out[:n], out[n:] = values, extra
                return out
            return np.concatenate([values, extra.astype(values.dtype)])

        graduated = isin(column(prices, "tiers_mode"), ["graduated"])
        metered = isin(column(prices, "recurring_usage_type"), ["metered"]) | present(column(prices, "recurring_meter"))
        divide_by = np.maximum(ints(column(prices, "transform_divide_by"), 0), 0)
        round_up = isin(column(prices, "transform_round"), ["up"])
        all_tiered = extend(tiered, tiered[base])
        starts, counts, lower, upper, t_unit, t_flat = _tier_table(tiers + option_tiers, all_tiered, num)
        return cls(
            unit=extend(unit, num.parse(option_unit)),
            tiered=all_tiered,
            graduated=extend(graduated, graduated[base]),
            metered=extend(metered, metered[base]),
            monthly_factor=extend(factor, factor[base]),
            divide_by=extend(divide_by, divide_by[base]),
            round_up=extend(round_up, round_up[base]),
            currency=extend(currency, np.array(option_currency, dtype=currency.dtype)),
            product=extend(product, product[base]),
            tax_inclusive=extend(inclusive, np.array(option_inclusive, dtype=bool)),
            option_keys=keys[order], option_rows=n + order.astype(np.int64), n_catalogue=n,
            tier_start=starts, tier_count=counts, tier_lower=lower, tier_upper=upper,
            tier_unit=t_unit, tier_flat=t_flat,
        )

    def for_currency(self, price: np.ndarray, currency: np.ndarray) -> np.ndarray:
        """The row pricing each item: the price's option for ``currency`` if it has one, else the price."""
        if self.option_keys.size == 0:
            return price
        other = (price >= 0) & (currency >= 0) & (_pad(self.currency, -1)[price] != currency)
        rows = np.flatnonzero(other)
        out = price.astype(np.int64, copy=True)
        if rows.size:
            found = _find(self.option_keys, _pair_keys(price[rows], currency[rows]))
            hit = found >= 0
            out[rows[hit]] = self.option_rows[found[hit]]
        return out


def _tier_table(tiers: list, tiered: np.ndarray, num: _Numbers):
    """Flatten the tiers of tiered prices. One pass over the price catalogue (not over customers)."""
    n = len(tiers)
    counts = np.zeros(n, dtype=np.int64)
    lower, upper, unit, flat = [], [], [], []
    for p in np.flatnonzero(tiered):
        price_tiers = tiers[p]
        if not isinstance(price_tiers, (list, tuple)):
            continue  # tiers not fetched: the item is priced at 0
        bound = 0.0
        for tier in price_tiers:
            up_to = tier.get("up_to")
            top = np.inf if up_to in (None, "inf") else float(up_to)
            lower.append(bound)
            upper.append(top)
            unit.append(tier.get("unit_amount_decimal", tier.get("unit_amount")))
            flat.append(tier.get("flat_amount_decimal", tier.get("flat_amount")))
            bound = top
        counts[p] = len(price_tiers)
    starts = np.cumsum(counts) - counts
    return (starts, counts, np.array(lower, dtype=np.float64), np.array(upper, dtype=np.float64),
            num.or_zero(num.parse(unit)), num.or_zero(num.parse(flat)))


def _transformed_quantity(quantity: np.ndarray, divide_by: np.ndarray, round_up: np.ndarray) -> np.ndarray:
    """``transform_quantity``: quantity / divide_by rounded up or down, in integers (exact)."""
    d = np.maximum(divide_by, 1)
    steps = np.where(round_up, -((-quantity) // d), quantity // d)
    return np.where(divide_by > 0, steps, quantity)


def _amount_per_period(items: pd.DataFrame, item_price: np.ndarray, prices: PriceArrays,
                       num: _Numbers) -> np.ndarray:
    n = len(items)
    known = item_price >= 0
    quantity = ints(column(items, "quantity"), 1)
    amount = num.zeros(n)
    tiered = _pad(prices.tiered, False)[item_price]
    per_unit = np.flatnonzero(known & ~tiered)
    q = _transformed_quantity(quantity, _pad(prices.divide_by, 0)[item_price],
                              _pad(prices.round_up, False)[item_price])
    unit = num.or_zero(prices.unit)
    if per_unit.size:
        amount[per_unit] = unit[item_price[per_unit]] * num.whole(q[per_unit])

    tiered_rows = np.flatnonzero(known & tiered & (_pad(prices.tier_count, 0)[item_price] > 0))
    if tiered_rows.size:
        tp = item_price[tiered_rows]
        counts = prices.tier_count[tp]
        rep = np.repeat(tiered_rows, counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        t = np.repeat(prices.tier_start[tp], counts) + within
        qr = quantity[rep].astype(np.float64)  # integers: exact in float64, compared with the tier bounds
        lo, hi = prices.tier_lower[t], prices.tier_upper[t]
        t_unit, t_flat = prices.tier_unit[t], prices.tier_flat[t]
        graduated = prices.graduated[item_price[rep]]
        units_in = np.clip(np.minimum(qr, hi) - lo, 0, None).astype(np.int64)
        reached = units_in > 0
        contains = (qr > lo) & (qr <= hi)
        value = num.zeros(len(t))
        grad = np.flatnonzero(graduated)
        value[grad] = num.whole(units_in[grad]) * t_unit[grad] + np.where(reached[grad], t_flat[grad], 0)
        vol = np.flatnonzero(~graduated & contains)
        value[vol] = num.whole(quantity[rep][vol]) * t_unit[vol] + t_flat[vol]
        amount = amount + num.sum_at(n, rep, value)
    return amount


# -- tax ---------------------------------------------------------------------------


def _inclusive_percent(rates: pd.Series, num: _Numbers) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a ``tax_rates`` / ``default_tax_rates`` column: whether it has rates, and the
    sum of the percentages of its inclusive percentage rates (0 without any)."""
    values = json_values(rates).to_numpy(dtype=object)
    n = len(values)
    has = np.zeros(n, dtype=bool)
    percent = num.zeros(n)
    for r in np.flatnonzero(pd.notna(values)):
        listed = values[r]
        if not isinstance(listed, (list, tuple)) or not listed:
            continue
        has[r] = True
        inclusive = [rate.get("percentage") for rate in listed
                     if isinstance(rate, dict) and rate.get("inclusive") and rate.get("rate_type") != "flat_amount"]
        if inclusive:
            percent[r] = sum(num.or_zero(num.parse(inclusive)))
    return has, percent


def _stripe_tax_share(frames: MirrorFrames, subs_df: pd.DataFrame, sub_lookup: Lookup,
                      num: _Numbers) -> tuple[np.ndarray, np.ndarray]:
    """Per subscription: whether Stripe Tax's share is known, and ``total_excluding_tax / total``
    of its newest paid or open invoice with a positive total (module doc)."""
    n_subs = len(subs_df)
    known = np.zeros(n_subs, dtype=bool)
    share = num.ones(n_subs)
    auto = bools(column(subs_df, "automatic_tax_enabled"))
    if not auto.any():
        return known, share
    inv = frames.invoices
    inv_sub = sub_lookup.positions(column(inv, "subscription"))
    total = ints(column(inv, "total"), 0)
    excluding = ints(column(inv, "total_excluding_tax"), -1)
    ok = ((inv_sub >= 0) & isin(column(inv, "status"), TAX_EVIDENCE_STATUSES) & ~bools(column(inv, "deleted"))
          & (total > 0) & (excluding >= 0))
    ok &= _pad(auto, False)[inv_sub]
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return known, share
    ids = pd.Series(take_text(column(inv, "id"), rows), dtype=object).astype(str).to_numpy()
    order = np.lexsort((ids, ints(column(inv, "created"), _NO_TIME)[rows], inv_sub[rows]))
    rows = rows[order]
    subs = inv_sub[rows]
    newest = np.append(subs[1:] != subs[:-1], True)  # last row of each subscription's run
    rows, subs = rows[newest], subs[newest]
    known[subs] = True
    share[subs] = num.ratio(np.minimum(excluding[rows], total[rows]), total[rows])
    return known, share


def _tax_factor(frames: MirrorFrames, subs_df: pd.DataFrame, sub_lookup: Lookup, item_sub: np.ndarray,
                item_price: np.ndarray, prices: PriceArrays, num: _Numbers) -> np.ndarray:
    """What of each item's amount is not tax (1 without inclusive tax)."""
    n = len(item_sub)
    item_has, item_percent = _inclusive_percent(column(frames.subscription_items, "tax_rates"), num)
    sub_has, sub_percent = _inclusive_percent(column(subs_df, "default_tax_rates"), num)
    has_sub_rates = _pad(sub_has, False)[item_sub]
    percent = np.where(item_has, item_percent, np.where(has_sub_rates, _pad(sub_percent, 0)[item_sub], 0))
    manual = item_has | has_sub_rates
    factor = num.ones(n)
    taxed = np.flatnonzero(manual & np.asarray(percent != 0, dtype=bool))
    if taxed.size:
        hundred = num.scalar(100)
        factor[taxed] = hundred / (hundred + percent[taxed])
    share_known, share = _stripe_tax_share(frames, subs_df, sub_lookup, num)
    stripe_tax = (~manual & _pad(share_known, False)[item_sub] & _pad(prices.tax_inclusive, False)[item_price])
    rows = np.flatnonzero(stripe_tax)
    if rows.size:
        factor[rows] = share[item_sub[rows]]
    return factor


# -- discounts ---------------------------------------------------------------------


class _Discounts:
    """The discounts that count under the coupon rule, resolved to items, subscriptions, customers."""

    def __init__(self, frames: MirrorFrames, config: TraitsConfig, now: int, customers: Lookup,
                 currencies: Vocabulary, sub_lookup: Lookup, item_lookup: Lookup, products: _Codes,
                 num: _Numbers) -> None:
        self.num = num
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
        self.coupon = c
        percent = num.column(column(coupons, "percent_off"))
        has_percent = num.known(percent)
        multiplier = num.ones(len(coupons))
        rows = np.flatnonzero(has_percent)
        if rows.size:
            off = percent[rows] / num.scalar(100)
            multiplier[rows] = np.minimum(np.maximum(num.scalar(1) - off, num.scalar(0)), num.scalar(1))
        self._multiplier = multiplier
        self._has_percent = has_percent
        # amount_off per (coupon, currency): the coupon's own currency, then its currency_options
        amount_off = ints(column(coupons, "amount_off"), -1)
        own_currency = currencies.encode(column(coupons, "currency"))
        keys, amounts = [], []
        for r in np.flatnonzero((amount_off >= 0) & (own_currency >= 0)):
            keys.append(_pair_keys(np.array([r]), np.array([own_currency[r]]))[0])
            amounts.append(amount_off[r])
        options = json_values(column(coupons, "currency_options")).to_numpy(dtype=object)
        for r in np.flatnonzero(pd.notna(options) & (amount_off >= 0)):
            if not isinstance(options[r], dict):
                continue
            for cur, option in options[r].items():
                code = currencies.code(cur)
                value = (option or {}).get("amount_off") if isinstance(option, dict) else None
                if code >= 0 and code != own_currency[r] and value is not None:
                    keys.append(_pair_keys(np.array([r]), np.array([code]))[0])
                    amounts.append(int(value))
        keys_arr = np.array(keys, dtype=np.int64)
        order = np.argsort(keys_arr, kind="stable")
        self._amount_keys = keys_arr[order]
        self._amounts = num.whole(np.array(amounts, dtype=np.int64)[order])
        # applies_to.products: (coupon, product) pairs; coupons without a list apply to every product
        restricted_to = json_values(column(coupons, "applies_to_products")).to_numpy(dtype=object)
        self._restricted = np.zeros(len(coupons), dtype=bool)
        applies = []
        for r in np.flatnonzero(pd.notna(restricted_to)):
            listed = restricted_to[r]
            if isinstance(listed, (list, tuple)) and listed:
                self._restricted[r] = True
                applies += [_pair_keys(np.array([r]), np.array([products.code(p)]))[0] for p in listed]
        self._applies = np.unique(np.array(applies, dtype=np.int64))
        has_item = present(column(d, "subscription_item"))
        has_sub = present(column(d, "subscription"))
        self.item = np.where(has_item, item_lookup.positions(column(d, "subscription_item")), -1)
        self.sub = np.where(~has_item & has_sub, sub_lookup.positions(column(d, "subscription")), -1)
        self.customer = np.where(~has_item & ~has_sub, customers.positions(column(d, "customer")), -1)
        self.counts = counts
        self.in_effect = in_effect

    def eligible(self, rows: np.ndarray, product: np.ndarray) -> np.ndarray:
        """Whether discount ``rows`` apply to items of ``product`` (``applies_to.products``)."""
        c = self.coupon[rows]
        ok = ~self._restricted[c]
        check = np.flatnonzero(~ok & (product >= 0))
        if check.size:
            ok[check] = _find(self._applies, _pair_keys(c[check], product[check])) >= 0
        return ok

    def multiplier(self, rows: np.ndarray) -> np.ndarray:
        return self._multiplier[self.coupon[rows]]

    def amount(self, rows: np.ndarray, currency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """amount_off of discount ``rows`` in ``currency`` (per invoice) and whether it has one."""
        found = _find(self._amount_keys, _pair_keys(self.coupon[rows], np.maximum(currency, 0)))
        found = np.where(currency >= 0, found, -1)
        has = found >= 0
        out = self.num.zeros(len(rows))
        out[has] = self._amounts[found[has]]
        return out, has

    def item_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(discount row, item) of the item-level discounts that count."""
        rows = np.flatnonzero(self.counts & (self.item >= 0))
        return rows, self.item[rows]

    def subscription_pairs(self, subs: SubscriptionArrays, item_sub: np.ndarray,
                           counted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(discount row, item, application) of the subscription-level discounts that count: the
        subscription's own, else its customer's; one application per (discount, subscription)."""
        n_subs = len(subs.customer)
        rows = np.flatnonzero(self.counts & (self.sub >= 0))
        d_rows, d_subs = [rows], [self.sub[rows]]
        cust_rows = np.flatnonzero(self.counts & (self.customer >= 0))
        if cust_rows.size and n_subs:
            own = np.zeros(n_subs, dtype=bool)
            own[self.sub[(self.sub >= 0) & self.in_effect]] = True
            takers = np.flatnonzero(~own & (subs.customer >= 0))
            # customer discounts x the customer's subscriptions without their own discount
            frame = pd.DataFrame({"customer": self.customer[cust_rows], "row": cust_rows})
            pairs = frame.merge(pd.DataFrame({"customer": subs.customer[takers], "sub": takers}), on="customer")
            d_rows.append(pairs["row"].to_numpy(dtype=np.int64))
            d_subs.append(pairs["sub"].to_numpy(dtype=np.int64))
        app_row = np.concatenate(d_rows).astype(np.int64)
        app_sub = np.concatenate(d_subs).astype(np.int64)
        items = np.flatnonzero(counted)
        if app_row.size == 0 or items.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        by_sub = pd.DataFrame({"sub": item_sub[items], "item": items})
        joined = pd.DataFrame({"sub": app_sub, "app": np.arange(app_row.size)}).merge(by_sub, on="sub")
        app = joined["app"].to_numpy(dtype=np.int64)
        return app_row[app], joined["item"].to_numpy(dtype=np.int64), app


def _apply_level(num: _Numbers, amounts: np.ndarray, rows: np.ndarray, item: np.ndarray, app: np.ndarray,
                 discounts: _Discounts, item_currency: np.ndarray, item_product: np.ndarray,
                 off_factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One discount level over ``amounts`` (per item): percentages first, then amounts off.

    ``rows``/``item``/``app``: one pair per (discount, item) it may apply to; pairs
    sharing ``app`` are one application of an ``amount_off``, taken off the
    eligible items together (at most their amount, shared pro rata).
    ``off_factor`` per item turns the per-invoice amount into its monthly share
    (1 on the item level, which works per billing period). Returns the amounts
    after the level (capped at 0) and the amounts taken off (for the error bound).
    """
    n = len(amounts)
    ok = discounts.eligible(rows, item_product[item])
    rows, item, app = rows[ok], item[ok], app[ok]
    mult = num.ones(n)
    percent = np.flatnonzero(discounts._has_percent[discounts.coupon[rows]])
    if percent.size:
        np.multiply.at(mult, item[percent], discounts.multiplier(rows[percent]))
    after = amounts * mult
    off, has = discounts.amount(rows, item_currency[item])
    taken = num.zeros(n)
    if has.any():
        rows, item, app, off = rows[has], item[has], app[has], off[has]
        apps, app_index = np.unique(app, return_inverse=True)
        base = num.sum_at(len(apps), app_index, after[item])
        first = np.zeros(len(apps), dtype=np.int64)
        first[app_index[::-1]] = np.arange(len(app_index))[::-1]
        wanted = off[first] * off_factor[item[first]]
        off_app = np.minimum(wanted, base)
        share = num.divide(after[item] * off_app[app_index], base[app_index])
        taken = num.sum_at(n, item, share)
        after = np.maximum(after - taken, num.scalar(0))
    return after, taken


# -- per item ----------------------------------------------------------------------


@dataclass
class ItemMrr:
    """Per subscription item row."""

    subscription: np.ndarray  # subscription row, -1 unknown
    customer: np.ndarray  # customer position, -1 unknown
    currency: np.ndarray  # the subscription's currency (else the price's)
    price: np.ndarray  # catalogue price row, -1 unknown
    metered: np.ndarray
    list_monthly: np.ndarray  # before discounts, tax and status rules (0 for metered), minor units
    mrr: np.ndarray  # what the item contributes to MRR, minor units (unrounded)
    #: Upper bound of the amounts the item's computation handled (float), for the rounding check.
    magnitude: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: Exact ``mrr`` (Fractions) of the given item rows: the same rules in exact arithmetic.
    exact: Callable[[np.ndarray], np.ndarray] | None = None


def compute_item_arrays(frames: MirrorFrames, config: TraitsConfig, now: int, customers: Lookup,
                        currencies: Vocabulary, subs: SubscriptionArrays, sub_lookup: Lookup,
                        *, exact: bool = False) -> ItemMrr:
    """MRR of every subscription item (unrounded minor units), following the module rules.

    float64 by default (with ``ItemMrr.exact`` to recompute rows exactly);
    ``exact=True`` computes Fractions (object arrays) throughout.
    """
    num: _Numbers = _Fractions if exact else _Floats
    items = frames.subscription_items
    n_items, n_subs = len(items), len(subs.customer)
    products = _Codes()
    prices = PriceArrays.build(frames.prices, currencies, products, num)
    item_sub = sub_lookup.positions(column(items, "subscription"))
    catalogue_price = Lookup(column(frames.prices, "id")).positions(column(items, "price"))
    has_sub, price_known = item_sub >= 0, catalogue_price >= 0
    # index -1 (unknown) reads the padded last entry
    sub_currency = _pad(subs.currency, -1)[item_sub]
    item_customer = np.where(has_sub, _pad(subs.customer, -1)[item_sub],
                             customers.positions(column(items, "customer")))
    item_currency = np.where(sub_currency >= 0, sub_currency, _pad(prices.currency, -1)[catalogue_price])
    item_price = prices.for_currency(catalogue_price, item_currency)
    metered = _pad(prices.metered, False)[item_price]
    factor = _pad(prices.monthly_factor, num.scalar(0))[item_price]
    item_product = _pad(prices.product, -1)[item_price]

    per_period = _amount_per_period(items, item_price, prices, num)
    per_period[metered] = num.scalar(0)
    list_monthly = per_period * factor

    discounts = _Discounts(frames, config, now, customers, currencies, sub_lookup,
                           Lookup(column(items, "id")), products, num)
    # item level, on the amount per period
    d_rows, d_items = discounts.item_pairs()
    after_item, item_off = _apply_level(num, per_period, d_rows, d_items, np.arange(d_rows.size), discounts,
                                        item_currency, item_product, num.ones(n_items))
    after_item = after_item * factor

    # subscription level, on the subscription's monthly amount
    counted = has_sub & price_known & ~metered
    sub_factor = num.zeros(n_subs)
    if counted.any():
        np.maximum.at(sub_factor, item_sub[counted], factor[counted])
    d_rows, d_items, apps = discounts.subscription_pairs(subs, item_sub, counted)
    after_sub, sub_off = _apply_level(num, np.where(counted, after_item, num.scalar(0)), d_rows, d_items, apps,
                                      discounts, item_currency, item_product, _pad(sub_factor, num.scalar(0))[item_sub])

    tax = _tax_factor(frames, frames.subscriptions, sub_lookup, item_sub, item_price, prices, num)
    counts = counted & _pad(subs.counts_for_mrr, False)[item_sub]
    mrr = np.where(counts, after_sub * tax, num.scalar(0))
    result = ItemMrr(subscription=item_sub, customer=item_customer, currency=item_currency, price=catalogue_price,
                     metered=metered, list_monthly=list_monthly, mrr=mrr)
    if not exact:
        grow = np.maximum(factor, 1.0)
        result.magnitude = (per_period + item_off) * grow + after_item + sub_off
        result.exact = lambda rows: _exact_item_mrr(frames, config, now, customers, currencies, item_sub, rows)
    return result


def _as_plain(df: pd.DataFrame) -> pd.DataFrame:
    """A small frame with categorical columns turned back into objects (cheap id look-ups)."""
    out = df.reset_index(drop=True)
    for name in out.columns:
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(object)
    return out


def _exact_item_mrr(frames: MirrorFrames, config: TraitsConfig, now: int, customers: Lookup,
                    currencies: Vocabulary, item_sub: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact MRR (Fractions) of item ``rows``: the rules recomputed on their subscriptions alone."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.full(len(rows), Fraction(0), dtype=object)
    sub_rows = np.unique(item_sub[rows])
    sub_rows = sub_rows[sub_rows >= 0]
    if sub_rows.size == 0:
        return out
    subs_df = _as_plain(frames.subscriptions.iloc[sub_rows])
    kept_items = np.flatnonzero(np.isin(item_sub, sub_rows))
    items_df = _as_plain(frames.subscription_items.iloc[kept_items])
    sub_ids = set(subs_df["id"])
    item_ids = set(items_df["id"])
    customer_ids = set(column(subs_df, "customer").dropna())
    d = frames.discounts
    d_sub, d_item = column(d, "subscription").astype(object), column(d, "subscription_item").astype(object)
    d_customer = column(d, "customer").astype(object)
    keep = (d_sub.isin(sub_ids) | d_item.isin(item_ids)
            | (d_sub.isna() & d_item.isna() & d_customer.isin(customer_ids))).to_numpy(dtype=bool)
    invoices = frames.invoices
    if bools(column(subs_df, "automatic_tax_enabled")).any():
        invoices = _as_plain(invoices.loc[column(invoices, "subscription").astype(object).isin(sub_ids).to_numpy()])
    else:
        invoices = invoices.iloc[:0]
    tables = frames.tables()
    tables.update(subscriptions=subs_df, subscription_items=items_df, discounts=_as_plain(d.loc[keep]),
                  invoices=invoices)
    small = MirrorFrames(**tables)
    sub_lookup = Lookup(column(subs_df, "id"))
    small_subs = SubscriptionArrays.build(subs_df, customers, currencies)
    exact = compute_item_arrays(small, config, now, customers, currencies, small_subs, sub_lookup, exact=True)
    return exact.mrr[np.searchsorted(kept_items, rows)]


# -- totals ------------------------------------------------------------------------


def mrr_minor_totals(items: ItemMrr, group: np.ndarray, n_groups: int, rows: np.ndarray | None = None,
                     step: np.ndarray | None = None) -> np.ndarray:
    """MRR per group (customer, subscription ...) in integer minor units, rounded half to even once.

    ``group`` holds each item's group (-1: none); ``rows`` (bool per item)
    selects the items that count; ``step`` (int64 per group, default 1) is the
    group's display step in minor units (``money.display_step``: 10 fils for a
    three-decimal currency). The exact total is rounded half to even once, to
    a whole number of steps, so the result is a multiple of the step and
    turning it into major units rounds nothing again. The float total decides
    the rounding unless it lies within the error bound of a half step; those
    groups are summed exactly (module doc).
    """
    rows = (group >= 0) if rows is None else (rows & (group >= 0))
    step = np.ones(n_groups, dtype=np.int64) if step is None else np.asarray(step, dtype=np.int64)
    g = group[rows]
    total = np.bincount(g, weights=np.asarray(items.mrr, dtype=np.float64)[rows], minlength=n_groups)
    magnitude = np.bincount(g, weights=np.abs(items.magnitude[rows]) if len(items.magnitude) else None,
                            minlength=n_groups)
    steps = total / step
    minor = np.rint(steps).astype(np.int64) * step
    distance = np.abs(steps - np.floor(steps) - 0.5)
    doubtful = np.flatnonzero(distance <= _ABSOLUTE_TOLERANCE + magnitude / step * _RELATIVE_TOLERANCE)
    if doubtful.size and items.exact is not None:
        is_doubtful = np.zeros(n_groups + 1, dtype=bool)
        is_doubtful[doubtful] = True
        redo = np.flatnonzero(rows & is_doubtful[group])
        exact_sums: dict[int, Fraction] = {int(k): Fraction(0) for k in doubtful}
        for grp, value in zip(group[redo], items.exact(redo)):
            exact_sums[int(grp)] += value
        for grp, value in exact_sums.items():
            minor[grp] = round(value / int(step[grp])) * int(step[grp])  # Fraction rounding is half to even
    return minor


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
    ``list_monthly_minor`` (undiscounted, status ignored) and ``mrr_minor`` (float, unrounded:
    for ranking items; totals are rounded exactly by :func:`mrr_minor_totals`)."""
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
    """One row per subscription: ``id``, ``customer``, ``currency``, ``mrr_minor`` (int, the exact
    total rounded half-even once per subscription to the currency's display step, as the
    customer trait rounds its total) and ``mrr`` (major units, 2 decimals).

    For event properties (``Subscription Started`` ...): build a MirrorFrames with
    the one subscription, its items, prices, discounts and coupons.
    """
    currencies, customers, sub_lookup, subs = _context(frames)
    items = compute_item_arrays(frames, config, now, customers, currencies, subs, sub_lookup)
    n_subs = len(subs.customer)
    currency = subscription_currency(subs, items)
    exp = np.append(exponents(currencies.values), 2)
    minor = mrr_minor_totals(items, items.subscription, n_subs, step=display_step(exp[currency]))
    return pd.DataFrame({
        "id": column(frames.subscriptions, "id").to_numpy(dtype=object),
        "customer": take_text(column(frames.subscriptions, "customer"), np.arange(n_subs)),
        "currency": currencies.decode(currency),
        "mrr_minor": minor,
        "mrr": major_from_exponents(minor, exp[currency]),
    })
