"""The deletion path end to end: Stripe stand-in -> mirror -> Segment sink, then a customer deleted in
Stripe is regulated through the local Public API stand-in, purged, and never sent again."""

import copy
import time

import pytest

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.extract.change_feed import apply_single_event, sync_changes
from s2s_pipeline.privacy.deletion import ANONYMOUS_ONLY, NO_TOKEN, client_for, run_deletion_path
from s2s_pipeline.privacy.settings import PrivacySettings
from s2s_pipeline.segment.delivery import SegmentSettings
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions, sync_profiles
from s2s_pipeline.segment.track_sync import send_track_events
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames
from s2s_pipeline_tests.privacy.helpers import findings, personal_values
from s2s_pipeline_tests.privacy.public_api_standin import PublicApiStandIn

WRITE_KEY = "wk_privacy"
NOW = int(time.time())


@pytest.fixture(scope="module")
def account():
    return generate_account(customers=30, seed=12, now=NOW)


class World:
    def __init__(self, standin, sink, papi, store, account):
        self.standin, self.sink, self.papi, self.store, self.account = standin, sink, papi, store, account
        self.reader = StripeReader(StripeSettings(api_key="sk_test_p", api_base=standin.base_url, rate_limit=1000))
        self.segment = SegmentSettings(write_key=WRITE_KEY, host=sink.base_url, max_retries=1)
        self.sleeps: list[float] = []

    def privacy(self, token=True):
        settings = PrivacySettings(token=self.papi.token if token else None, host=self.papi.base_url)
        return settings, client_for(settings, sleep=self.sleeps.append, jitter=lambda: 0.0)

    def nightly(self, token=True):
        """What nightly_trait_refresh does, in order: change feed (+ retention), traits, profiles, tracks,
        regulations."""
        now = int(time.time())
        sync_changes(self.reader, self.store)
        self.store.purge(raw_before=None, deleted_customer_pii=True, forgotten_customers=True)
        self.store.traits.write(compute_customer_traits(load_mirror_frames(self.store.mirror), TraitsConfig(), now))
        profiles = sync_profiles(self.store, self.segment, None, ProfileSyncOptions(), now, run_id="run-profiles")
        tracks = send_track_events(self.store, self.segment, reader=self.reader, now=now, run_id="run-tracks")
        settings, client = self.privacy(token)
        return profiles, tracks, run_deletion_path(self.store, settings, client, now=now)

    def customers(self):
        return [c for c in self.account.of_type("customer") if not c.get("deleted")]

    def messages_about(self, customer):
        ids = {customer["id"], *(customer.get("metadata") or {}).values()}
        return [m for m in self.sink.accepted if m.get("userId") in ids or m.get("anonymousId") in ids
                or (m.get("traits") or {}).get("stripe_customer_id") == customer["id"]]

    def delete(self, customer):
        self.standin.emit("customer.deleted", {**copy.deepcopy(customer), "deleted": True})


@pytest.fixture
def world(account, state_url):
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink, PublicApiStandIn() as papi:
        seed_standin(standin, account, copy=True)
        standin.now = None
        store = StateStore(make_engine(state_url))
        w = World(standin, sink, papi, store, account)
        w.nightly()
        yield w
        store.dispose()


def identified_customer(world, key="segment_user_id"):
    """A customer with a metadata userId, with charges, already identified in Segment."""
    charged = {c.get("customer") for c in world.account.of_type("charge") if c["status"] == "succeeded"}
    return next(c for c in world.customers() if (c.get("metadata") or {}).get(key) and c["id"] in charged
                and world.messages_about(c))


def test_deleted_customer_gets_one_regulation_after_a_500_is_purged_and_never_sent_again(world):
    customer = identified_customer(world)
    user_id = customer["metadata"]["segment_user_id"]
    others = [c for c in world.customers() if c["id"] != customer["id"]]
    secrets = personal_values(customer, others)
    assert customer["email"] in secrets and user_id in secrets
    assert findings(world.store, secrets)  # the store held them before

    world.papi.fail_next(500)
    world.delete(customer)
    world.sink.clear()
    _, _, outcome = world.nightly()

    assert outcome.filed == 1 and outcome.regulations_filed == 1 and outcome.purged == 1
    (regulation,) = world.papi.regulations.values()
    assert regulation["subjectIds"] == [user_id] and regulation["regulationType"] == "SUPPRESS_WITH_DELETE"
    assert len(world.sleeps) == 1  # the 500 was retried once
    record = world.store.regulations.record_for(customer["id"])
    assert record["state"] == "filed" and record["regulate_id"] == regulation["id"]
    assert record["purged_at"] is not None and record["segment_status"] == "INITIALIZED"
    assert world.messages_about(customer) == []

    # Nothing of the customer's email, name or metadata is left anywhere in the store.
    assert findings(world.store, secrets) == []
    # What remains: the Stripe id and the regulation record.
    assert world.store.customer_records.export(customer["id"])["customer"]["email"] is None

    # Later Stripe events about the customer send nothing, on the nightly path and the alert path.
    charge = copy.deepcopy(next(c for c in world.account.of_type("charge")
                                if c.get("customer") == customer["id"] and c["status"] == "succeeded"))
    charge.update(id="ch_after_delete", created=int(time.time()))
    world.standin.emit("charge.succeeded", charge)
    invoice = copy.deepcopy(next((i for i in world.account.of_type("invoice") if i.get("customer") == customer["id"]),
                                 None) or {"id": "in_x", "object": "invoice", "customer": customer["id"],
                                           "currency": "usd", "amount_due": 500, "status": "open"})
    invoice.update(id="in_after_delete", status="open", attempt_count=1, amount_paid=0)
    failed = world.standin.emit("invoice.payment_failed", invoice)
    fetched = world.reader.get(f"/v1/events/{failed['id']}")
    apply_single_event(world.reader, world.store, fetched)
    alert = send_track_events(world.store, world.segment, reader=world.reader, now=int(time.time()),
                              event_ids=[failed["id"]])
    assert alert.report.attempted == [] and alert.statuses["skipped"] == 1
    _, tracks, again = world.nightly()
    assert world.messages_about(customer) == [] and tracks.report.attempted == []
    assert again.taken_on == 0 and len(world.papi.regulations) == 1  # one regulation per customer

    # The status is refreshed until Segment finishes.
    world.papi.set_status(regulation["id"], "FINISHED")
    world.nightly()
    assert world.store.regulations.record_for(customer["id"])["segment_status"] == "FINISHED"
    assert world.store.regulations.summary()["finished"] == 1


def test_a_429_with_retry_after_is_honoured(world):
    customer = identified_customer(world)
    world.papi.fail_next(429, {"Retry-After": "12"})
    world.delete(customer)
    _, _, outcome = world.nightly()
    assert world.sleeps == [12.0] and outcome.filed == 1 and len(world.papi.regulations) == 1


def test_filing_that_keeps_failing_stops_sending_purges_nothing_and_is_retried_next_night(world):
    customer = identified_customer(world)
    world.papi.fail_next(503, times=7)  # the client's 6 retries run out
    world.delete(customer)
    world.sink.clear()
    _, _, outcome = world.nightly()
    assert outcome.still_awaiting_filing == 1 and outcome.purged == 0 and world.papi.regulations == {}
    assert world.store.regulations.record_for(customer["id"])["state"] == "awaiting_filing"
    assert world.messages_about(customer) == []
    _, _, retried = world.nightly()
    assert retried.filed == 1 and retried.purged == 1 and len(world.papi.regulations) == 1


def test_without_a_token_the_customer_is_purged_at_once(world):
    customer = identified_customer(world)
    secrets = personal_values(customer, [c for c in world.customers() if c["id"] != customer["id"]])
    world.delete(customer)
    _, _, outcome = world.nightly(token=False)
    assert outcome.purged == 1 and world.papi.requests == []
    record = world.store.regulations.record_for(customer["id"])
    assert (record["state"], record["detail"]) == ("not_regulated", NO_TOKEN)
    assert findings(world.store, secrets) == []


def test_a_customer_known_only_by_anonymous_id_cannot_be_regulated_and_is_purged(world):
    customer = next(c for c in world.customers() if not {"segment_user_id", "user_id"} & set(c.get("metadata") or {})
                    and world.messages_about(c))
    world.delete(customer)
    _, _, outcome = world.nightly()
    assert outcome.purged == 1 and world.papi.regulations == {}
    record = world.store.regulations.record_for(customer["id"])
    assert (record["state"], record["detail"]) == ("not_regulated", ANONYMOUS_ONLY)


def test_customers_missing_from_a_backfill_relist_are_regulated_in_batches(world):
    """A backfill flags the customers Stripe no longer lists (``mirror.mark_deleted``, as extract.backfill does);
    five of them with a batch size of two give three regulations, each customer in exactly one."""
    chosen = [c for c in world.customers() if (c.get("metadata") or {}).get("segment_user_id")][:5]
    world.store.mirror.mark_deleted("customer", [c["id"] for c in chosen], int(time.time()))
    settings, client = world.privacy()
    outcome = run_deletion_path(world.store, settings, client, now=int(time.time()), batch_size=2)
    assert outcome.regulations_filed == 3 and outcome.filed == 5 and outcome.purged == 5
    assert world.papi.subjects() == sorted(c["metadata"]["segment_user_id"] for c in chosen)


def test_the_audit_records_names_destinations_and_run_never_values(world):
    customer = identified_customer(world)
    rows = world.store.delivery_audit.for_customer(customer["id"])
    identify = next(r for r in rows if r["call_type"] == "identify")
    assert identify["run_id"] == "run-profiles" and "email" in identify["trait_names"]
    assert identify["acknowledged_at"] >= NOW and identify["message_id"]
    sent_ids = {m["messageId"] for m in world.messages_about(customer)}
    assert {r["message_id"] for r in rows} == sent_ids
    assert findings_in(rows, personal_values(customer, [])) == []


def findings_in(rows, values):
    text = repr(rows)
    return [v for v in values if v in text]
