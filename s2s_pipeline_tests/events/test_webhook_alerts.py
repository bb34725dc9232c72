"""failed_payment_sensor with the webhook inbox: one run per failed payment, whichever path finds it first.

The stand-in posts signed webhooks to a real receiver (uvicorn on loopback)
that writes the inbox; the sensor is ticked with ``build_sensor_context``;
the alert job runs in process with the run request's config and tags.
"""

from __future__ import annotations

import json
import time

import pytest
from dagster import DagsterInstance, build_sensor_context

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_devtools.harness.daemon import fail_a_payment, payment_failed_tracks
from s2s_devtools.harness.receiver import running_receiver
from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.failed_payments import (
    EVENT_ID_TAG,
    FOUND_BY_TAG,
    RETIRED_PARTITIONS,
    failed_payment_sensor,
)
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.extract.inbox_failures import OVERLAP_MS, read_inbox_failures
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings

SECRET = "whsec_test_sensor"
STRIPE_KEY = "sk_test_webhook_alerts"
WRITE_KEY = "wk_webhook_alerts"
NOW = int(time.time())


@pytest.fixture(scope="module")
def account():
    return generate_account(customers=12, seed=5, now=NOW)


class World:
    def __init__(self, standin, sink, store, state_url, account, receiver):
        self.standin, self.sink, self.store, self.state_url = standin, sink, store, state_url
        self.account, self.receiver = account, receiver
        self.instance = DagsterInstance.ephemeral()
        self.cursor: str | None = None

    def tick(self):
        context = build_sensor_context(
            cursor=self.cursor, instance=self.instance,
            resources={"stripe": StripeResource(api_key=STRIPE_KEY, api_base=self.standin.base_url, rate_limit=1000),
                       "state_store": StateStoreResource(database_url=self.state_url)})
        result = failed_payment_sensor(context)
        self.cursor = result.cursor
        return result

    def webhook(self, event: dict) -> None:
        """Deliver an event the way Stripe would, through the receiver (signed, over HTTP)."""
        from s2s_devtools.fakes.stripe import post_signed, webhook_body

        assert post_signed(self.receiver.url, webhook_body(event), SECRET) == 200

    def failed_payment(self) -> dict:
        event_id, _ = fail_a_payment(self.standin, self.account)
        assert self.standin.webhooks.wait_idle(10)
        return self.standin.get("events", event_id)


@pytest.fixture
def world(account, state_url, monkeypatch):
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink, \
            running_receiver(SECRET, state_url) as receiver:
        seed_standin(standin, account, copy=True)
        standin.now = None
        store = StateStore.from_url(state_url)
        reader = StripeReader(StripeSettings(api_key=STRIPE_KEY, api_base=standin.base_url, rate_limit=1000))
        sync_changes(reader, store)  # the first nightly sync: mirror and event cursor
        for name, value in {"STRIPE_API_KEY": STRIPE_KEY, "STRIPE_API_BASE": standin.base_url,
                            "SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_HOST": sink.base_url,
                            "S2S_DATABASE_URL": state_url}.items():
            monkeypatch.setenv(name, value)
        w = World(standin, sink, store, state_url, account, receiver)
        assert w.tick().run_requests == []  # the first tick: both paths start now
        yield w
        store.dispose()


def run_alert(world: World, request) -> dict:
    """Execute the alert job as the daemon would for this run request; returns the materialization's metadata."""
    from s2s_pipeline.definitions import defs

    job = defs.resolve_job_def("failed_payment_alert")
    config = {**request.run_config, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = job.execute_in_process(run_config=config, tags=request.tags, instance=world.instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("failed_payment_alerts")
    return {k: v.value for k, v in materialization.metadata.items()}


def test_a_webhook_failure_launches_one_run_and_the_poll_finding_it_later_launches_none(world):
    world.standin.add_webhook_endpoint(world.receiver.url, SECRET, ["invoice.payment_failed", "charge.failed"])
    failed = world.failed_payment()  # charge.failed + invoice.payment_failed, posted to the receiver
    assert world.store.inbox.get(failed["id"]) is not None
    result = world.tick()
    (request,) = result.run_requests  # the invoice's own charge.failed launches nothing (shared alert rule)
    assert request.run_key == failed["id"]
    assert request.tags[EVENT_ID_TAG] == failed["id"] and request.tags[FOUND_BY_TAG] == "webhook"
    metadata = run_alert(world, request)
    assert metadata["event_read_from"] == "webhook_inbox" and metadata["found_by"] == "webhook"
    assert metadata["track_event"] == "Payment Failed" and metadata["outcome"] == "sent"
    invoice_id = failed["data"]["object"]["id"]
    assert len(payment_failed_tracks(world.sink, invoice_id)) == 1
    # later ticks: the poll (Events API) and the inbox re-read see the same event; nothing new
    assert world.tick().run_requests == []
    assert world.tick().run_requests == []


def test_a_webhook_arriving_after_the_poll_found_the_event_launches_nothing(world):
    failed = world.failed_payment()  # no endpoint yet: only the Events API knows it
    (request,) = world.tick().run_requests
    assert request.run_key == failed["id"] and request.tags[FOUND_BY_TAG] == "events_api"
    world.webhook(failed)  # a late delivery (Stripe retried after an outage)
    assert world.tick().run_requests == []
    state = json.loads(world.cursor)
    assert failed["id"] in state["launched"]


def test_a_webhook_before_the_events_api_shows_the_event_launches_once(world):
    """Stripe's list can lag its webhooks: the inbox launches, and the poll that sees it later does not."""
    failed = world.failed_payment()
    early = dict(failed)
    world.standin.delete("events", failed["id"])  # not listed yet
    world.webhook(early)
    (request,) = world.tick().run_requests
    assert request.tags[FOUND_BY_TAG] == "webhook"
    world.standin.load_events([early])  # now the Events API lists it too
    assert world.tick().run_requests == []


def test_webhook_events_from_before_the_first_tick_are_not_replayed(account, state_url):
    with StripeStandIn() as standin:
        seed_standin(standin, account, copy=True)
        store = StateStore.from_url(state_url)
        early = {"id": "evt_1history", "object": "event", "type": "invoice.payment_failed", "created": NOW - 5,
                 "data": {"object": {"id": "in_x", "object": "invoice", "customer": "cus_x"}}}
        store.inbox.store(early, time.time_ns() // 1_000_000 - 1000)
        context = build_sensor_context(instance=DagsterInstance.ephemeral(), resources={
            "stripe": StripeResource(api_key=STRIPE_KEY, api_base=standin.base_url, rate_limit=1000),
            "state_store": StateStoreResource(database_url=state_url)})
        first = failed_payment_sensor(context)
        assert first.run_requests == []
        context = build_sensor_context(cursor=first.cursor, instance=DagsterInstance.ephemeral(), resources={
            "stripe": StripeResource(api_key=STRIPE_KEY, api_base=standin.base_url, rate_limit=1000),
            "state_store": StateStoreResource(database_url=state_url)})
        assert failed_payment_sensor(context).run_requests == []
        store.dispose()


def test_a_cursor_from_before_the_inbox_keeps_polling_and_retires_the_old_partitions(world):
    """An upgrade: the old cursor is the poll's own; the per-event partitions of old versions are deleted."""
    world.instance.add_dynamic_partitions(RETIRED_PARTITIONS, ["evt_old_1", "evt_old_2"])
    world.cursor = json.dumps(json.loads(world.cursor)["poll"])  # what the sensor stored before this version
    failed = world.failed_payment()
    result = world.tick()
    assert [r.run_key for r in result.run_requests] == [failed["id"]]
    (delete,) = result.dynamic_partitions_requests
    assert delete.partitions_def_name == RETIRED_PARTITIONS and sorted(delete.partition_keys) == ["evt_old_1",
                                                                                                  "evt_old_2"]
    for key in delete.partition_keys:  # what the daemon does with the request
        world.instance.delete_dynamic_partition(RETIRED_PARTITIONS, key)
    again = world.tick()
    assert again.run_requests == [] and again.dynamic_partitions_requests == []
    assert json.loads(world.cursor)["partitions_retired"] is True


# --- the inbox read alone --------------------------------------------------------------------------------


def _failure(n: int) -> dict:
    return {"id": f"evt_{n:05d}", "object": "event", "type": "invoice.payment_failed", "created": NOW,
            "data": {"object": {"id": f"in_{n}", "object": "invoice"}}}


def test_inbox_reads_continue_a_backlog_and_never_return_an_event_twice(state_store):
    start = read_inbox_failures(state_store.inbox, None, now_ms=1_000_000)
    for n in range(25):
        state_store.inbox.store(_failure(n), 1_000_000 + n // 3)  # ties in arrival time
    state_store.inbox.store({**_failure(99), "type": "invoice.paid"}, 1_000_001)  # not a failure
    cursor, seen, ticks = start.cursor, [], 0
    while True:
        read = read_inbox_failures(state_store.inbox, json.loads(json.dumps(cursor)), now_ms=1_000_100,
                                   max_pages=1, page_size=10)
        seen += [e["id"] for e in read.events]
        cursor, ticks = read.cursor, ticks + 1
        if read.complete:
            break
    assert ticks == 3 and sorted(seen) == [f"evt_{n:05d}" for n in range(25)]
    assert read_inbox_failures(state_store.inbox, cursor, now_ms=1_000_200).events == []


def test_an_event_committed_late_with_an_older_arrival_time_is_still_read(state_store):
    """Arrival time is taken before the commit: a slow commit lands behind newer rows, within the overlap."""
    cursor = read_inbox_failures(state_store.inbox, None, now_ms=5_000_000).cursor
    state_store.inbox.store(_failure(1), 5_000_100)
    cursor = read_inbox_failures(state_store.inbox, cursor, now_ms=5_000_200).cursor
    state_store.inbox.store(_failure(2), 5_000_050)  # arrived before 1, committed after the read
    read = read_inbox_failures(state_store.inbox, cursor, now_ms=5_000_300)
    assert [e["id"] for e in read.events] == ["evt_00002"]
    assert OVERLAP_MS >= 10_000  # commits slower than this would need a longer overlap
