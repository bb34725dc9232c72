"""Failed payment to Segment through a real dagster-daemon: latency per failure.

    python bench/sensor_latency_bench.py [--runs 5] [--customers 20] [--webhook]

Uses the daemon harness of the test suite (devtools/s2s_devtools/harness/daemon.py):
a Stripe stand-in and a Segment sink on 127.0.0.1 in this process, a throwaway
SQLite DAGSTER_HOME, one in-process `nightly_trait_refresh`, then
`dagster-daemon run -w workspace.yaml` in its own process group, after
`failed_payment_sensor`'s first tick. Then, N times one after another: a card
decline on a subscription invoice is emitted into the stand-in (created = now),
the bench waits until Segment has the `Payment Failed` and every run the
sensor launched for it has finished, and records the latency = sink
receivedAt - Stripe event created (the polling path: the event is visible
in the Events API from its creation).

``--webhook``: the harness also serves the webhook receiver (s2s-webhooks'
app) on the same state store and the stand-in posts each failure to it,
signed; the latency is then sink receivedAt - the start of the webhook POST,
and the ``sensor_tick`` stage runs from the POST. Each run's ``found_by``
tag says which path launched it.

Prints one JSON line: seconds (total, setup included), peak_rss_mb (this
process: stand-in, sink, in-process nightly run), daemon_peak_rss_mb (summed
RSS of the daemon's process group: daemon, code server, run workers, sampled
every 0.5 s), runs, latencies, p50, p95, max, and the median of each stage
(from the runs' event logs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _common import peak_rss_mb  # noqa: E402  (sets the import path)

from s2s_devtools.harness.daemon import (  # noqa: E402
    HarnessError,
    daemon_harness,
    payment_failed_tracks,
    received_at,
)

ARRIVAL_DEADLINE_S = 90


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="failed payments, one after another (5)")
    parser.add_argument("--customers", type=int, default=20, help="customers in the generated account (20)")
    parser.add_argument("--webhook", action="store_true", help="failures also arrive by webhook; time from the POST")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    started = time.perf_counter()
    latencies: list[float] = []
    stages: dict[str, list[float]] = {"sensor_tick": [], "queued": [], "worker_start": [], "step": [],
                                      "runs_per_failure": []}
    found_by: dict[str, int] = {}
    with daemon_harness(customers=args.customers, webhooks=args.webhook) as h:
        setup = dict(h.timings)
        for _ in range(args.runs):
            event_id, created = h.fail_a_payment()
            start = h.wait_for_webhook(event_id) if args.webhook else created
            invoice_id = h.standin.get("events", event_id)["data"]["object"]["id"]
            new_ids = h.alerting_event_ids(created)  # an invoice's own charge.failed launches no run
            if not h.sink.wait_for(lambda: bool(payment_failed_tracks(h.sink, invoice_id)), ARRIVAL_DEADLINE_S):
                raise HarnessError(f"no Payment Failed for {invoice_id} within {ARRIVAL_DEADLINE_S} s; sensor tick "
                                   f"errors {h.sensor_tick_errors()[:1]}\n{h.daemon_log()}")
            track = payment_failed_tracks(h.sink, invoice_id)[0]
            latencies.append(round(received_at(track) - start, 2))
            runs = h.wait_for_alert_runs(new_ids, timeout_s=60)
            every_failure_event = set(h.failed_payment_event_ids(created))
            stages["runs_per_failure"].append(
                len([r for r in h.alert_runs() if r.tags.get("dagster/run_key") in every_failure_event]))
            run = next(r for r in runs if r.tags.get("dagster/run_key") == event_id)
            path = run.tags.get("s2s/found_by", "?")
            found_by[path] = found_by.get(path, 0) + 1
            ev = h.run_stages(run.run_id)
            enqueued = ev.get("PIPELINE_ENQUEUED", ev.get("RUN_ENQUEUED"))
            starting = ev.get("PIPELINE_STARTING", ev.get("RUN_STARTING"))
            step_start, step_end = ev.get("STEP_START"), ev.get("STEP_SUCCESS")
            if None not in (enqueued, starting, step_start, step_end):
                stages["sensor_tick"].append(enqueued - start)  # event (or POST) -> run requested by a tick
                stages["queued"].append(starting - enqueued)  # queue -> dequeued and launched
                stages["worker_start"].append(step_start - starting)  # run worker + step process up
                stages["step"].append(step_end - step_start)  # the asset itself
        daemon_peak = h.rss.peak_mb if h.rss else None
        ticks = sorted(h.sensor_ticks(limit=500), key=lambda t: t.timestamp)
        tick_seconds = [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]
        tick_gaps = [b.timestamp - a.timestamp for a, b in zip(ticks, ticks[1:])]
    seconds = time.perf_counter() - started
    out = {
        "seconds": round(seconds, 1),
        "peak_rss_mb": peak_rss_mb(),
        "daemon_peak_rss_mb": daemon_peak,
        "runs": args.runs,
        "latencies": latencies,
        "p50": round(statistics.median(latencies), 2),
        "p95": round(_percentile(latencies, 95), 2),
        "max": max(latencies),
        "path": "webhook" if args.webhook else "polling",
        "found_by": found_by,
        "stage_medians": {k: round(statistics.median(v), 2) for k, v in stages.items() if v},
        "stage_p95": {k: round(_percentile(v, 95), 2) for k, v in stages.items() if v},
        "sensor_tick_seconds_median": round(statistics.median(tick_seconds), 2) if tick_seconds else None,
        "sensor_tick_gap_seconds_median": round(statistics.median(tick_gaps), 2) if tick_gaps else None,
        "sensor_tick_gap_seconds_max": round(max(tick_gaps), 2) if tick_gaps else None,
        "setup": setup,
        "customers": args.customers,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
