"""A failed payment reaches Segment by webhook through the real daemon: stand-in POST -> s2s-webhooks -> inbox
-> sensor tick -> queued run -> worker -> sink.

The daemon harness with ``webhooks=True``: the receiver (s2s-webhooks' app)
serves on loopback on the same state store, and the Stripe stand-in posts
every failed-payment event to it, signed. One card decline, then:

- exactly one `Payment Failed` arrives, and one `failed_payment_alert` run
  exists, launched from the inbox (tag ``s2s/found_by = webhook``) and
  tagged with the event id;
- after the sensor's Events API poll has seen the same event (its cursor
  marks it seen), no second run is launched.

The latency from the POST to the sink is printed (-s), not asserted beyond
the functional deadline; bench/sensor_latency_bench.py --webhook measures it.
"""

from __future__ import annotations

import json
import time

import pytest

from s2s_devtools.harness.daemon import daemon_harness, payment_failed_tracks, received_at

pytestmark = pytest.mark.daemon

ARRIVAL_DEADLINE_S = 60


@pytest.fixture(scope="module")
def scenario():
    with daemon_harness(customers=20, webhooks=True) as h:
        event_id, created = h.fail_a_payment()
        posted = h.wait_for_webhook(event_id)
        invoice = h.standin.get("events", event_id)["data"]["object"]
        if not h.sink.wait_for(lambda: bool(payment_failed_tracks(h.sink, invoice["id"])), ARRIVAL_DEADLINE_S):
            pytest.fail(f"no Payment Failed for {invoice['id']} within {ARRIVAL_DEADLINE_S} s of the webhook; "
                        f"sensor tick errors {h.sensor_tick_errors()[:1]}\n{h.daemon_log()}")
        track = payment_failed_tracks(h.sink, invoice["id"])[0]
        runs = h.wait_for_alert_runs([event_id], timeout_s=60)
        # until the Events API poll has read the same event (it is in the poll's seen ids)
        deadline = time.monotonic() + 60
        while event_id not in (json.loads(h.sensor_cursor() or "{}").get("poll") or {}).get("seen", {}):
            assert time.monotonic() < deadline, f"the poll never saw {event_id}: {h.sensor_cursor()}"
            h.pause()
        print(f"\n[daemon/webhook] Payment Failed {received_at(track) - posted:.2f} s after the webhook POST")
        yield {"h": h, "event_id": event_id, "invoice": invoice, "runs": runs, "created": created}


def test_the_webhook_alert_arrives_once(scenario):
    h, invoice = scenario["h"], scenario["invoice"]
    assert len(payment_failed_tracks(h.sink, invoice["id"])) == 1


def test_one_run_launched_from_the_inbox_and_none_when_the_poll_sees_the_event(scenario):
    h, event_id = scenario["h"], scenario["event_id"]
    runs = [r for r in h.alert_runs() if r.tags.get("dagster/run_key") == event_id]
    assert len(runs) == 1
    (run,) = runs
    assert run.tags["s2s/found_by"] == "webhook" and run.tags["s2s/stripe_event_id"] == event_id
    assert {r.tags.get("dagster/run_key") for r in h.alert_runs()} == {event_id}  # the charge.failed: no run
