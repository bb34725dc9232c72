"""failed_payment_sensor with build_sensor_context: first tick, new events, replayed tick, page cap."""

import json
import time

import pytest
from dagster import DagsterInstance, build_sensor_context

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.failed_payments import EVENT_ID_TAG, failed_payment_sensor
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.extract.failed_payments import poll_failed_payments
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings


def invoice(i: int) -> dict:
    return {"id": f"in_{i:04d}", "object": "invoice", "customer": "cus_1", "status": "open", "currency": "usd",
            "amount_due": 1000, "attempt_count": 1, "created": 1}


@pytest.fixture
def standin(tmp_path):
    with StripeStandIn() as server:
        server.state_url = f"sqlite:///{tmp_path / 'state.db'}"  # the mirror the sensor's alert rule may read
        yield server


def tick(standin, cursor=None, instance=None):
    context = build_sensor_context(cursor=cursor, instance=instance or DagsterInstance.ephemeral(),
                                   resources={"stripe": StripeResource(api_key="sk_test_s", api_base=standin.base_url,
                                                                       rate_limit=1000),
                                              "state_store": StateStoreResource(database_url=standin.state_url)})
    return failed_payment_sensor(context)


def test_first_tick_starts_at_the_newest_failed_payment_without_runs(standin):
    now = int(time.time())
    standin.emit("invoice.payment_failed", invoice(1), created=now - 100)
    standin.emit("customer.created", {"id": "cus_1", "object": "customer", "created": 1}, created=now - 10)
    result = tick(standin)
    assert result.run_requests == []
    cursor = json.loads(result.cursor)["poll"]  # the Events API poll's part of the sensor's cursor
    assert cursor["created"] == now - 100  # the newest FAILED PAYMENT, not any event
    (failure,) = [e for e in standin.requests if e["path"] == "/v1/events"][:1]
    assert failure["query"]["types"] == ["invoice.payment_failed", "charge.failed"]
    assert len(cursor["seen"]) == 1  # the failure 100 s ago, inside the overlap window
    assert tick(standin, result.cursor).run_requests == []  # the failure from before is never replayed


def test_new_events_get_one_run_each_and_a_replayed_tick_gets_none(standin):
    now = int(time.time())
    first = tick(standin)
    a = standin.emit("invoice.payment_failed", invoice(1), created=now + 1)
    b = standin.emit("charge.failed", {"id": "ch_1", "object": "charge", "status": "failed", "amount": 500,
                                       "currency": "usd", "customer": "cus_1", "created": now + 2}, created=now + 2)
    standin.emit("invoice.paid", invoice(2), created=now + 3)  # not a failed payment
    second = tick(standin, first.cursor)
    assert [r.run_key for r in second.run_requests] == [a["id"], b["id"]]
    # the event id travels in the run's config and tags, not as a partition
    assert [r.tags[EVENT_ID_TAG] for r in second.run_requests] == [a["id"], b["id"]]
    assert [r.tags["s2s/found_by"] for r in second.run_requests] == ["events_api", "events_api"]
    assert second.run_requests[0].run_config["ops"]["failed_payment_alerts"]["config"] == {"stripe_event_id": a["id"]}
    assert second.dynamic_partitions_requests == []
    # The same tick replayed (cursor not saved, e.g. a daemon crash) requests the same run keys,
    # which Dagster dedupes; a tick after a saved cursor requests nothing.
    replay = tick(standin, first.cursor)
    assert [r.run_key for r in replay.run_requests] == [a["id"], b["id"]]
    assert tick(standin, second.cursor).run_requests == []


def test_given_an_invoice_decline_when_ticked_then_only_its_invoice_event_launches_a_run(standin):
    """A declined invoice payment gives charge.failed AND invoice.payment_failed: one alert, one run.

    On the pinned API a charge has no ``invoice``; Stripe's invoice payments
    list says which invoice a PaymentIntent paid. Before the shared alert rule
    the sensor launched a run for the charge.failed too, which then sent nothing.
    """
    now = int(time.time())
    first = tick(standin)
    standin.load([{"id": "inpay_1", "object": "invoice_payment", "invoice": "in_0001", "created": now,
                   "payment": {"type": "payment_intent", "payment_intent": "pi_1"}}])
    declined = standin.emit("charge.failed", {"id": "ch_1", "object": "charge", "status": "failed", "amount": 1000,
                                              "currency": "usd", "customer": "cus_1", "payment_intent": "pi_1",
                                              "created": now + 1}, created=now + 1)
    failed = standin.emit("invoice.payment_failed", invoice(1), created=now + 2)
    one_off = standin.emit("charge.failed", {"id": "ch_2", "object": "charge", "status": "failed", "amount": 500,
                                             "currency": "usd", "customer": "cus_1", "payment_intent": "pi_2",
                                             "created": now + 3}, created=now + 3)
    second = tick(standin, first.cursor)
    assert [r.run_key for r in second.run_requests] == [failed["id"], one_off["id"]]
    assert declined["id"] in json.loads(second.cursor)["poll"]["seen"]  # considered once, never again
    assert tick(standin, second.cursor).run_requests == []


def test_more_pages_than_the_cap_continue_on_the_next_tick(standin):
    now = int(time.time())
    reader = StripeReader(StripeSettings(api_key="sk_test_s", api_base=standin.base_url, rate_limit=1000))
    start = poll_failed_payments(reader, None, now=now)
    ids = [standin.emit("invoice.payment_failed", invoice(i), created=now + 1 + i // 10)["id"] for i in range(25)]
    seen: list[str] = []
    cursor = start.cursor
    ticks = 0
    while True:
        poll = poll_failed_payments(reader, cursor, now=now + 60, max_pages=1, page_size=10)
        seen += [e["id"] for e in poll.events]
        cursor = json.loads(json.dumps(poll.cursor))  # survives a restart (JSON round trip)
        ticks += 1
        if poll.complete:
            break
    assert ticks == 3
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert poll_failed_payments(reader, cursor, now=now + 60, max_pages=1, page_size=10).events == []


def test_failures_shortly_before_the_newest_are_history_too(standin):
    """The overlap re-read must not turn failures from before the first tick into runs."""
    now = int(time.time())
    standin.emit("charge.failed", {"id": "ch_old", "object": "charge", "status": "failed", "amount": 500,
                                   "currency": "usd", "customer": "cus_1", "created": now - 61}, created=now - 61)
    standin.emit("invoice.payment_failed", invoice(1), created=now - 60)
    first = tick(standin)
    assert tick(standin, first.cursor).run_requests == []


def test_server_without_types_filter_is_filtered_locally(standin):
    import stripe

    now = int(time.time())
    reader = StripeReader(StripeSettings(api_key="sk_test_s", api_base=standin.base_url, rate_limit=1000))
    real = reader._get

    def get(path, params, what):
        if "types" in params:
            raise stripe.InvalidRequestError("Received unknown parameter: types", "types", http_status=400)
        return real(path, params, what)

    reader._get = get
    start = poll_failed_payments(reader, None, now=now)
    failure = standin.emit("invoice.payment_failed", invoice(1), created=now + 2)
    standin.emit("invoice.paid", invoice(2), created=now + 3)
    poll = poll_failed_payments(reader, start.cursor, now=now + 10)
    assert [e["id"] for e in poll.events] == [failure["id"]]
