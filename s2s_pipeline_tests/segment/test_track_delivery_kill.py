"""A track pass SIGKILLed mid-delivery keeps what Segment acknowledged (issue 11, finding 12).

A real child process sends track calls (Payment Failed: a track call and a delinquent identify
per Stripe event) to the Segment sink, slowly, and is killed mid-way. The events whose calls
Segment acknowledged are recorded batch by batch; the rerun sends only the rest, under the same
messageIds.
"""

import json
import multiprocessing

import pytest
from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn

from s2s_pipeline.core.contract import PAYMENT_FAILED
from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.segment.delivery import SegmentSettings
from s2s_pipeline.segment.event_mapping import TrackCall
from s2s_pipeline.segment.track_sync import deliver_calls
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_pipeline.traits.config import TraitsConfig

WRITE_KEY = "wk_track_kill"
NOW = 1_780_000_000
EVENTS = 40


def _calls(customer_ids):
    return [(f"evt_{i}", TrackCall(event=PAYMENT_FAILED, stripe_customer_id=customer_ids[i % len(customer_ids)],
                                   properties={"amount": float(i)}, message_id=f"track-{i}",
                                   dedupe_key=f"event:evt_{i}", timestamp=NOW + i))
            for i in range(EVENTS)]


def _settings(host, **kw):
    return SegmentSettings(**{"write_key": WRITE_KEY, "host": host, "max_retries": 1, "upload_size": 5, **kw})


def _deliver(url, host, customer_ids):
    store = StateStore(make_engine(url))
    deliver_calls(store, _settings(host), _calls(customer_ids), profiles=None, config=TraitsConfig(), now=NOW)


@pytest.fixture
def world(state_url):
    account = generate_account(customers=6, seed=9, now=NOW - 86400)
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        seed_standin(standin, account, copy=True)
        store = StateStore(make_engine(state_url))
        sync_changes(StripeReader(StripeSettings(api_key="sk_test_k", api_base=standin.base_url, rate_limit=1000)),
                     store)
        ids = sorted(c["id"] for c in account.of_type("customer") if not c.get("deleted"))
        yield sink, store, ids
        store.engine.dispose()


def test_a_killed_track_pass_keeps_its_acknowledged_batches_and_the_rerun_sends_only_the_rest(
        world, state_url, tmp_path):
    sink, store, ids = world
    dry = tmp_path / "dry.jsonl"
    deliver_calls(store, _settings(sink.base_url, dry_run_path=str(dry)), _calls(ids), profiles=None,
                  config=TraitsConfig(), now=NOW)
    expected = {json.loads(line)["messageId"] for line in dry.read_text().splitlines()}
    assert len(expected) == 2 * EVENTS

    sink.faults.delay(0.05)  # slow batches so the kill lands mid-delivery
    child = multiprocessing.get_context("spawn").Process(target=_deliver, args=(state_url, sink.base_url, ids))
    child.start()
    assert sink.wait_for(lambda: len(sink.accepted) >= 30, timeout=60)
    child.kill()
    child.join()
    before = set(sink.accepted_by_message_id())
    assert len(before) < len(expected)  # the kill did land mid-delivery

    keys = {f"event:evt_{i}": i for i in range(EVENTS)}
    recorded = {keys[k] for k in store.track_state.already_sent(keys)}
    tracked = {i for i in range(EVENTS) if f"track-{i}" in before}
    assert recorded and recorded <= tracked
    assert len(tracked - recorded) <= 5  # at most the events of the batch in flight went unrecorded

    sink.faults.delay(0)
    sink.clear()
    report, _ = deliver_calls(store, _settings(sink.base_url), _calls(ids), profiles=None, config=TraitsConfig(),
                              now=NOW)
    attempted = {m.message_id for m in report.attempted}
    assert attempted.isdisjoint({f"track-{i}" for i in recorded})  # recorded events are not sent again
    assert len(attempted & before) <= 6  # the batch in flight, and an event cut by its batch boundary
    assert set(sink.accepted_by_message_id()) | before == expected  # same messageIds, nothing lost
