"""Per-customer revenue traits (contract "Identify traits"), vectorized.

``compute_customer_traits`` turns the mirror frames into one row per
non-deleted customer. No per-customer Python loop: every table is reduced with
numpy scatter operations (``bincount``, ``ufunc.at``) keyed by the customer's
row position, and references (``charges.customer`` ...) are resolved through
categorical codes when the frames carry them (see ``traits.frames``).

Rule decisions beyond the contract's table are documented in docs/traits.md;
the short version:

- customer currency: ``customers.currency``; else the currency of the main
  subscription (the newest one counting for MRR, else the newest not ended,
  else the newest); else of the latest succeeded charge; else of the latest charge.
- ``lifetime_value`` and ``refund_rate`` only count charges in the customer's
  currency. Charges in another currency are left out (never converted or added);
  they still count in ``payment_count``, ``first_payment_at``, ``last_payment_at``
  and for ``payment_method_type``/``card_brand``.
- ``mrr`` only adds items of subscriptions in the customer's currency.
- current subscription: the newest (``created``, ties: larger id) not ended,
  else the newest. Main item: highest MRR among items in the customer's
  currency; ties (e.g. all 0) go to the current subscription, then to the
  higher undiscounted monthly amount, then to the smaller item id.
- ``payment_delinquent``: any subscription ``past_due``/``unpaid``, or the
  latest non-draft invoice ``open`` with ``attempt_count > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from s2s_pipeline.core.contract import TIER_NAMES
from s2s_pipeline.core.times import iso_utc_array
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.frames import (
    Lookup,
    MirrorFrames,
    Vocabulary,
    bools,
    column,
    ints,
    isin,
    json_values,
    present,
    take_text,
    text_values,
)
from s2s_pipeline.traits.money import display_step, exponents, major_from_minor, ratio_half_even
from s2s_pipeline.traits.mrr import SubscriptionArrays, compute_item_arrays, mrr_minor_totals, subscription_currency
from s2s_pipeline.traits.payments import ChargeRows, customer_payments, lost_dispute_minor, payment_frequency_days
from s2s_pipeline.traits.picking import pick_best
from s2s_pipeline.traits.trials import trial_converted_at

#: Extra columns for identity and group work (not traits).
EXTRA_COLUMNS: tuple[str, ...] = ("user_id", "company_id", "company_name", "lifetime_value_minor", "mrr_minor")

#: Subscription statuses that renew at the end of the period (for ``next_billing_date``).
RENEWING_STATUSES = ("active", "past_due", "trialing")
#: Subscription statuses that make a customer delinquent.
DELINQUENT_STATUSES = ("past_due", "unpaid")

_NO_TIME = np.iinfo(np.int64).min
_NEVER = np.iinfo(np.int64).max


def _text(values: np.ndarray) -> pd.Series:
    """Object column with None for missing values (never NaN, never pandas' str dtype)."""
    return pd.Series(values, dtype=object)


def _metadata(metadata: pd.Series, keys: list[str]) -> dict[str, np.ndarray]:
    """The given metadata keys per customer as text, None when absent or empty.

    One DataFrame construction over the customers that have metadata picks all
    keys at once (pandas reads the dicts in C). Stripe metadata values are strings.
    """
    keys = list(dict.fromkeys(keys))
    values = metadata.to_numpy(dtype=object)
    rows = np.flatnonzero(~pd.isna(values))
    out = {key: np.full(len(values), None, dtype=object) for key in keys}
    if len(rows) == 0:
        return out
    records = values[rows].tolist()
    try:
        if not isinstance(records[0], dict):
            raise TypeError("not a dict")  # pandas would read a first list as a row of values
        found = pd.DataFrame(records, columns=keys, dtype=object)
    except (TypeError, ValueError):  # something other than a dict: treat it as no metadata
        found = pd.DataFrame([r if isinstance(r, dict) else {} for r in records], columns=keys, dtype=object)
    for key in keys:
        texts = found[key].to_numpy(dtype=object, copy=True)
        texts[pd.isna(texts) | (texts == "")] = None
        out[key][rows] = texts
    return out


def _spend_tier(ltv_major: np.ndarray, currency: np.ndarray, currencies: Vocabulary,
                config: TraitsConfig) -> np.ndarray:
    n = len(ltv_major)
    minimums = np.full((len(currencies.values) + 1, 3), np.nan)
    for code, cur in enumerate(currencies.values):
        thresholds = config.thresholds_for(cur)
        if thresholds is not None:
            minimums[code] = thresholds
    has_thresholds = ~np.isnan(minimums[:, 0])
    has_thresholds[-1] = True  # no currency at all: no money either, so "none"
    m = minimums[currency]
    index = ((ltv_major > 0).astype(np.int64) + (ltv_major >= m[:, 0]) + (ltv_major >= m[:, 1])
             + (ltv_major >= m[:, 2]))
    names = np.array(TIER_NAMES + (None,), dtype=object)
    index[~has_thresholds[currency]] = len(TIER_NAMES)
    return names[index] if n else np.zeros(0, dtype=object)


def _customer_currency(customers_df: pd.DataFrame, currencies: Vocabulary, main_sub_currency: np.ndarray,
                       ch: ChargeRows) -> np.ndarray:
    """Currency code per customer: its own column, else its main subscription's, else its latest charges'."""
    n = len(customers_df)
    currency = currencies.encode(column(customers_df, "currency"))
    for fallback in (main_sub_currency, np.append(ch.currency, -1)[ch.latest_succeeded]):
        currency = np.where(currency >= 0, currency, fallback)
    if (currency < 0).any():
        needs = np.append(currency < 0, False)[ch.customer]
        latest_any = pick_best(np.where(needs, ch.customer, -1), n, [ch.created], ch.ids, largest_id=True)
        currency = np.where(currency >= 0, currency, np.append(ch.currency, -1)[latest_any])
    return currency


@dataclass
class _MainItem:
    """Per customer: the plan of its main subscription item and when it bills next."""

    plan: np.ndarray
    billing_interval: np.ndarray
    period_end: np.ndarray
    renews: np.ndarray


def _main_item(frames: MirrorFrames, n: int, items, subs: SubscriptionArrays, current: np.ndarray,
               item_in_currency: np.ndarray) -> _MainItem:
    """Main item: highest MRR in the customer's currency, then the current subscription's (module doc)."""
    items_df = frames.subscription_items
    subs_df = frames.subscriptions
    in_current = (items.subscription >= 0) & (items.subscription == np.append(current, -1)[items.customer])
    main_item = pick_best(items.customer, n, [item_in_currency, items.mrr, in_current, items.list_monthly],
                          column(items_df, "id"), largest_id=False)
    main_price = np.append(items.price, -1)[main_item]
    prices_df = frames.prices
    # plan name per price (catalogue-sized arrays): nickname, else product name
    product = Lookup(column(frames.products, "id")).positions(column(prices_df, "product"))
    price_plan = text_values(column(prices_df, "nickname"))
    product_name = text_values(column(frames.products, "name"))[np.append(product, -1)]
    for names in (price_plan, product_name):
        names[names == ""] = None
    price_plan = np.where(pd.isna(price_plan), product_name, price_plan)
    plan = price_plan[main_price]
    no_name = pd.isna(price_plan)[main_price] & (main_item >= 0)
    plan[no_name] = take_text(column(items_df, "price"), main_item[no_name])  # else the price id

    # next billing: the main item's period end while its subscription renews
    main_item_sub = np.append(items.subscription, -1)[main_item]
    period_end = np.append(ints(column(items_df, "current_period_end"), _NO_TIME), _NO_TIME)[main_item]
    cancel_at = np.append(ints(column(subs_df, "cancel_at"), _NEVER), _NEVER)[main_item_sub]
    renews = np.append(
        isin(column(subs_df, "status"), RENEWING_STATUSES) & ~subs.ended
        & ~bools(column(subs_df, "cancel_at_period_end"))
        & ~present(column(subs_df, "pause_collection_behavior")), False)[main_item_sub]
    renews &= (period_end != _NO_TIME) & (cancel_at > period_end)
    return _MainItem(plan=plan, billing_interval=take_text(column(prices_df, "recurring_interval"), main_price),
                     period_end=period_end, renews=renews)


def _delinquent(frames: MirrorFrames, n: int, customers: Lookup, subs: SubscriptionArrays) -> np.ndarray:
    """Any subscription past_due/unpaid, or the latest non-draft invoice open after a failed attempt."""
    subs_df = frames.subscriptions
    delinquent = np.zeros(n, dtype=bool)
    late = isin(column(subs_df, "status"), DELINQUENT_STATUSES) & ~bools(column(subs_df, "deleted")) \
        & (subs.customer >= 0)
    delinquent[subs.customer[late]] = True
    inv = frames.invoices
    inv_customer = customers.positions(column(inv, "customer"))
    inv_ok = (inv_customer >= 0) & present(column(inv, "status")) & ~isin(column(inv, "status"), ["draft"]) \
        & ~bools(column(inv, "deleted"))
    latest_invoice = pick_best(np.where(inv_ok, inv_customer, -1), n, [ints(column(inv, "created"), _NO_TIME)],
                               column(inv, "id"), largest_id=True)
    failed_open = isin(column(inv, "status"), ["open"]) & (ints(column(inv, "attempt_count"), 0) > 0)
    return delinquent | np.append(failed_open, False)[latest_invoice]


def compute_customer_traits(frames: MirrorFrames, config: TraitsConfig, now: int) -> pd.DataFrame:
    """One row per non-deleted customer: the contract's traits plus identity/group helpers.

    Columns: ``IDENTIFY_TRAITS`` (core.contract) then ``EXTRA_COLUMNS`` (``user_id``, ``company_id``,
    ``company_name``, ``lifetime_value_minor``, ``mrr_minor``), in the order of
    ``frames.customers`` with a fresh RangeIndex. Text and times are object
    columns with None for null; money in major units is float64 rounded to 2
    decimals; ``refund_rate`` Float64, counts and minor units Int64, flags boolean.
    ``now`` (Unix seconds) decides which discounts are in effect.
    """
    customers_df = frames.customers
    deleted = bools(column(customers_df, "deleted"))
    if deleted.any():
        customers_df = customers_df.loc[~deleted].reset_index(drop=True)
    n = len(customers_df)
    customers = Lookup(column(customers_df, "id"))
    currencies = Vocabulary()

    # subscriptions: the current one, and the main one for the currency fallback
    subs_df = frames.subscriptions
    subs = SubscriptionArrays.build(subs_df, customers, currencies)
    sub_ids = column(subs_df, "id")
    current = pick_best(subs.customer, n, [~subs.ended, subs.created], sub_ids, largest_id=True)
    main_sub = pick_best(subs.customer, n, [subs.counts_for_mrr, ~subs.ended, subs.created], sub_ids,
                         largest_id=True)
    # items: their MRR does not depend on the customer's currency; adding it up does
    items = compute_item_arrays(frames, config, now, customers, currencies, subs, Lookup(sub_ids))
    sub_currency = subscription_currency(subs, items)

    charge_rows = ChargeRows.build(frames.charges, n, customers, currencies)
    currency = _customer_currency(customers_df, currencies, np.append(sub_currency, -1)[main_sub], charge_rows)
    customer_currency = np.append(currency, -1)  # index -1 (unknown customer) -> no currency
    money = customer_payments(charge_rows, lost_dispute_minor(frames.disputes, charge_rows, currencies), n,
                              customer_currency)
    ltv_minor = money.lifetime_value_minor

    item_in_currency = (items.customer >= 0) & (items.currency == customer_currency[items.customer]) \
        & (items.currency >= 0)
    exp = np.append(exponents(currencies.values), 2)[currency]  # a customer without a currency: 2
    mrr_minor = mrr_minor_totals(items, items.customer, n, item_in_currency, step=display_step(exp))
    main = _main_item(frames, n, items, subs, current, item_in_currency)

    # the current subscription's facts
    status = take_text(column(subs_df, "status"), current)
    status[pd.isna(status)] = "none"
    cancel_at_period_end = np.append(bools(column(subs_df, "cancel_at_period_end")), False)[current]
    trial_end = np.append(ints(column(subs_df, "trial_end"), _NO_TIME), _NO_TIME)[current]

    # identity and group keys from metadata
    metadata = _metadata(json_values(column(customers_df, "metadata")),
                         [*config.identity_metadata_keys, config.company_id_key, config.company_name_key])
    user_id = np.full(n, None, dtype=object)
    for key in config.identity_metadata_keys:
        missing = pd.isna(user_id)
        user_id[missing] = metadata[key][missing]

    ltv_major = major_from_minor(ltv_minor, exp)
    captured = money.captured
    refund_rate = ratio_half_even(money.refunded, captured, 4)
    paid = money.payment_count > 0
    frequency = payment_frequency_days(charge_rows, n, now)
    converted_at, converted = trial_converted_at(subs_df, frames.invoices, subs.customer, n)
    ch = frames.charges
    out = pd.DataFrame({
        "email": _text(text_values(column(customers_df, "email"))[:n]),
        "name": _text(text_values(column(customers_df, "name"))[:n]),
        "stripe_customer_id": _text(text_values(column(customers_df, "id"))[:n]),
        "currency": _text(currencies.decode(currency)),
        "lifetime_value": ltv_major,
        "mrr": major_from_minor(mrr_minor, exp),
        "spend_tier": _text(_spend_tier(ltv_major, currency, currencies, config)),
        "refund_rate": pd.arrays.FloatingArray(np.nan_to_num(refund_rate), captured == 0),
        "payment_count": pd.arrays.IntegerArray(money.payment_count.astype(np.int64), np.zeros(n, dtype=bool)),
        "first_payment_at": _text(iso_utc_array(money.first_paid, paid)),
        "last_payment_at": _text(iso_utc_array(money.last_paid, paid)),
        "payment_frequency_days": pd.arrays.FloatingArray(np.nan_to_num(frequency), np.isnan(frequency)),
        "paying_customer": pd.arrays.BooleanArray(mrr_minor > 0, np.zeros(n, dtype=bool)),
        "trial_converted_at": _text(iso_utc_array(converted_at, converted)),
        "plan": _text(main.plan),
        "billing_interval": _text(main.billing_interval),
        "subscription_status": _text(status),
        "cancel_at_period_end": pd.arrays.BooleanArray(cancel_at_period_end, np.zeros(n, dtype=bool)),
        "next_billing_date": _text(iso_utc_array(main.period_end, main.renews)),
        "trial_end_date": _text(iso_utc_array(trial_end, trial_end != _NO_TIME)),
        "payment_delinquent": pd.arrays.BooleanArray(_delinquent(frames, n, customers, subs), np.zeros(n, dtype=bool)),
        "payment_method_type": _text(take_text(column(ch, "payment_method_type"), charge_rows.latest_succeeded)),
        "card_brand": _text(take_text(column(ch, "card_brand"), charge_rows.latest_succeeded)),
        "user_id": _text(user_id),
        "company_id": _text(metadata[config.company_id_key]),
        "company_name": _text(metadata[config.company_name_key]),
        "lifetime_value_minor": pd.arrays.IntegerArray(ltv_minor, np.zeros(n, dtype=bool)),
        "mrr_minor": pd.arrays.IntegerArray(mrr_minor, np.zeros(n, dtype=bool)),
    }, copy=False)  # the columns are fresh arrays: no need to copy them into 2-D blocks
    return out
