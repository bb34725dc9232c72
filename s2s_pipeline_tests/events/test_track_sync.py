"""Stripe events -> Segment track calls through the ledger, against the stand-ins."""

import copy
import time

import pytest
from sqlalchemy import select

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.profiles_standin import ProfilesStandIn
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.extract.change_feed import apply_single_event, sync_changes
from s2s_pipeline.segment.context import MirrorContext
from s2s_pipeline.segment.delivery import SegmentSettings
from s2s_pipeline.segment.profiles_api import ProfilesClient
from s2s_pipeline.segment.track_sync import deliver_calls, history_calls, send_track_events
from s2s_pipeline.store import schema
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_pipeline.traits.config import TraitsConfig

WRITE_KEY = "wk_track"
NOW = int(time.time())


@pytest.fixture(scope="module")
def account():
    return generate_account(customers=30, seed=4, now=NOW)


class World:
    def __init__(self, standin, sink, store, account):
        self.standin, self.sink, self.store, self.account = standin, sink, store, account
        self.reader = StripeReader(StripeSettings(api_key="sk_test_t", api_base=standin.base_url, rate_limit=1000))
        self.settings = SegmentSettings(write_key=WRITE_KEY, host=sink.base_url, max_retries=1)

    def nightly(self, profiles=None):
        sync_changes(self.reader, self.store)
        return send_track_events(self.store, self.settings, reader=self.reader, profiles=profiles,
                                 now=int(time.time()))

    def tracks(self, name=None):
        return [m for m in self.sink.accepted if m["type"] == "track" and (name is None or m["event"] == name)]

    def paid_charge(self):
        return next(c for c in self.account.of_type("charge")
                    if c["status"] == "succeeded" and not c["amount_refunded"] and c.get("customer"))

    def ledger(self):
        with self.store.engine.connect() as conn:
            return {r.id: r for r in conn.execute(select(schema.stripe_events))}


@pytest.fixture
def world(account, state_url):
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        seed_standin(standin, account, copy=True)
        standin.now = None
        store = StateStore(make_engine(state_url))
        w = World(standin, sink, store, account)
        w.nightly()  # first run: full sync, baseline; nothing from before is sent
        yield w
        store.engine.dispose()


def test_first_run_sends_no_history_and_later_events_are_sent_once(world):
    assert world.tracks() == []
    charge = copy.deepcopy(world.paid_charge())
    charge["id"] = "ch_new_order"
    charge["created"] = int(time.time())
    world.standin.emit("charge.succeeded", charge)
    outcome = world.nightly()
    (order,) = world.tracks("Order Completed")
    assert order["properties"]["order_id"] == "ch_new_order"
    assert outcome.statuses["sent"] == 1
    assert world.nightly().report.attempted == []  # nothing twice
    statuses = {r.track_status for r in world.ledger().values()}
    assert "pending" not in statuses


def test_refund_double_event_gives_exactly_one_order_refunded(world):
    charge = copy.deepcopy(world.paid_charge())
    refund = {"id": "re_double", "object": "refund", "amount": 500, "charge": charge["id"], "currency":
              charge["currency"], "status": "succeeded", "reason": "requested_by_customer",
              "created": int(time.time()), "customer": charge["customer"]}
    charge["amount_refunded"] = 500
    world.standin.emit("refund.created", refund)
    world.standin.emit("charge.refunded", charge, previous_attributes={"amount_refunded": 0})
    world.nightly()
    refunds = world.tracks("Order Refunded")
    assert len(refunds) == 1 and refunds[0]["properties"]["refund_id"] == "re_double"
    statuses = sorted(r.track_status for r in world.ledger().values() if r.type in ("refund.created", "charge.refunded"))
    assert statuses == ["sent", "skipped"]


def _failed_invoice(world):
    invoice = copy.deepcopy(next(i for i in world.account.of_type("invoice") if i["status"] == "paid"))
    invoice.update(status="open", attempt_count=1, amount_paid=0, amount_remaining=invoice["amount_due"],
                   next_payment_attempt=int(time.time()) + 3 * 86400)
    return world.standin.emit("invoice.payment_failed", invoice)


def test_sensor_path_then_nightly_sends_payment_failed_once(world):
    event = _failed_invoice(world)
    fetched = world.reader.get(f"/v1/events/{event['id']}")
    apply_single_event(world.reader, world.store, fetched)
    send_track_events(world.store, world.settings, reader=world.reader, now=int(time.time()), event_ids=[event["id"]])
    (failed,) = world.tracks("Payment Failed")
    props = failed["properties"]
    invoice = event["data"]["object"]
    assert props["invoice_id"] == invoice["id"] and props["attempt_count"] == 1
    assert props["next_payment_attempt"].endswith("Z")
    delinquent = [m for m in world.sink.accepted if m["type"] == "identify"
                  and m["traits"] == {"payment_delinquent": True}]
    assert len(delinquent) == 1
    world.nightly()  # the change feed finds the event known; nothing is sent again
    assert len(world.tracks("Payment Failed")) == 1
    with world.store.engine.connect() as conn:
        status = conn.execute(select(schema.invoices.c.status).where(schema.invoices.c.id == invoice["id"])).scalar()
    assert status == "open"  # the alert job mirrored the snapshot


def test_failed_send_is_retried_with_the_same_message_id(world):
    _failed_invoice(world)
    world.sink.faults.fail_next(2, status=500)  # both attempts of the first run (max_retries=1)
    first = world.nightly()
    assert first.statuses["failed"] == 1
    failed_ids = set(first.report.failed)
    second = world.nightly()
    assert second.statuses["sent"] == 1
    assert {m["messageId"] for m in world.tracks("Payment Failed")} <= failed_ids


def test_order_completed_carries_campaign_and_profile_anonymous_id(world):
    by_id = world.account.by_id()

    def user_id(customer):
        meta = customer.get("metadata") or {}
        return meta.get("segment_user_id") or meta.get("user_id")

    charge = copy.deepcopy(next(c for c in world.account.of_type("charge") if c["status"] == "succeeded"
                                and c.get("customer") and user_id(by_id[c["customer"]])))
    customer = by_id[charge["customer"]]
    charge["id"] = "ch_attributed"
    world.standin.emit("charge.succeeded", charge)
    with ProfilesStandIn(space_id="spa", token="tok") as profiles_api:
        profiles_api.add_profile(customer["email"], anonymous_ids=["anon_visit_1"], user_id=user_id(customer),
                                 traits={"utm_source": "newsletter", "utm_campaign": "black_friday"})
        world.nightly(profiles=ProfilesClient("spa", "tok", host=profiles_api.base_url))
    (order,) = [m for m in world.tracks("Order Completed") if m["properties"]["order_id"] == "ch_attributed"]
    assert order["context"]["campaign"] == {"source": "newsletter", "name": "black_friday"}
    assert order["userId"] == user_id(customer) and order["anonymousId"] == "anon_visit_1"


def test_history_backfill_uses_the_live_message_ids_and_never_repeats(world):
    ctx = MirrorContext(world.store.mirror, world.reader, TraitsConfig(), int(time.time()))
    calls = history_calls(world.store, NOW - 400 * 86400, NOW + 86400, ctx, TraitsConfig())
    assert {c.event for _, c in calls} >= {"Order Completed", "Order Refunded"}
    report, status = deliver_calls(world.store, world.settings, calls, profiles=None, config=TraitsConfig(),
                                   now=int(time.time()))
    assert report.failed == {}
    sent = len(world.sink.accepted)
    again, status2 = deliver_calls(world.store, world.settings, calls, profiles=None, config=TraitsConfig(),
                                   now=int(time.time()))
    assert again.attempted == [] and len(world.sink.accepted) == sent
    # A live charge.succeeded for a charge the history already sent is not sent again.
    charge = world.paid_charge()
    world.standin.emit("charge.succeeded", copy.deepcopy(charge))
    world.nightly()
    assert len([m for m in world.tracks("Order Completed") if m["properties"]["order_id"] == charge["id"]]) == 1


def test_history_works_from_typed_columns_after_raw_payloads_expired(world):
    ctx = MirrorContext(world.store.mirror, world.reader, TraitsConfig(), int(time.time()))
    window = (NOW - 400 * 86400, NOW + 86400)
    before = {(c.event, c.message_id) for _, c in history_calls(world.store, *window, ctx, TraitsConfig())}
    world.store.purge(raw_before=NOW + 10 * 86400, deleted_customer_pii=False)
    after = {(c.event, c.message_id) for _, c in history_calls(world.store, *window, ctx, TraitsConfig())}
    assert after == before and before


def test_charge_failed_without_invoice_payments_api_uses_the_mirror(world):
    """A Stripe-compatible server without /v1/invoice_payments: open invoices in the mirror decide."""
    ctx = MirrorContext(world.store.mirror, None, TraitsConfig(), int(time.time()))  # no API at all
    invoices = world.account.of_type("invoice")
    unpaid = {i["customer"] for i in invoices if i["status"] in ("open", "uncollectible")}
    invoice = next(i for i in invoices if i["status"] == "paid" and i["customer"] not in unpaid)
    attempt = {"id": "ch_attempt", "customer": invoice["customer"], "currency": invoice["currency"],
               "amount": invoice["amount_due"], "created": invoice["created"] + 10, "payment_intent": "pi_x"}
    assert ctx.charge_belongs_to_invoice(attempt) is False  # that invoice is paid: nothing open to attempt
    with world.store.engine.begin() as conn:
        conn.execute(schema.invoices.update().where(schema.invoices.c.id == invoice["id"])
                     .values(status="open", amount_remaining=invoice["amount_due"]))
    assert ctx.charge_belongs_to_invoice(attempt) is True
    assert ctx.charge_belongs_to_invoice({**attempt, "amount": invoice["amount_due"] + 1}) is False
    assert ctx.charge_belongs_to_invoice({**attempt, "payment_intent": None}) is False


def test_alert_for_a_customer_created_since_the_last_run_uses_its_metadata_user_id(world):
    """The identity of a track call is resolved like the identify's, even before the nightly run."""
    from s2s_pipeline.extract.references import ensure_mirrored

    now = int(time.time())
    new_customer = {"id": "cus_brand_new", "object": "customer", "email": "new@example.com", "currency": "usd",
                    "created": now, "metadata": {"segment_user_id": "u_brand_new"}}
    world.standin.load([new_customer])
    charge = {"id": "ch_new_fail", "object": "charge", "status": "failed", "amount": 900, "currency": "usd",
              "customer": "cus_brand_new", "created": now, "failure_code": "card_declined",
              "failure_message": "Your card was declined.", "amount_captured": 0, "amount_refunded": 0}
    event = world.standin.emit("charge.failed", charge)
    apply_single_event(world.reader, world.store, world.reader.get(f"/v1/events/{event['id']}"))
    assert ensure_mirrored(world.reader, world.store, "customer", "cus_brand_new") is False  # already fetched
    send_track_events(world.store, world.settings, reader=world.reader, now=now, event_ids=[event["id"]])
    (failed,) = world.tracks("Payment Failed")
    assert failed["userId"] == "u_brand_new" and failed["properties"]["failure_code"] == "card_declined"
    with world.store.engine.connect() as conn:
        stored = conn.execute(select(schema.identity_map.c.user_id, schema.identity_map.c.source)
                              .where(schema.identity_map.c.stripe_customer_id == "cus_brand_new")).one()
    assert tuple(stored) == ("u_brand_new", "metadata")


def _invoice_attempt_since_the_last_sync(world):
    """An invoice created after the last sync, its PaymentIntent's failed charge, and Stripe's events for both."""
    now = int(time.time())
    template = next(i for i in world.account.of_type("invoice") if i["status"] == "paid")
    invoice = {**copy.deepcopy(template), "id": "in_since_sync", "status": "open", "attempt_count": 1,
               "amount_paid": 0, "amount_remaining": template["amount_due"], "created": now,
               "next_payment_attempt": now + 3 * 86400, "payments": None}
    intent = {"id": "pi_since_sync", "object": "payment_intent", "amount": invoice["amount_due"],
              "currency": invoice["currency"], "customer": invoice["customer"], "created": now,
              "status": "requires_payment_method", "latest_charge": "ch_since_sync",
              "last_payment_error": {"code": "card_declined", "message": "Your card was declined."}}
    payment = {"id": "inpay_since_sync", "object": "invoice_payment", "invoice": invoice["id"], "created": now,
               "currency": invoice["currency"], "amount_requested": invoice["amount_due"], "status": "open",
               "payment": {"type": "payment_intent", "payment_intent": intent["id"]}}
    charge = {"id": "ch_since_sync", "object": "charge", "status": "failed", "amount": invoice["amount_due"],
              "currency": invoice["currency"], "customer": invoice["customer"], "created": now,
              "payment_intent": intent["id"], "failure_code": "card_declined",
              "failure_message": "Your card was declined.", "amount_captured": 0, "amount_refunded": 0,
              "captured": False, "paid": False}
    world.standin.load([intent, payment])
    charge_event = world.standin.emit("charge.failed", charge, created=now)
    world.standin.emit("invoice.payment_failed", invoice, created=now)
    return charge_event


def test_a_stripe_error_on_invoice_payments_never_sends_payment_failed_twice(world):
    """The alert run for a charge.failed meets one 500 on /v1/invoice_payments: the event is left failed
    (not mapped through the mirror, which cannot see the new invoice); the nightly run decides it."""
    reader = StripeReader(StripeSettings(api_key="sk_test_t", api_base=world.standin.base_url, rate_limit=1000,
                                         max_network_retries=0))
    charge_event = _invoice_attempt_since_the_last_sync(world)
    world.standin.faults.fail_paths("/v1/invoice_payments", 1, status=500)
    apply_single_event(reader, world.store, reader.get(f"/v1/events/{charge_event['id']}"))
    alert = send_track_events(world.store, world.settings, reader=reader, now=int(time.time()),
                              event_ids=[charge_event["id"]])
    assert alert.statuses["failed"] == 1 and world.tracks("Payment Failed") == []
    assert world.ledger()[charge_event["id"]].track_status == "failed"

    world.nightly()  # invoice.payment_failed sends the one alert; charge.failed is mapped again, correctly
    (failed,) = world.tracks("Payment Failed")
    assert failed["properties"]["invoice_id"] == "in_since_sync"
    assert world.ledger()[charge_event["id"]].track_status == "skipped"


def test_a_server_without_invoice_payments_falls_back_to_the_mirror(world):
    """404 on /v1/invoice_payments means the endpoint is missing (a Stripe-compatible server): the mirror decides."""
    world.standin.faults.fail_paths("/v1/invoice_payments", 10, status=404)
    ctx = MirrorContext(world.store.mirror, world.reader, TraitsConfig(), int(time.time()))
    invoices = world.account.of_type("invoice")
    unpaid = {i["customer"] for i in invoices if i["status"] in ("open", "uncollectible")}
    invoice = next(i for i in invoices if i["status"] == "paid" and i["customer"] not in unpaid)
    attempt = {"id": "ch_attempt", "customer": invoice["customer"], "currency": invoice["currency"],
               "amount": invoice["amount_due"], "created": invoice["created"] + 10, "payment_intent": "pi_x"}
    assert ctx.charge_belongs_to_invoice(attempt) is False
    with world.store.engine.begin() as conn:
        conn.execute(schema.invoices.update().where(schema.invoices.c.id == invoice["id"])
                     .values(status="open", amount_remaining=invoice["amount_due"]))
    assert ctx.charge_belongs_to_invoice(attempt) is True
