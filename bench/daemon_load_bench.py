"""The nightly job and N failed-payment alerts launched together through a real dagster-daemon (issue 11).

    python bench/daemon_load_bench.py [--alerts 50] [--customers 100] [--no-nightly] [--deadline S]
                                      [--postgres postgresql://postgres@127.0.0.1:5432/test | --sqlite]

Uses the daemon harness (devtools/s2s_devtools/harness/daemon.py) in Postgres
mode: a copy of the shipped `dagster.yaml` (queued coordinator, 4 concurrent
runs, pools of 1, run monitoring, run retries, `LocalRunLauncher`) with
Dagster's storage in a fresh database and the state store in another, both
created on the --postgres server and dropped afterwards; a Stripe stand-in
(generated account) and a Segment sink on 127.0.0.1 in this process; one
in-process `nightly_trait_refresh`; then `dagster-daemon run -w
workspace.yaml` (scheduler, sensors, run queue, run monitoring, retries).

At one moment it queues `nightly_trait_refresh` (as the schedule does: a run
of the code location's job submitted to the run coordinator) and emits N card
declines on N customers' subscription invoices into the stand-in, so
`failed_payment_sensor` queues N `failed_payment_alert` runs. It waits
(polling, with deadlines) until every run has finished, then checks
(devtools/s2s_devtools/harness/daemon_load.py): every run SUCCESS, none
retried; each failure's `Payment Failed` in the sink exactly once (one
message, one messageId); each customer's last `payment_delinquent` true; both
pools free. Exits 1 after printing the problems (stderr) if any promise broke.

Prints one JSON line: seconds (total, setup included), peak_rss_mb (this
process: stand-in, sink, in-process nightly, the workspace it launches from),
daemon_peak_rss_mb (summed RSS of the daemon's process group: daemon, code
server, run workers, sampled every 0.5 s), alerts, runs, retries,
seconds_to_last_alert (last Payment Failed received - the moment),
alert_latency p50/p95/max (sink receivedAt - Stripe event created, whole
seconds so up to 1 s high), alert_outcomes (sent by the alert run, or
"already handled": the nightly sent it first), nightly_seconds (its run),
nightly_queue_wait and alert_queue_wait (enqueued -> dequeued), setup, load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from _common import machine, peak_rss_mb  # noqa: E402  (sets the import path)

from s2s_devtools.harness.daemon import daemon_harness  # noqa: E402
from s2s_devtools.harness.daemon_load import run_daemon_load  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50, help="card declines emitted with the nightly (50)")
    parser.add_argument("--customers", type=int, default=None,
                        help="customers in the generated account (default: enough for one decline each, >= 20)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES,
                        help=f"admin URL of the Postgres server to create the databases on ({DEFAULT_POSTGRES})")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds for every run to finish (default: 240 + 12 per alert)")
    parser.add_argument("--no-nightly", action="store_true",
                        help="the declines alone, no nightly run beside them (a burst at any other time)")
    parser.add_argument("--sqlite", action="store_true",
                        help="the harness's SQLite instance instead (not the shipped dagster.yaml)")
    args = parser.parse_args()
    if args.alerts < 1:
        parser.error("--alerts must be >= 1")
    # about 7 in 10 generated customers have a subscription a payment can fail on
    customers = args.customers or max(20, 2 * args.alerts)

    started = time.perf_counter()
    load_before = os.getloadavg()
    with daemon_harness(customers=customers, postgres=None if args.sqlite else args.postgres) as h:
        setup = dict(h.timings)
        result = run_daemon_load(h, alerts=args.alerts, nightly=not args.no_nightly, deadline_s=args.deadline)
        daemon_peak = h.rss.peak_mb if h.rss else None
    seconds = time.perf_counter() - started
    out = {
        "seconds": round(seconds, 1),
        "peak_rss_mb": peak_rss_mb(),
        "daemon_peak_rss_mb": daemon_peak,
        **result.figures,
        "instance": "sqlite (harness)" if args.sqlite else "shipped dagster.yaml on postgres",
        "with_nightly": not args.no_nightly,
        "customers": customers,
        "setup": setup,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "problems": len(result.problems),
        "machine": machine(),
    }
    print(json.dumps(out))
    if result.problems:
        print("\n".join(result.problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
