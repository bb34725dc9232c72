"""Synthetic mirror frames at scale, for the trait benchmark (numpy, vectorized).

About 1.2 subscriptions and 10 charges per customer; subscription items use a
small price catalogue per currency (monthly, annual, quarterly, weekly, daily,
volume and graduated tiers, transform_quantity, metered add-ons); some
subscription, item and customer discounts (forever / repeating / once,
percent and amount off); refunds (full and partial) and a few disputes.
Columns have the dtypes ``traits.frames.with_fast_dtypes`` gives the loader's
frames: references as categoricals aligned with the referenced ids, other
low-cardinality text as ``category``, nullable integers as ``Int64``.

    from bench.synth_mirror import synth_mirror, synth_mirror_blocks
    frames, now = synth_mirror(100_000, seed=1)
    for frames, now in synth_mirror_blocks(3_000_000, seed=1, block=100_000): ...

``synth_mirror_blocks`` generates the same distribution block by block, so a
mirror of millions of customers never exists in memory at once: each block
holds ``block`` customers and everything that is theirs (subscriptions, items,
discounts, invoices, charges, refunds, disputes); ids continue across blocks
(``cus_0000100000`` is the first customer of the second block, and so on for
every table), and the catalogue (products, prices, coupons) comes with the
first block only (empty frames after it). Block ``b`` draws from
``default_rng([seed, b])``, so the mirror depends on the seed and the block
size; ``synth_mirror(n, seed)`` is one block drawn from ``default_rng(seed)``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from s2s_pipeline.traits.frames import TABLE_COLUMNS, TRAIT_INPUT_COLUMNS, MirrorFrames

#: "now" of the synthetic account: 2026-11-01T00:00:00Z.
NOW = 1_793_491_200
DAY = 86_400
YEAR = 365 * DAY

CURRENCIES = np.array(["usd", "eur", "gbp", "jpy", "chf", "cad", "aud"], dtype=object)
CURRENCY_WEIGHTS = np.array([0.60, 0.15, 0.08, 0.07, 0.04, 0.03, 0.03])
# minor units per "dollar-ish" unit: JPY has no minor unit and ~1.5 JPY per US cent
CURRENCY_SCALE = np.array([1.0, 1.0, 1.0, 1.5, 1.0, 1.0, 1.0])

# (nickname, product index, unit, interval, interval_count, scheme, tiers_mode, usage, divide_by, weight as main)
CATALOGUE = [
    ("Basic", 0, 1_500, "month", 1, "per_unit", None, "licensed", None, 0.30),
    ("Pro seats", 1, 4_900, "month", 1, "per_unit", None, "licensed", None, 0.25),
    ("Pro annual", 1, 49_000, "year", 1, "per_unit", None, "licensed", None, 0.12),
    (None, 2, 12_000, "month", 3, "per_unit", None, "licensed", None, 0.08),  # quarterly team, no nickname
    ("Weekly", 3, 900, "week", 1, "per_unit", None, "licensed", None, 0.05),
    ("Volume", 4, None, "month", 1, "tiered", "volume", "licensed", None, 0.08),
    ("Graduated", 4, None, "month", 1, "tiered", "graduated", "licensed", None, 0.07),
    ("API calls", 5, 2, "month", 1, "per_unit", None, "metered", None, 0.0),
    ("Per 1000 emails", 5, 500, "month", 1, "per_unit", None, "licensed", 1000, 0.03),
    ("Daily", 3, 100, "day", 1, "per_unit", None, "licensed", None, 0.02),
]
PRODUCTS = ["Basic", "Pro", "Team", "Flex", "Usage tiers", "Usage"]
SEAT_PRICES = {1, 5, 6}  # quantities 1..20
EMAIL_PRICE = 8  # quantities in the thousands (transform_quantity)
METERED_PRICE = 7

STATUSES = np.array(["active", "past_due", "trialing", "canceled", "unpaid", "incomplete",
                     "incomplete_expired", "paused"], dtype=object)
STATUS_WEIGHTS = np.array([0.68, 0.05, 0.07, 0.13, 0.02, 0.02, 0.01, 0.02])


def _ids(prefix: str, n: int, start: int = 0) -> np.ndarray:
    return np.array([f"{prefix}{i:010d}" for i in range(start, start + n)], dtype=object)


def _cat(codes: np.ndarray, categories) -> pd.Categorical:
    dtype = categories if isinstance(categories, pd.CategoricalDtype) else pd.CategoricalDtype(categories)
    return pd.Categorical.from_codes(codes, dtype=dtype)


def _choice(rng: np.random.Generator, p: list[float], size: int) -> np.ndarray:
    """int8 draws of 0..len(p)-1 with probabilities ``p`` (less memory than ``rng.choice``)."""
    edges = np.cumsum(p)[:-1].astype(np.float32)
    return np.searchsorted(edges, rng.random(size, dtype=np.float32), side="right").astype(np.int8)


def _nullable(values: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), np.asarray(missing, dtype=bool))


def _frame(table: str, data: dict, all_columns: bool) -> pd.DataFrame:
    """A frame with the columns the loader reads by default (``TRAIT_INPUT_COLUMNS``), or every schema column.

    Requested columns that are not generated are all-missing.
    """
    n = len(next(iter(data.values())))
    cols = {}
    wanted = TABLE_COLUMNS[table] if all_columns or not TRAIT_INPUT_COLUMNS[table] else TRAIT_INPUT_COLUMNS[table]
    for col in wanted:
        if col in data:
            value = data[col]
            cols[col] = pd.Series(value, dtype=object) if isinstance(value, np.ndarray) and value.dtype == object \
                else value
        elif col in ("livemode", "deleted"):
            cols[col] = np.zeros(n, dtype=bool)
        elif col == "version_ts":
            cols[col] = np.full(n, NOW, dtype=np.int64)
        else:
            cols[col] = pd.Series(np.full(n, None, dtype=object), dtype=object)
    return pd.DataFrame(cols)


#: Tables whose ids are numbered across blocks (the catalogue's are fixed names).
NUMBERED = ("customers", "subscriptions", "subscription_items", "discounts", "invoices", "charges", "refunds",
            "disputes")


def synth_mirror(customers: int, seed: int = 0, charges_per_customer: float = 10.0,
                 all_columns: bool = False) -> tuple[MirrorFrames, int]:
    """Synthetic MirrorFrames for ``customers`` customers, and the ``now`` to compute traits at.

    By default each table has the columns ``load_mirror_frames`` reads by default
    (``traits.frames.TRAIT_INPUT_COLUMNS``; refunds and disputes, which the traits do
    not read, keep all their columns); ``all_columns=True`` gives every schema column.
    """
    frames, _ = _block(np.random.default_rng(seed), int(customers), dict.fromkeys(NUMBERED, 0),
                       charges_per_customer, all_columns, catalogue=True)
    return frames, NOW


def synth_mirror_blocks(customers: int, seed: int = 0, block: int = 100_000, charges_per_customer: float = 10.0,
                        all_columns: bool = False, *, start_block: int = 0,
                        first_id: dict[str, int] | None = None) -> Iterator[tuple[MirrorFrames, int]]:
    """``synth_mirror`` of ``customers`` customers as consecutive blocks of ``block`` customers (the last
    one smaller), each with ``now``: ids continue across blocks, the catalogue comes with the first.

    ``start_block`` and ``first_id`` resume a generation: the blocks from ``start_block`` on, whose first
    ids per table are ``first_id`` (``next_first_ids`` of the blocks before it).
    """
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    if start_block and first_id is None:
        raise ValueError("resuming at a later block needs the first ids of that block")
    ids = dict(first_id) if first_id is not None else dict.fromkeys(NUMBERED, 0)
    for index in range(start_block, -(-int(customers) // block)):
        n = min(block, int(customers) - index * block)
        frames, ids = _block(np.random.default_rng([seed, index]), n, ids, charges_per_customer, all_columns,
                             catalogue=index == 0)
        yield frames, NOW


def next_first_ids(first_id: dict[str, int], frames: MirrorFrames) -> dict[str, int]:
    """The first ids of the block after ``frames`` (whose first ids were ``first_id``)."""
    return {name: int(first_id[name]) + len(getattr(frames, name)) for name in NUMBERED}


def _block(rng: np.random.Generator, n: int, first_id: dict[str, int], charges_per_customer: float,
           all_columns: bool, catalogue: bool) -> tuple[MirrorFrames, dict[str, int]]:
    """One block of ``n`` customers whose ids (per table) begin at ``first_id``; and where the next block's begin."""
    c0 = first_id["customers"]
    n_cur = len(CURRENCIES)
    cur_dtype = pd.CategoricalDtype(CURRENCIES)

    # -- customers ------------------------------------------------------------------------
    cus_ids = _ids("cus_", n, c0)
    cus_dtype = pd.CategoricalDtype(pd.Index(cus_ids, dtype=object))
    cus_cur = rng.choice(n_cur, size=n, p=CURRENCY_WEIGHTS)
    cur_missing = rng.random(n) < 0.05  # currency falls back to subscriptions / charges
    with_user = rng.random(n) < 0.6
    with_company = rng.random(n) < 0.1
    metadata = np.full(n, None, dtype=object)
    metadata[with_user] = [{"segment_user_id": f"u{c0 + i}"} for i in np.flatnonzero(with_user)]
    for i in np.flatnonzero(with_company):
        meta = metadata[i] if metadata[i] is not None else {}
        meta.update(company_id=f"acme{(c0 + i) % 5000}", company_name=f"Company {(c0 + i) % 5000}")
        metadata[i] = meta
    customers_df = _frame("customers", all_columns=all_columns, data={
        "id": cus_ids,
        "email": np.array([f"user{i}@example.com" for i in range(c0, c0 + n)], dtype=object),
        "name": np.array([f"Customer {i}" for i in range(c0, c0 + n)], dtype=object),
        "currency": _cat(np.where(cur_missing, -1, cus_cur), cur_dtype),
        "created": NOW - rng.integers(0, 4 * YEAR, n),
        "metadata": metadata,
    })

    # -- catalogue: products, prices (one set per currency), coupons ------------------------
    products = _frame("products", all_columns=all_columns, data={
        "id": np.array([f"prod_{i}" for i in range(len(PRODUCTS))], dtype=object),
        "name": np.array(PRODUCTS, dtype=object),
    })
    k = len(CATALOGUE)
    price_rows = []
    for c, cur in enumerate(CURRENCIES):
        scale = CURRENCY_SCALE[c]
        for j, (nick, prod, unit, interval, count, scheme, mode, usage, divide_by, _w) in enumerate(CATALOGUE):
            tiers = None
            if mode == "volume":
                tiers = [{"up_to": 10, "unit_amount_decimal": str(int(1000 * scale)), "flat_amount_decimal": None},
                         {"up_to": 50, "unit_amount_decimal": str(int(800 * scale)), "flat_amount_decimal": None},
                         {"up_to": None, "unit_amount_decimal": str(int(600 * scale)), "flat_amount_decimal": None}]
            elif mode == "graduated":
                tiers = [{"up_to": 5, "unit_amount_decimal": str(int(1200 * scale)),
                          "flat_amount_decimal": str(int(500 * scale))},
                         {"up_to": None, "unit_amount_decimal": str(int(1000 * scale)), "flat_amount_decimal": None}]
            price_rows.append({
                "id": f"price_{cur}_{j}", "product": f"prod_{prod}", "currency": cur, "nickname": nick,
                "billing_scheme": scheme, "tiers_mode": mode, "tiers": tiers,
                "unit_amount": None if unit is None else int(unit * scale),
                "unit_amount_decimal": None if unit is None else str(unit * scale),
                "recurring_interval": interval, "recurring_interval_count": count, "recurring_usage_type": usage,
                "transform_divide_by": divide_by, "transform_round": "up" if divide_by else None,
                "type": "recurring", "active": True,
            })
    prices = pd.DataFrame({col: pd.Series([r.get(col) for r in price_rows], dtype=object)
                           for col in TABLE_COLUMNS["prices"]})
    prices["deleted"] = False
    price_ids = pd.Index(prices["id"].to_numpy(dtype=object))
    coupon_rows = [
        {"id": "forever20", "percent_off": 20.0, "duration": "forever"},
        {"id": "rep50", "percent_off": 50.0, "duration": "repeating", "duration_in_months": 3},
        {"id": "once10", "percent_off": 10.0, "duration": "once"},
    ] + [{"id": f"off5_{cur}", "amount_off": int(500 * CURRENCY_SCALE[c]), "currency": cur, "duration": "forever"}
         for c, cur in enumerate(CURRENCIES)]
    coupons = pd.DataFrame({col: pd.Series([r.get(col) for r in coupon_rows], dtype=object)
                            for col in TABLE_COLUMNS["coupons"]})
    coupons["deleted"] = False

    # -- subscriptions ------------------------------------------------------------------------
    per_customer = rng.choice(3, size=n, p=[0.15, 0.5, 0.35])
    sub_cus = np.repeat(np.arange(n), per_customer)
    n_sub = len(sub_cus)
    sub_ids = _ids("sub_", n_sub, first_id["subscriptions"])
    sub_dtype = pd.CategoricalDtype(pd.Index(sub_ids, dtype=object))
    sub_cur = cus_cur[sub_cus]
    status = rng.choice(len(STATUSES), size=n_sub, p=STATUS_WEIGHTS)
    created = NOW - rng.integers(DAY, 3 * YEAR, n_sub)
    is_status = {s: status == i for i, s in enumerate(STATUSES)}
    ended = is_status["canceled"] | is_status["incomplete_expired"]
    ended_at = np.minimum(created + rng.integers(DAY, YEAR, n_sub), NOW - 1)
    trialing = is_status["trialing"]
    had_trial = trialing | (rng.random(n_sub) < 0.2)
    trial_end = np.where(trialing, NOW + rng.integers(DAY, 14 * DAY, n_sub), created + 14 * DAY)
    live = ~ended
    cape = live & (rng.random(n_sub) < 0.04)
    paused = live & ~cape & (rng.random(n_sub) < 0.015)
    subscriptions = _frame("subscriptions", all_columns=all_columns, data={
        "id": sub_ids,
        "customer": _cat(sub_cus, cus_dtype),
        "status": _cat(status, pd.CategoricalDtype(STATUSES)),
        "currency": _cat(sub_cur, cur_dtype),
        "created": created,
        "start_date": created,
        "cancel_at_period_end": cape,
        "cancel_at": _nullable(NOW + 10 * DAY, ~cape),
        "canceled_at": _nullable(ended_at, ~ended),
        "ended_at": _nullable(ended_at, ~ended),
        "trial_start": _nullable(trial_end - 14 * DAY, ~had_trial),
        "trial_end": _nullable(trial_end, ~had_trial),
        "pause_collection_behavior": _cat(np.where(paused, 0, -1), pd.CategoricalDtype(["void"])),
    })

    # -- subscription items: one main item, 25% with an add-on (metered API or more seats) ----
    weights = np.array([c[-1] for c in CATALOGUE])
    main_local = rng.choice(k, size=n_sub, p=weights / weights.sum())
    addon = rng.random(n_sub) < 0.25
    addon_local = np.where(rng.random(n_sub) < 0.7, METERED_PRICE, 1)
    item_sub = np.concatenate([np.arange(n_sub), np.flatnonzero(addon)])
    item_local = np.concatenate([main_local, addon_local[addon]])
    n_item = len(item_sub)
    quantity = np.ones(n_item, dtype=np.int64)
    seats = np.isin(item_local, list(SEAT_PRICES))
    quantity[seats] = rng.integers(1, 21, seats.sum())
    emails = item_local == EMAIL_PRICE
    quantity[emails] = rng.integers(100, 50_000, emails.sum())
    metered = item_local == METERED_PRICE
    item_price = sub_cur[item_sub] * k + item_local
    item_ids = _ids("si_", n_item, first_id["subscription_items"])
    subscription_items = _frame("subscription_items", all_columns=all_columns, data={
        "id": item_ids,
        "subscription": _cat(item_sub, sub_dtype),
        "customer": _cat(sub_cus[item_sub], cus_dtype),
        "price": _cat(item_price, pd.CategoricalDtype(price_ids)),
        "quantity": _nullable(quantity, metered),
        "current_period_start": NOW - rng.integers(0, 28 * DAY, n_item),
        "current_period_end": NOW + rng.integers(DAY, 28 * DAY, n_item),
        "created": created[item_sub],
    })

    # -- discounts: 8% of subscriptions, 2% of items, 1% of customers -----------------------
    coupon_ids = pd.Index(coupons["id"].to_numpy(dtype=object))
    d_sub = np.flatnonzero(rng.random(n_sub) < 0.08)
    d_item = np.flatnonzero(rng.random(n_item) < 0.02)
    d_cus = np.flatnonzero(rng.random(n) < 0.01)
    n_d = len(d_sub) + len(d_item) + len(d_cus)
    kind = rng.choice(4, size=n_d, p=[0.5, 0.25, 0.1, 0.15])  # forever20, rep50, once10, amount off
    d_customer = np.concatenate([sub_cus[d_sub], sub_cus[item_sub[d_item]], d_cus])
    d_currency = cus_cur[d_customer]
    coupon = np.where(kind == 3, 3 + d_currency, kind)
    start = NOW - rng.integers(DAY, YEAR, n_d)
    repeating = kind == 1
    discounts = _frame("discounts", all_columns=all_columns, data={
        "id": _ids("di_", n_d, first_id["discounts"]),
        "customer": _cat(d_customer, cus_dtype),
        "subscription": _cat(np.concatenate([d_sub, item_sub[d_item], np.full(len(d_cus), -1)]), sub_dtype),
        "subscription_item": _cat(np.concatenate([np.full(len(d_sub), -1), d_item, np.full(len(d_cus), -1)]),
                                  pd.CategoricalDtype(pd.Index(item_ids, dtype=object))),
        "coupon": _cat(coupon, pd.CategoricalDtype(coupon_ids)),
        "start": start,
        "end": _nullable(start + 90 * DAY, ~repeating),
    })

    # -- invoices: the latest two per subscription ------------------------------------------
    inv_sub = np.repeat(np.arange(n_sub), 2)
    n_inv = len(inv_sub)
    newest = np.tile([False, True], n_sub)
    inv_status = np.zeros(n_inv, dtype=np.int64)  # paid
    late = is_status["past_due"][inv_sub] | is_status["unpaid"][inv_sub]
    inv_status[newest & late] = 1  # open
    inv_status[newest & (rng.random(n_inv) < 0.03)] = 2  # draft
    inv_status[~newest & (rng.random(n_inv) < 0.01)] = 3  # void
    invoices = _frame("invoices", all_columns=all_columns, data={
        "id": _ids("in_", n_inv, first_id["invoices"]),
        "customer": _cat(sub_cus[inv_sub], cus_dtype),
        "subscription": _cat(inv_sub, sub_dtype),
        "status": _cat(inv_status, pd.CategoricalDtype(["paid", "open", "draft", "void"])),
        "currency": _cat(sub_cur[inv_sub], cur_dtype),
        "amount_due": rng.integers(500, 50_000, n_inv),
        "attempt_count": np.where(inv_status == 1, 2, np.where(inv_status == 2, 0, 1)),
        "created": NOW - np.where(newest, rng.integers(0, 30 * DAY, n_inv), rng.integers(30 * DAY, 60 * DAY, n_inv)),
    })

    # -- charges: ~10 per customer (compact dtypes: the peak memory of the benchmark counts) --
    per_cus = rng.poisson(charges_per_customer, n)
    ch_cus = np.repeat(np.arange(n, dtype=np.int32), per_cus)
    n_ch = len(ch_cus)
    ch_status = _choice(rng, [0.9, 0.08, 0.02], n_ch)  # succeeded, failed, pending
    ch_cur = cus_cur.astype(np.int8)[ch_cus]
    other = np.flatnonzero(rng.random(n_ch, dtype=np.float32) < 0.01)
    ch_cur[other] = rng.integers(0, n_cur, len(other))
    captured = rng.integers(500, 50_000, n_ch)
    jpy = ch_cur == 3
    captured[jpy] = captured[jpy] * 3 // 2
    del jpy
    amount = captured.copy() if all_columns else None
    succeeded = ch_status == 0
    captured[~succeeded] = 0
    refund_kind = _choice(rng, [0.93, 0.04, 0.03], n_ch)  # none, full, partial
    refund_kind[~succeeded] = 0
    refunded = np.zeros(n_ch, dtype=np.int64)
    full, partial = refund_kind == 1, refund_kind == 2
    refunded[full] = captured[full]
    refunded[partial] = captured[partial] // 3
    del partial
    pmt = _choice(rng, [0.85, 0.05, 0.05, 0.05], n_ch)
    brand = _choice(rng, [0.5, 0.3, 0.15, 0.05], n_ch)
    brand[pmt != 0] = -1
    ch_ids = _ids("ch_", n_ch, first_id["charges"])
    r_rows = np.flatnonzero(refund_kind > 0)
    dp_rows = np.flatnonzero(succeeded & (rng.random(n_ch, dtype=np.float32) < 0.001))
    charge_data = {
        "id": ch_ids,
        "customer": _cat(ch_cus, cus_dtype),
        "status": _cat(ch_status, pd.CategoricalDtype(["succeeded", "failed", "pending"])),
        "currency": _cat(ch_cur, cur_dtype),
        "amount_captured": captured,
        "amount_refunded": refunded,
        "payment_method_type": _cat(pmt, pd.CategoricalDtype(["card", "sepa_debit", "us_bank_account", "link"])),
        "card_brand": _cat(brand, pd.CategoricalDtype(["visa", "mastercard", "amex", "discover"])),
        "created": NOW - rng.integers(0, 3 * YEAR, n_ch),
    }
    if all_columns:
        charge_data.update(amount=amount, captured=succeeded, paid=succeeded, refunded=full,
                           disputed=np.zeros(n_ch, dtype=bool))
    del ch_cus, ch_status, pmt, brand, amount, full, refund_kind
    charges = _frame("charges", all_columns=all_columns, data=charge_data)
    del charge_data

    # -- refunds (one per refunded charge) and a few disputes -------------------------------
    refunds = _frame("refunds", all_columns=all_columns, data={
        "id": _ids("re_", len(r_rows), first_id["refunds"]),
        "charge": ch_ids[r_rows],
        "status": _cat(np.zeros(len(r_rows), dtype=np.int8), pd.CategoricalDtype(["succeeded"])),
        "currency": _cat(ch_cur[r_rows], cur_dtype),
        "amount": refunded[r_rows],
        "reason": _cat(np.zeros(len(r_rows), dtype=np.int8), pd.CategoricalDtype(["requested_by_customer"])),
        "created": NOW - rng.integers(0, YEAR, len(r_rows)),
    })
    disputes = _frame("disputes", all_columns=all_columns, data={
        "id": _ids("dp_", len(dp_rows), first_id["disputes"]),
        "charge": ch_ids[dp_rows],
        "status": _cat(rng.integers(0, 3, len(dp_rows)), pd.CategoricalDtype(["needs_response", "won", "lost"])),
        "currency": _cat(ch_cur[dp_rows], cur_dtype),
        "amount": captured[dp_rows],
        "reason": _cat(np.zeros(len(dp_rows), dtype=np.int8), pd.CategoricalDtype(["fraudulent"])),
        "created": NOW - rng.integers(0, YEAR, len(dp_rows)),
    })
    del ch_ids, ch_cur, captured, refunded, succeeded

    if not catalogue:  # the first block's; later blocks only reference it
        prices, products, coupons = prices.head(0), products.head(0), coupons.head(0)
    frames = MirrorFrames(customers=customers_df, subscriptions=subscriptions,
                          subscription_items=subscription_items, prices=prices, products=products, coupons=coupons,
                          discounts=discounts, invoices=invoices, charges=charges, refunds=refunds,
                          disputes=disputes)
    after = {name: first_id[name] + len(getattr(frames, name)) for name in NUMBERED}
    return frames, after
