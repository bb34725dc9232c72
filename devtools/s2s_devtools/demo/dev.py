"""`make dev`: the Dagster UI on the demo's state, with the demo's Stripe stand-in, Segment sink and s2s-webhooks
running beside it, and a failed payment every few minutes.

    python -m s2s_devtools.demo.dev [--dir .demo] [--port 3000] [--every 180]

Serves again the Stripe account `make demo` left in ``.demo/stripe_account.json.gz``
(running `make demo` first when there is none), a Segment sink, the webhook
receiver (``python -m s2s_pipeline.webhooks.cli``, i.e. ``s2s-webhooks``) and
``dagster dev`` (webserver + daemon) with every setting the code location
needs (STRIPE_API_KEY, STRIPE_API_BASE, SEGMENT_WRITE_KEY, SEGMENT_HOST,
S2S_DATABASE_URL, STRIPE_WEBHOOK_SECRET, DAGSTER_HOME), so
``failed_payment_sensor`` ticks cleanly and any asset can be materialized.

Every ``--every`` seconds the stand-in fails a card payment on a
subscription invoice: the events appear in its Events API and are posted,
signed, to s2s-webhooks; the sensor launches a ``failed_payment_alert`` run
within seconds and the terminal prints what Segment received. Ctrl-C stops
everything and saves the account, so the next ``make dev`` continues from it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from s2s_devtools.demo.cli import DEMO_DAGSTER_YAML, STANDIN_STATE, main as demo_main
from s2s_devtools.demo.webhook_demo import DEMO_WEBHOOK_SECRET

STRIPE_KEY = "sk_test_s2s_demo"
WRITE_KEY = "demo_write_key"
REPO = Path(__file__).resolve().parents[3]


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _describe(message: dict) -> str:
    who = message.get("userId") or message.get("anonymousId")
    if message["type"] == "track":
        props = message.get("properties") or {}
        detail = f" invoice {props['invoice_id']}" if "invoice_id" in props else ""
        return f"track {message['event']}{detail} for {who}"
    return f"{message['type']} {who}: {', '.join(sorted(message.get('traits') or {}))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s2s_devtools.demo.dev", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".demo", help="the demo's working directory (.demo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port (3000)")
    parser.add_argument("--webhook-port", type=int, default=0, help="s2s-webhooks port (a free one)")
    parser.add_argument("--every", type=float, default=180, help="seconds between failed payments (180)")
    parser.add_argument("--first-after", type=float, default=45, help="seconds before the first one (45)")
    args = parser.parse_args(argv)

    workdir = Path(args.dir).resolve()
    if not (workdir / STANDIN_STATE).exists() or not (workdir / "state.db").exists():
        print(f"No demo state in {workdir}: running the demo first.\n")
        demo_main(["--dir", str(workdir)])
        print()

    (workdir / "dagster_home" / "dagster.yaml").write_text(DEMO_DAGSTER_YAML)  # quick run queue, also for older demos
    from s2s_devtools.demo.generator import DemoAccount
    from s2s_devtools.fakes.segment_sink import SegmentSink
    from s2s_devtools.fakes.stripe import StripeStandIn
    from s2s_devtools.harness.daemon import HarnessError, fail_a_payment, kill_group
    from s2s_devtools.harness.receiver import free_port
    from s2s_pipeline.core.alert_rule import FAILED_PAYMENT_EVENT_TYPES

    def terminate(*_: object) -> None:
        # raise, not set an Event: Event.set from a signal handler can deadlock on the Event's own lock
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    running = True
    procs: list[subprocess.Popen] = []
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        standin.restore(workdir / STANDIN_STATE)
        standin.now = None  # the wall clock: new events are newer than the demo's
        objects = [o for o in standin.dump() if o.get("object") != "event" and not o.get("deleted")]
        account = DemoAccount(objects=objects, events=[])
        webhook_port = args.webhook_port or free_port()
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_PG_URL"}
        env.update(DAGSTER_HOME=str(workdir / "dagster_home"), S2S_DATABASE_URL=f"sqlite:///{workdir / 'state.db'}",
                   STRIPE_API_KEY=STRIPE_KEY, STRIPE_API_BASE=standin.base_url, SEGMENT_WRITE_KEY=WRITE_KEY,
                   SEGMENT_HOST=sink.base_url, STRIPE_WEBHOOK_SECRET=DEMO_WEBHOOK_SECRET, PYTHONUNBUFFERED="1")
        webhook_url = f"http://127.0.0.1:{webhook_port}/stripe/webhooks"
        try:
            procs.append(_start([sys.executable, "-m", "s2s_pipeline.webhooks.cli", "--host", "127.0.0.1",
                                 "--port", str(webhook_port)], env, workdir / "s2s-webhooks.log"))
            standin.add_webhook_endpoint(webhook_url, DEMO_WEBHOOK_SECRET, FAILED_PAYMENT_EVENT_TYPES)
            dagster = Path(sys.executable).parent / "dagster"
            procs.append(_start([str(dagster), "dev", "-w", "workspace.yaml", "-h", args.host, "-p", str(args.port)],
                                env, workdir / "dagster-dev.log"))
            print(f"Dagster UI:      http://{args.host}:{args.port}  (log: {workdir / 'dagster-dev.log'})\n"
                  f"Stripe stand-in: {standin.base_url}  ({standin.count('customers')} customers)\n"
                  f"Segment sink:    {sink.base_url}\n"
                  f"s2s-webhooks:    {webhook_url}  (log: {workdir / 's2s-webhooks.log'})\n"
                  f"A failed payment every {args.every:.0f} s, the first in {args.first_after:.0f} s. Ctrl-C stops.\n",
                  flush=True)
            next_failure = time.monotonic() + args.first_after
            shown, used = len(sink.accepted), set()
            while running:
                for proc, name in zip(procs, ("s2s-webhooks", "dagster dev")):
                    if proc.poll() is not None:
                        print(f"{name} exited with {proc.returncode}; see its log in {workdir}")
                        running = False
                if time.monotonic() >= next_failure:
                    next_failure += args.every
                    try:
                        event_id, _ = fail_a_payment(standin, account, exclude=used)
                    except HarnessError as exc:
                        print(f"[stripe] no payment to fail: {exc}")
                    else:
                        invoice = standin.get("events", event_id)["data"]["object"]
                        used.add(invoice["customer"])
                        print(f"[stripe] {time.strftime('%H:%M:%S')} card declined: invoice.payment_failed "
                              f"{event_id} (invoice {invoice['id']}, customer {invoice['customer']}), posted to "
                              "s2s-webhooks; watch failed_payment_alert in the UI's Runs", flush=True)
                for message in sink.accepted[shown:]:
                    print(f"[segment] {time.strftime('%H:%M:%S')} received {_describe(message)}", flush=True)
                shown = len(sink.accepted)
                time.sleep(1.0)  # the launcher's own pace: one look at the clock and the sink per second
        except KeyboardInterrupt:
            pass
        finally:
            print("\nStopping: dagster dev, s2s-webhooks; saving the Stripe account for the next `make dev`.",
                  flush=True)
            for proc in reversed(procs):
                kill_group(proc)
            standin.save(workdir / STANDIN_STATE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
