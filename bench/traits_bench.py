"""Benchmark of the trait computation alone on synthetic mirror frames.

    python bench/traits_bench.py --customers 1000000

Prints one JSON line: ``seconds`` (``compute_customer_traits`` only, data
generation excluded), ``peak_rss_mb`` (peak resident memory of the whole
process, synthetic data included, from ``resource.getrusage``), the row counts,
and versions. ``--profile`` writes a cProfile summary to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

from _common import machine, peak_rss_mb, rss_mb  # noqa: E402  (sets the import path)


from bench.synth_mirror import synth_mirror  # noqa: E402
from s2s_pipeline.traits.config import TraitsConfig  # noqa: E402
from s2s_pipeline.traits.customer_traits import compute_customer_traits  # noqa: E402
from s2s_pipeline.traits.frames import REFERENCES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="cProfile summary on stderr")
    parser.add_argument("--text-references", action="store_true",
                        help="turn reference columns (charges.customer ...) into plain text first, "
                             "to measure the path without categorical codes")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    frames, now = synth_mirror(args.customers, seed=args.seed)
    if args.text_references:
        for (table, col) in REFERENCES:
            df = getattr(frames, table)
            if col in df.columns:
                df[col] = df[col].astype(object)
    generate_seconds = time.perf_counter() - t0
    gc.collect()
    rss_before = rss_mb()

    config = TraitsConfig()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    traits = compute_customer_traits(frames, config, now)
    seconds = time.perf_counter() - start
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)

    peak = peak_rss_mb()
    print(json.dumps({
        "benchmark": "traits",
        "references": "text" if args.text_references else "categorical",
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(peak, 1),
        "rss_before_compute_mb": round(rss_before, 1),
        "generate_seconds": round(generate_seconds, 3),
        "customers": len(frames.customers),
        "charges": len(frames.charges),
        "subscriptions": len(frames.subscriptions),
        "subscription_items": len(frames.subscription_items),
        "invoices": len(frames.invoices),
        "discounts": len(frames.discounts),
        "trait_rows": len(traits),
        "customers_with_mrr": int((traits["mrr_minor"] > 0).sum()),
        **machine(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
