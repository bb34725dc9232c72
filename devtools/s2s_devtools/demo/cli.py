"""`s2s-demo` (`make demo`): the main job end to end on the embedded default.

A Stripe stand-in on 127.0.0.1 seeded with a generated account (a few hundred
customers over 12 months), a local Segment sink on 127.0.0.1, the state store
in SQLite, the Dagster instance under .demo/dagster_home. Runs
`nightly_trait_refresh` three times: the first run syncs everything and sends
every customer's traits; the second, with nothing changed in Stripe, sends
nothing; then a day of Stripe activity is simulated and the third run sends
only what changed. Last, a card decline reaches Segment by webhook: the
stand-in posts it, signed, to the webhook receiver (s2s-webhooks' app),
which stores it in the inbox; failed_payment_sensor launches its alert.
Open the same runs in the UI with `make dev`, which serves the same account
again and keeps failing a payment every few minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

TELEMETRY_OFF = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
#: The demo instance: SQLite storage (no storage section), the run queue dequeuing every second like the
#: shipped dagster.yaml (`make dev` runs queued alerts), telemetry off.
DEMO_DAGSTER_YAML = ("run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
                     "  config:\n    dequeue_interval_seconds: 1\n" + TELEMETRY_OFF)
#: The Stripe stand-in's account as the demo left it, for `make dev`.
STANDIN_STATE = "stripe_account.json.gz"


def _prepare(workdir: Path, keep: bool) -> None:
    if workdir.exists() and not keep:
        shutil.rmtree(workdir)
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    # SQLite instance storage (no storage section): the embedded default.
    (home / "dagster.yaml").write_text(DEMO_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["S2S_DATABASE_URL"] = f"sqlite:///{workdir / 'state.db'}"


def _run_job(name: str):
    from dagster import DagsterInstance

    from s2s_pipeline.definitions import defs

    job = defs.resolve_job_def(name)
    with DagsterInstance.get() as instance:
        # Quiet console: the demo prints its own summary; the UI keeps every event.
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=quiet)
    if not result.success:
        for event in result.all_events:
            if event.is_failure:
                print(f"  step failed: {event.step_key}: {event.event_specific_data.error.message.strip()}")
        raise SystemExit(f"{name} failed")
    materialized = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        materialized[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return materialized


def _print_sync(meta: dict) -> None:
    print(f"  stripe_change_feed: mode={meta['mode']}, objects listed={meta['objects_listed']}, "
          f"rows applied={meta['rows_applied']}, stripe requests={meta['stripe_requests']}"
          + (f", events read={meta.get('events_read')}, new={meta.get('events_new')}, "
             f"applied={meta.get('events_applied')}" if meta["mode"] == "incremental" else ""))


def _print_segment(meta: dict | None, sink, before: int) -> None:
    if meta is None:
        return
    arrived = sink.accepted[before:]
    if len(arrived) > 20:  # the first run: keep the output short
        arrived = arrived[:3]
    print(f"  segment_profiles: {meta['customers_changed']} of {meta['customers']} customers changed -> "
          f"{meta['identify_sent']} identify, {meta['group_sent']} group calls sent, {meta['failed']} failed; "
          f"the sink received {len(sink.accepted) - before} messages")
    shown = [m for m in arrived if m["type"] == "track"] + [m for m in arrived if m["type"] != "track"]
    for message in shown[:6]:
        who = message.get("userId") or message.get("anonymousId")
        if message["type"] == "track":
            print(f"    track {who}: {message['event']} {message['properties']}")
            continue
        keys = sorted((message.get("traits") or {}).keys())
        print(f"    {message['type']} {who}: {', '.join(keys[:8])}{' …' if len(keys) > 8 else ''}")


def _print_traits(meta: dict) -> None:
    mode = meta.get("mode", "full")
    recomputed = f", {meta['customers_recomputed']} recomputed" if "customers_recomputed" in meta else ""
    print(f"  customer_traits ({mode}{recomputed}): {meta['customers']} customers, {meta['paying_customers']} "
          f"paying, {meta['customers_with_mrr']} with MRR, {meta['delinquent_customers']} delinquent")
    print("    MRR per currency: " + ", ".join(f"{c.upper()} {v:,.2f}" for c, v in meta["mrr_by_currency"].items()))
    print("    spend tiers:      " + ", ".join(f"{t}={n}" for t, n in meta["tier_distribution"].items()))
    # top lists come with full recomputes only (an incremental run holds the changed customers alone)
    for currency, ids in (meta.get("top_customers_by_ltv") or {}).items():
        print(f"    top by LTV ({currency}): {', '.join(ids[:5])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s2s-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=300, help="customers in the generated account (300)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the generated account")
    parser.add_argument("--dir", default=".demo", help="working directory for state and the Dagster instance")
    parser.add_argument("--keep", action="store_true", help="keep state from an earlier demo run")
    args = parser.parse_args(argv)

    workdir = Path(args.dir).resolve()
    _prepare(workdir, args.keep)

    from s2s_devtools.demo.changes import simulate_changes
    from s2s_devtools.demo.generator import generate_account, seed_standin
    from s2s_devtools.demo.webhook_demo import show_webhook_alert
    from s2s_devtools.fakes.segment_sink import SegmentSink
    from s2s_devtools.fakes.stripe import StripeStandIn
    from s2s_pipeline.store.state_store import StateStore

    started = time.perf_counter()
    account = generate_account(customers=args.customers, seed=args.seed)
    with StripeStandIn() as standin, SegmentSink(write_key="demo_write_key") as sink:
        seed_standin(standin, account)
        standin.now = None  # follow the wall clock from here on, so new events are visible
        os.environ.update(STRIPE_API_KEY="sk_test_s2s_demo", STRIPE_API_BASE=standin.base_url,
                          SEGMENT_WRITE_KEY="demo_write_key", SEGMENT_HOST=sink.base_url)
        print(f"Stripe stand-in at {standin.base_url}: {len(account.of_type('customer'))} customers, "
              f"{len(account.of_type('subscription'))} subscriptions, {len(account.of_type('charge'))} charges, "
              f"{len(account.events)} events over 12 months")
        print(f"Segment sink at {sink.base_url}")
        print(f"State store: {os.environ['S2S_DATABASE_URL']}\nDagster home: {os.environ['DAGSTER_HOME']}\n")

        def run(title: str) -> None:
            print(title)
            before = len(sink.accepted)
            meta = _run_job("nightly_trait_refresh")
            _print_sync(meta["stripe_change_feed"])
            if "customer_traits" in meta:
                _print_traits(meta["customer_traits"])
            _print_segment(meta.get("segment_profiles"), sink, before)
            tracks = meta.get("segment_track_events")
            if tracks:
                print(f"  segment_track_events: {tracks['events_considered']} Stripe events -> "
                      f"{tracks['events_sent']} sent, {tracks['events_skipped']} without a track call, "
                      f"{tracks['events_failed']} failed; calls: {tracks['track_calls_by_event']}")

        run("Run 1: nightly_trait_refresh (first run: full sync, every customer's traits sent)")
        run("\nRun 2: nightly_trait_refresh again, nothing changed in Stripe (nothing to send)")
        print("\nA day of Stripe activity:")
        for line in simulate_changes(standin, account):
            print(f"  - {line}")
        run("\nRun 3: nightly_trait_refresh (incremental: only the new events, only the changed traits)")
        print("\nA failed payment by webhook (Stripe -> s2s-webhooks -> inbox -> failed_payment_sensor -> Segment):")
        show_webhook_alert(standin, account, sink)
        standin.save(workdir / STANDIN_STATE)  # `make dev` serves this account again

    counts = StateStore.from_url(os.environ["S2S_DATABASE_URL"]).counts()
    print("\nMirror rows: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"\nDone in {time.perf_counter() - started:.1f}s. Browse the runs and asset metadata with `make dev` "
          "(Dagster UI on http://127.0.0.1:3000, with this Stripe account, a Segment sink and s2s-webhooks "
          "running, and a failed payment every few minutes).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
