"""Extraction throughput against the Stripe stand-in at the configured rate limit.

    python bench/extract_bench.py [--customers 2000] [--rate-limit 20] [--concurrency 4]

Seeds the stand-in (in a child process) with a generated account, then backfills every object type
over the account's whole history (created windows fetched concurrently,
paced by the client-side limiter) into a fresh SQLite mirror. The stand-in
enforces the same limit server-side, so any overshoot would show as 429s.
With STRIPE_API_BASE set (and STRIPE_API_KEY), it extracts from that server
instead (already seeded, any Stripe-compatible stand-in).
Prints one JSON line: seconds, peak_rss_mb, objects_per_second, rate_limit,
requests_per_second, utilization (requests/s ÷ limit), objects, requests, 429s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time

from _common import peak_rss_mb  # noqa: E402  (sets the import path)

from s2s_devtools.demo.generator import generate_account, seed_standin  # noqa: E402
from s2s_devtools.fakes.stripe import StripeStandIn  # noqa: E402
from s2s_pipeline.extract.backfill import ALL_OBJECT_TYPES, backfill  # noqa: E402
from s2s_pipeline.store.state_store import StateStore  # noqa: E402
from s2s_pipeline.stripe.client import StripeReader  # noqa: E402
from s2s_pipeline.stripe.settings import StripeSettings  # noqa: E402


def _serve(customers: int, seed: int, now: int, limit: float, ready, stop) -> None:
    """Child process: generate the account and serve it (so serving does not compete for our CPU)."""
    account = generate_account(customers=customers, seed=seed, now=now)
    oldest = min(int(o["created"]) for o in account.objects if "created" in o)
    with StripeStandIn(now=now) as standin:
        seed_standin(standin, account)
        # A 10% server-side margin so timer jitter is not mistaken for overshoot.
        standin.rate_limit_per_second = limit * 1.1
        ready.put((standin.base_url, oldest))
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--rate-limit", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    now = int(time.time())
    if os.environ.get("STRIPE_API_BASE"):
        # Another Stripe stand-in, already seeded: extract all of it.
        with tempfile.TemporaryDirectory() as tmp:
            store = StateStore.from_url(f"sqlite:///{tmp}/bench.db")
            settings = StripeSettings(api_key=os.environ.get("STRIPE_API_KEY", "sk_test_bench"),
                                      api_base=os.environ["STRIPE_API_BASE"], rate_limit=args.rate_limit,
                                      concurrency=args.concurrency)
            reader = StripeReader(settings)
            started = time.perf_counter()
            result = backfill(reader, store, ALL_OBJECT_TYPES, 0, now + 86400)
            seconds = time.perf_counter() - started
        _report(result, reader, seconds, args)
        return
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(args.customers, args.seed, now, args.rate_limit, ready, stop),
                         daemon=True)
    server.start()
    try:
        base_url, oldest = ready.get(timeout=600)
        with tempfile.TemporaryDirectory() as tmp:
            store = StateStore.from_url(f"sqlite:///{tmp}/bench.db")
            settings = StripeSettings(api_key="sk_test_bench", api_base=base_url, rate_limit=args.rate_limit,
                                      concurrency=args.concurrency)
            reader = StripeReader(settings)
            started = time.perf_counter()
            result = backfill(reader, store, ALL_OBJECT_TYPES, oldest, now + 1)
            seconds = time.perf_counter() - started
    finally:
        stop.set()
        server.join(timeout=10)
    _report(result, reader, seconds, args)


def _report(result, reader, seconds: float, args) -> None:
    objects = sum(result.listed.values())
    rps = reader.request_count / seconds
    print(json.dumps({
        "benchmark": "extract",
        "seconds": round(seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
        "objects": objects,
        "objects_per_second": round(objects / seconds, 1),
        "rate_limit": args.rate_limit,
        "requests": reader.request_count,
        "requests_per_second": round(rps, 2),
        "utilization": round(rps / args.rate_limit, 3),
        "http_429": reader.rate_limited_count,
        "concurrency": args.concurrency,
        "customers": args.customers,
    }))


if __name__ == "__main__":
    main()
