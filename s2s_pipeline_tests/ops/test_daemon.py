"""A failed payment reaches Segment through the real daemon: sensor tick -> queued run -> worker -> sink.

One scenario (module fixture, about a minute): a `dagster-daemon` serving
workspace.yaml with a throwaway SQLite DAGSTER_HOME (see daemon_harness.py),
after an initial `nightly_trait_refresh`, and after `failed_payment_sensor`'s
first tick. Then a card decline on a subscription invoice is emitted into the
Stripe stand-in (charge.failed, payment_intent.payment_failed,
invoice.payment_failed, subscription -> past_due) and the tests check what
Segment received:

- exactly one `Payment Failed` (the invoice's, with the contract's properties;
  the invoice's own charge.failed adds nothing), within a 90 s deadline;
- an identify with `payment_delinquent = true` for the same identity;
- a later `nightly_trait_refresh` does not send the failure again;
- the sensor launched runs only for the new failure, none for history.

The measured latency (sink receivedAt - Stripe event created) is printed (-s),
not asserted beyond the functional deadline.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest

from s2s_devtools.harness.daemon import (
    ALERT_JOB,
    PAYMENT_FAILED,
    HarnessError,
    daemon_harness,
    identity_of,
    payment_failed_tracks,
    received_at,
)

pytestmark = pytest.mark.daemon

ARRIVAL_DEADLINE_S = 90


def _iso(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def scenario():
    with daemon_harness(customers=20) as h:
        print(f"\n[daemon] setup: {h.timings}")
        history_runs = {r.tags.get("dagster/run_key") for r in h.alert_runs()}
        baseline = len(h.sink.accepted)
        event_id, created = h.fail_a_payment()
        event = h.standin.get("events", event_id)
        invoice = event["data"]["object"]
        new_failed_ids = h.failed_payment_event_ids(created)
        arrived = h.sink.wait_for(lambda: bool(payment_failed_tracks(h.sink, invoice["id"])),
                                  timeout=ARRIVAL_DEADLINE_S)
        if not arrived:
            runs = h.alert_runs()
            details = "\n".join(f"  run {r.run_id} key={r.tags.get('dagster/run_key')} {r.status.value}: "
                                f"{h.run_errors(r.run_id)[:3]}" for r in runs)
            pytest.fail(f"no Payment Failed for {invoice['id']} (event {event_id}) within {ARRIVAL_DEADLINE_S} s\n"
                        f"sensor cursor: {h.sensor_cursor()}\nsensor tick errors: {h.sensor_tick_errors()[:2]}\n"
                        f"{ALERT_JOB} runs:\n{details or '  (none)'}\n--- daemon log ---\n{h.daemon_log()}")
        track = payment_failed_tracks(h.sink, invoice["id"])[0]
        latency = received_at(track) - created
        # the one run the sensor launched for this failure (the invoice's charge.failed launches none) is done
        runs = h.wait_for_alert_runs([event_id], timeout_s=60)
        timeline = h.alert_run_timeline([event_id])
        t = timeline.get(event_id, {})
        print(f"[daemon] Payment Failed for {invoice['id']} (event {event_id}) received {latency:.1f} s after the "
              f"Stripe event was created (run created +{t.get('created', created) - created:.1f} s, worker started "
              f"+{(t.get('started') or created) - created:.1f} s, run ended +{(t.get('ended') or created) - created:.1f} s)")
        after_alert = list(h.sink.accepted[baseline:])
        yield {
            "h": h, "event_id": event_id, "created": created, "invoice": invoice, "track": track,
            "latency": latency, "baseline": baseline, "after_alert": after_alert,
            "new_failed_ids": new_failed_ids, "runs": runs, "history_runs": history_runs,
        }


def test_payment_failed_arrives_once_with_contract_properties(scenario):
    from s2s_pipeline.traits.money import currency_exponent

    invoice, track = scenario["invoice"], scenario["track"]
    failures = [m for m in scenario["after_alert"] if m.get("type") == "track" and m.get("event") == PAYMENT_FAILED]
    assert len(failures) == 1, f"expected one Payment Failed (the invoice's charge.failed must add none): {failures}"
    props = track["properties"]
    currency = invoice["currency"].lower()
    assert props["invoice_id"] == invoice["id"]
    assert props["currency"] == currency
    assert props["amount"] == pytest.approx(invoice["amount_due"] / 10 ** currency_exponent(currency))
    assert props["attempt_count"] == invoice["attempt_count"]
    assert props["failure_code"] in ("insufficient_funds", "card_declined"), props
    assert props["failure_message"] == "Your card has insufficient funds."
    assert props.get("next_payment_attempt") is not None, props
    assert _parse(props["next_payment_attempt"]) == _iso(invoice["next_payment_attempt"])
    assert _parse(track["timestamp"]) == _iso(scenario["created"]), "timestamp must be the Stripe event's created"
    assert track.get("userId") or track.get("anonymousId")
    print(f"[daemon] latency {scenario['latency']:.1f} s (deadline {ARRIVAL_DEADLINE_S} s)")


def test_identify_sets_payment_delinquent_for_the_same_identity(scenario):
    who = identity_of(scenario["track"])
    identifies = [m for m in scenario["after_alert"]
                  if m.get("type") == "identify" and identity_of(m) == who
                  and (m.get("traits") or {}).get("payment_delinquent") is True]
    assert identifies, (f"no identify with payment_delinquent=true for {who}; identifies received: "
                        f"{[(identity_of(m), m.get('traits')) for m in scenario['after_alert'] if m['type'] == 'identify']}")


def test_nightly_refresh_does_not_resend_the_failure(scenario):
    h, invoice = scenario["h"], scenario["invoice"]
    h.run_job_in_process()
    since = h.sink.accepted[scenario["baseline"]:]
    failures = [m for m in since if m.get("type") == "track" and m.get("event") == PAYMENT_FAILED]
    assert len(failures) == 1, f"Payment Failed sent again by nightly_trait_refresh: {failures}"
    assert failures[0]["messageId"] == scenario["track"]["messageId"]
    dupes = [mid for mid, n in Counter(m["messageId"] for m in since).items() if n > 1]
    assert not dupes, f"messages delivered twice: {dupes}"
    assert len(payment_failed_tracks(h.sink, invoice["id"])) == 1


def test_sensor_launched_runs_only_for_the_new_failure(scenario):
    """One run per new failed-payment event (run key = event id), none for the history before the first tick."""
    h = scenario["h"]
    assert not scenario["history_runs"], f"runs launched by the first tick: {scenario['history_runs']}"
    keys = Counter(r.tags.get("dagster/run_key") for r in h.alert_runs())
    assert all(n == 1 for n in keys.values()), f"a run key was launched twice: {keys}"
    replayed = set(keys) - set(scenario["new_failed_ids"])
    if replayed:
        events = {k: (h.standin.get("events", k) or {}) for k in replayed}
        raise HarnessError(
            "failed_payment_sensor replayed history (contract: its first tick starts at the newest event): runs for "
            + ", ".join(f"{k} ({e.get('type')}, created {e.get('created')}, "
                        f"{scenario['created'] - int(e.get('created') or 0)} s before the new failure)"
                        for k, e in events.items())
            + f"; sensor cursor now {h.sensor_cursor()}")
    # core.alert_rule: the invoice.payment_failed alerts; its declined charge.failed pays an invoice and
    # launches no run (it used to launch one that sent nothing).
    assert set(keys) == {scenario["event_id"]}, (keys, scenario["new_failed_ids"])
    assert len(scenario["new_failed_ids"]) == 2  # both events were there for the sensor to see
