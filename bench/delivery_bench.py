"""Delivery throughput to a local Segment sink (gzip on), through analytics-python.

    python bench/delivery_bench.py [--messages 50000] [--upload-size 100]

The sink runs in a child process (so it does not compete with the sender for
the GIL) and checks Basic auth, gzip and Segment's size limits like the real
tracking API. Times ``deliver()`` end to end: size checks, enqueue, batching,
gzip, HTTP, acknowledgement bookkeeping. Prints one JSON line with seconds,
peak_rss_mb, messages, messages_per_second, delivered, failed. With
SEGMENT_HOST set (and SEGMENT_WRITE_KEY), it sends to that server instead.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time

from _common import peak_rss_mb  # noqa: E402  (sets the import path)

from s2s_devtools.fakes.segment_sink import SegmentSink  # noqa: E402
from s2s_pipeline.segment.delivery import SegmentSettings, deliver  # noqa: E402
from s2s_pipeline.core.times import utc_datetime as utc
from s2s_pipeline.segment.messages import identify_message  # noqa: E402

WRITE_KEY = "bench_write_key"


def _serve(ready, stop, counts) -> None:
    with SegmentSink(write_key=WRITE_KEY) as sink:
        ready.put(sink.base_url)
        stop.wait()
        counts.put(len(sink.accepted_by_message_id()))


def _messages(n: int):
    return [
        identify_message(f"cus_{i:08d}", f"user_{i}" if i % 3 else None, None if i % 3 else f"cus_{i:08d}", {
            "email": f"person{i}@example.com", "mrr": round(i % 997 * 1.5, 2), "lifetime_value": float(i % 10_000),
            "spend_tier": "medium", "plan": "Pro (annual)", "subscription_status": "active",
            "payment_delinquent": False, "next_billing_date": "2026-12-01T00:00:00Z",
        }, utc(1_790_000_000 + i))
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--upload-size", type=int, default=100)
    args = parser.parse_args()
    if os.environ.get("SEGMENT_HOST"):
        # Another Segment-compatible sink: send to it.
        settings = SegmentSettings(write_key=os.environ.get("SEGMENT_WRITE_KEY", WRITE_KEY),
                                   host=os.environ["SEGMENT_HOST"], gzip=True, upload_size=args.upload_size)
        messages = _messages(args.messages)
        started = time.perf_counter()
        report = deliver(messages, settings)
        _print(args, time.perf_counter() - started, report, None)
        return
    ctx = multiprocessing.get_context("spawn")
    ready, counts, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(ready, stop, counts), daemon=True)
    server.start()
    try:
        host = ready.get(timeout=60)
        messages = _messages(args.messages)
        settings = SegmentSettings(write_key=WRITE_KEY, host=host, gzip=True, upload_size=args.upload_size)
        started = time.perf_counter()
        report = deliver(messages, settings)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
    accepted = counts.get(timeout=60)
    server.join(timeout=10)
    _print(args, seconds, report, accepted)


def _print(args, seconds: float, report, accepted) -> None:
    print(json.dumps({
        "benchmark": "delivery",
        "seconds": round(seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
        "messages": args.messages,
        "messages_per_second": round(args.messages / seconds, 1),
        "delivered": len(report.delivered),
        "failed": len(report.failed),
        "sink_accepted_unique": accepted,
        "upload_size": args.upload_size,
        "gzip": True,
    }))


if __name__ == "__main__":
    main()
