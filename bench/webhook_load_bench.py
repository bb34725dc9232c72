"""The webhook receiver under load: N signed webhooks over S seconds on loopback, all stored, answer times.

    python bench/webhook_load_bench.py [--count 1000] [--seconds 10] [--duplicates 0.05] [--postgres URL]

Starts the real command (`python -m s2s_pipeline.webhooks.cli`, i.e.
`s2s-webhooks`) as a subprocess on a free loopback port with a fresh state
store (SQLite in a temporary directory, or the store at --postgres; only this run's new rows are counted),
sends `count` distinct invoice.payment_failed events (about 3 KB each) plus
`duplicates` x count redeliveries on a fixed schedule (open loop) from 16
keep-alive client threads, then counts the inbox.

Prints one JSON line: seconds, peak_rss_mb (this process), receiver_peak_rss_mb
(the receiver's VmHWM), sent, stored, lost, duplicates_sent, statuses,
p50_ms/p95_ms/p99_ms/max_ms (time to the answer), late_starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from _common import machine, peak_rss_mb  # noqa: E402  (sets the import path)

from s2s_devtools.harness.daemon import kill_group  # noqa: E402
from s2s_devtools.harness.receiver import free_port  # noqa: E402
from s2s_devtools.harness.webhook_load import send_load  # noqa: E402
from s2s_pipeline.store.state_store import StateStore  # noqa: E402

SECRET = "whsec_bench_load"
REPO = Path(__file__).resolve().parents[1]


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _inbox_count(url: str) -> int:
    store = StateStore.from_url(url)
    try:
        return store.inbox.count()
    finally:
        store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--duplicates", type=float, default=0.05, help="redeliveries as a share of count (0.05)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--postgres", help="state store URL (default: SQLite in a temporary directory)")
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="s2s-webhook-bench-") as tmp:
        url = args.postgres or f"sqlite:///{Path(tmp) / 'state.db'}"
        before = _inbox_count(url)  # a Postgres store may hold earlier runs' events (this run's ids are new)
        port = free_port()
        env = {**os.environ, "STRIPE_WEBHOOK_SECRET": SECRET, "S2S_DATABASE_URL": url,
               "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "devtools"), os.environ.get("PYTHONPATH", "")])}
        log = open(Path(tmp) / "receiver.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "s2s_pipeline.webhooks.cli", "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "warning"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"receiver did not start: {(Path(tmp) / 'receiver.log').read_text()}")
                    time.sleep(0.1)  # waiting for a subprocess to listen
            result = send_load(f"http://127.0.0.1:{port}/stripe/webhooks", SECRET, args.count, args.seconds,
                               duplicates=args.duplicates, workers=args.workers, run=uuid.uuid4().hex[:8])
            receiver_rss = _vm_hwm_mb(proc.pid)
        finally:
            kill_group(proc)
            log.close()
        stored = _inbox_count(url) - before
    out = {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": peak_rss_mb(),
        "receiver_peak_rss_mb": receiver_rss,
        "backend": "postgres" if args.postgres else "sqlite",
        "sent": result.sent,
        "send_seconds": result.seconds,
        "duplicates_sent": result.sent - args.count,
        "stored": stored,
        "lost": args.count - stored,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": result.errors,
        "p50_ms": result.percentile(50),
        "p95_ms": result.percentile(95),
        "p99_ms": result.percentile(99),
        "max_ms": round(max(result.latencies_ms or [0]), 2),
        "late_starts": result.late_starts,
        "machine": machine(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
