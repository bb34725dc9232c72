"""Benchmark of the identify diff against a pushed state (contract "Benchmarks").

    python bench/diff_bench.py --customers 1000000 --changed 0.01

Synthesizes a trait table of N customers shaped like the one
``compute_customer_traits`` returns (object text with None, nullable
Int64/boolean, float money), a pushed state equal to it shaped like
``segment_pushed_traits`` read back from SQLite (``trait_<name>`` columns,
text as pandas' ``str`` dtype, booleans as 0/1 integers, distinct string
objects), shuffled into another row order (as a table read by primary key
would be; ``--aligned`` keeps the order), then changes FRACTION of the
customers (various traits; 5% of them get a user id, i.e. an identity change).

Prints one JSON line: ``seconds`` (``diff_identify`` only, data generation
excluded), ``peak_rss_mb`` (peak resident memory of the whole process,
synthetic data included, from ``resource.getrusage``), ``customers``,
``changed`` (customers changed), ``messages`` (identify rows produced), and
versions. ``--profile`` writes a cProfile summary to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

from _common import machine, peak_rss_mb, rss_mb  # noqa: E402  (sets the import path)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from s2s_pipeline.segment.diff import diff_identify  # noqa: E402
from s2s_pipeline.core.contract import IDENTIFY_TRAITS  # noqa: E402

PLANS = np.array(["Starter", "Pro", "Business", "Enterprise", None], dtype=object)
INTERVALS = np.array(["month", "year", None], dtype=object)
STATUSES = np.array(["active", "trialing", "past_due", "canceled", "none"], dtype=object)
TIERS = np.array(["none", "low", "medium", "high", "vip"], dtype=object)
CURRENCIES = np.array(["usd", "eur", "gbp", "jpy"], dtype=object)
METHODS = np.array(["card", "sepa_debit", "us_bank_account", None], dtype=object)
BRANDS = np.array(["visa", "mastercard", "amex", None], dtype=object)
FIRST = ["Alice", "Bob", "Chen", "Dana", "Emil", "Fatima", "Goro", "Hana"]
LAST = ["Smith", "Garcia", "Tanaka", "Müller", "Okafor", "Rossi"]


def _iso(seconds: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.full(len(seconds), None, dtype=object)
    out[valid] = np.datetime_as_string(seconds[valid].astype("datetime64[s]"), unit="s", timezone="UTC")
    return out


def synth_traits(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A trait table as ``compute_customer_traits`` returns it (plus ``user_id``/``anonymous_id``)."""
    ids = np.array([f"cus_{i:08x}{(i * 2654435761) % 16**6:06x}" for i in range(n)], dtype=object)
    emails = np.array([f"user{i}@example.com" for i in range(n)], dtype=object)
    emails[rng.random(n) < 0.03] = None
    names = np.array([f"{a} {b}" for a in FIRST for b in LAST], dtype=object)[rng.integers(0, 48, n)]
    names[rng.random(n) < 0.05] = None
    paid = rng.random(n) < 0.8
    payment_count = np.where(paid, rng.integers(1, 40, n), 0)
    ltv = np.where(paid, np.round(rng.gamma(2.0, 150.0, n), 2), 0.0)
    mrr = np.where(rng.random(n) < 0.6, np.round(rng.choice([9.0, 29.0, 99.0, 499.0], n) * rng.integers(1, 4, n), 2), 0.0)
    captured = rng.random(n) < 0.75
    refund = np.round(np.where(rng.random(n) < 0.1, rng.random(n) * 0.3, 0.0), 4)
    now = 1_780_000_000
    first_at = now - rng.integers(86_400, 3 * 365 * 86_400, n)
    last_at = np.minimum(now, first_at + rng.integers(0, 365 * 86_400, n))
    renews = rng.random(n) < 0.6
    trial = rng.random(n) < 0.05
    user_id = np.array([f"u_{i}" for i in range(n)], dtype=object)
    user_id[rng.random(n) < 0.4] = None
    frame = pd.DataFrame({
        "stripe_customer_id": pd.Series(ids, dtype=object),
        "email": pd.Series(emails, dtype=object),
        "name": pd.Series(names, dtype=object),
        "currency": pd.Series(CURRENCIES[rng.integers(0, 4, n)], dtype=object),
        "lifetime_value": ltv,
        "mrr": mrr,
        "spend_tier": pd.Series(TIERS[np.searchsorted([0, 100, 1000, 10000], ltv, side="right")], dtype=object),
        "refund_rate": pd.arrays.FloatingArray(refund, ~captured),
        "payment_count": pd.arrays.IntegerArray(payment_count.astype(np.int64), np.zeros(n, bool)),
        "first_payment_at": pd.Series(_iso(first_at, paid), dtype=object),
        "last_payment_at": pd.Series(_iso(last_at, paid), dtype=object),
        "plan": pd.Series(PLANS[rng.integers(0, 5, n)], dtype=object),
        "billing_interval": pd.Series(INTERVALS[rng.integers(0, 3, n)], dtype=object),
        "subscription_status": pd.Series(STATUSES[rng.integers(0, 5, n)], dtype=object),
        "cancel_at_period_end": pd.arrays.BooleanArray(rng.random(n) < 0.05, np.zeros(n, bool)),
        "next_billing_date": pd.Series(_iso(now + rng.integers(0, 30 * 86_400, n), renews), dtype=object),
        "trial_end_date": pd.Series(_iso(now + rng.integers(0, 14 * 86_400, n), trial), dtype=object),
        "payment_delinquent": pd.arrays.BooleanArray(rng.random(n) < 0.02, np.zeros(n, bool)),
        "payment_method_type": pd.Series(METHODS[rng.integers(0, 4, n)], dtype=object),
        "card_brand": pd.Series(BRANDS[rng.integers(0, 4, n)], dtype=object),
        "user_id": pd.Series(user_id, dtype=object),
    })
    frame["anonymous_id"] = pd.Series(np.where(pd.isna(user_id), ids, None), dtype=object)
    return frame


def as_pushed(current: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """``segment_pushed_traits`` as read back from SQLite.

    Like a database driver, strings are made row by row (fresh objects, one
    row's strings next to each other in memory) and pandas builds columns of
    its default ``str`` dtype from them; booleans are 0/1 (NaN for NULL).
    """
    columns = {"stripe_customer_id": "stripe_customer_id", "user_id": "user_id", "anonymous_id": "anonymous_id"}
    columns.update({f"trait_{t}": t for t in IDENTIFY_TRAITS if t != "stripe_customer_id"})
    out = {}
    text = []
    for name, source in columns.items():
        s = current[source].iloc[order].reset_index(drop=True)
        if isinstance(s.dtype, pd.BooleanDtype):
            out[name] = s.astype("float64")  # SQLite: 0/1, NULL -> NaN
        elif isinstance(s.dtype, pd.Int64Dtype):
            out[name] = s.to_numpy(dtype=np.int64)
        elif s.dtype.kind == "f" or isinstance(s.dtype, pd.Float64Dtype):
            out[name] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[name] = None
            text.append((name, s.to_numpy(dtype=object)))
    rows = [[None if v is None else (v + ".")[:-1] for v in row] for row in zip(*(v for _, v in text))]
    for j, (name, _) in enumerate(text):
        out[name] = pd.Series([row[j] for row in rows], dtype="str")
    del rows
    return pd.DataFrame(out)


def change(current: pd.DataFrame, fraction: float, rng: np.random.Generator) -> int:
    """Change ``fraction`` of the customers in place, a different kind of change per group."""
    n = len(current)
    k = int(round(n * fraction))
    rows = rng.choice(n, size=k, replace=False)
    kinds = rng.integers(0, 8, k)
    kinds[rng.random(k) < 0.05] = 8  # identity changes: a user id appears
    for kind in range(9):
        r = rows[kinds == kind]
        if not len(r):
            continue
        if kind == 0:
            current.loc[r, "mrr"] = current.loc[r, "mrr"].to_numpy() + 10.0
        elif kind == 1:
            current.loc[r, "plan"] = "Scale"
        elif kind == 2:
            current.loc[r, "subscription_status"] = "canceled"
            current.loc[r, "next_billing_date"] = None
        elif kind == 3:
            current.loc[r, "payment_count"] = current.loc[r, "payment_count"] + 1
            current.loc[r, "lifetime_value"] = current.loc[r, "lifetime_value"].to_numpy() + 19.99
            current.loc[r, "last_payment_at"] = "2026-05-28T02:00:00Z"
        elif kind == 4:
            current.loc[r, "card_brand"] = None
        elif kind == 5:
            current.loc[r, "payment_delinquent"] = ~current.loc[r, "payment_delinquent"]
        elif kind == 6:
            current.loc[r, "email"] = [f"changed{i}@example.org" for i in r]
        elif kind == 7:
            current.loc[r, "refund_rate"] = 0.5
        else:
            current.loc[r, "user_id"] = [f"new_{i}" for i in r]
            current.loc[r, "anonymous_id"] = None
    return k


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of customers changed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--aligned", action="store_true",
                        help="pushed rows in the same order as the trait table (the no-hash-join fast path)")
    parser.add_argument("--first", action="store_true",
                        help="empty pushed state: the first run, every customer gets its first identify")
    parser.add_argument("--profile", action="store_true", help="cProfile summary on stderr")
    args = parser.parse_args(argv)
    if not 0 <= args.changed <= 1:
        parser.error("--changed must be a fraction between 0 and 1")

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    current = synth_traits(args.customers, rng)
    order = np.arange(args.customers) if args.aligned else rng.permutation(args.customers)
    pushed = as_pushed(current, order)
    changed = change(current, args.changed, rng)
    if args.first:
        pushed, changed = pushed.iloc[:0], args.customers
    generate_seconds = time.perf_counter() - t0
    gc.collect()
    rss_before = rss_mb()

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    diff = diff_identify(current, pushed)
    seconds = time.perf_counter() - start
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)

    peak = peak_rss_mb()
    print(json.dumps({
        "benchmark": "diff",
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(peak, 1),
        "rss_before_diff_mb": round(rss_before, 1),
        "generate_seconds": round(generate_seconds, 3),
        "customers": args.customers,
        "changed": changed,
        "messages": len(diff),
        "reasons": {str(k): int(v) for k, v in diff["reason"].value_counts().sort_index().items()},
        "pushed_order": "empty" if args.first else "aligned" if args.aligned else "shuffled",
        **machine(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
