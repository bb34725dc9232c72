"""The webhook receiver: what it stores, what it refuses, and how it answers when the state store is down.

Deliveries are signed by the Stripe stand-in's own signer (``t=..,v1=HMAC``,
written from Stripe's documentation, not stripe-python's helper), so the
receiver's use of stripe-python is checked against an independent signature.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from starlette.testclient import TestClient

from s2s_devtools.fakes.stripe import sign, webhook_body
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.webhooks.app import create_app
from s2s_pipeline.webhooks.settings import MissingSetting, ReceiverSettings

SECRET = "whsec_test_receiver_secret"
PATH = "/stripe/webhooks"


def event(n: int = 1, kind: str = "invoice.payment_failed", **extra) -> dict:
    return {"id": f"evt_test_{n:06d}", "object": "event", "type": kind, "created": int(time.time()),
            "api_version": "2026-10-28.endive", "livemode": False, "pending_webhooks": 1,
            "data": {"object": {"id": f"in_{n:06d}", "object": "invoice", "customer": "cus_1",
                                "customer_email": "jane@example.com", "amount_due": 1200, "currency": "usd"}},
            **extra}


def post(client: TestClient, body: str, *, secret: str = SECRET, timestamp: int | None = None,
         signature: str | None = None):
    header = signature if signature is not None else sign(body, secret, timestamp)
    return client.post(PATH, content=body.encode(), headers={"Stripe-Signature": header,
                                                               "Content-Type": "application/json"})


@pytest.fixture
def receiver(state_url):
    store = StateStore.from_url(state_url)
    app = create_app(ReceiverSettings(secret=SECRET, max_body_bytes=64 * 1024), open_store=lambda: store)
    with TestClient(app) as client:
        yield client, store
    store.dispose()


def test_a_signed_event_is_stored_before_the_200(receiver):
    client, store = receiver
    e = event(1)
    response = post(client, webhook_body(e))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "event_id": e["id"], "duplicate": False}
    assert store.inbox.get(e["id"]) == e
    (stored,) = store.inbox.received_since(["invoice.payment_failed"], 0)
    assert (stored.event_id, stored.type, stored.created) == (e["id"], e["type"], e["created"])


def test_given_a_signature_by_another_secret_when_posted_then_400_and_nothing_stored(receiver):
    client, store = receiver
    response = post(client, webhook_body(event(1)), secret="whsec_someone_else")
    assert response.status_code == 400
    assert "signature" in response.json()["error"]
    assert store.inbox.count() == 0


def test_given_a_signature_older_than_300_s_when_posted_then_400_and_nothing_stored(receiver):
    """A replay of a captured delivery: correctly signed, but the signature's timestamp is stale."""
    client, store = receiver
    body = webhook_body(event(1))
    assert post(client, body, timestamp=int(time.time()) - 301).status_code == 400
    assert store.inbox.count() == 0
    assert post(client, body, timestamp=int(time.time()) - 250).status_code == 200  # within the tolerance


@pytest.mark.parametrize("signature", ["", "t=abc,v1=00", "t=1700000000", "v1=deadbeef", "garbage"])
def test_missing_or_malformed_signature_headers_are_refused(receiver, signature):
    client, store = receiver
    assert post(client, webhook_body(event(1)), signature=signature).status_code == 400
    assert store.inbox.count() == 0


def test_a_body_changed_after_signing_is_refused(receiver):
    client, store = receiver
    body = webhook_body(event(1))
    header = sign(body, SECRET)
    tampered = body.replace('"amount_due": 1200', '"amount_due": 1')
    assert post(client, tampered, signature=header).status_code == 400
    assert store.inbox.count() == 0


@pytest.mark.parametrize("payload", ['["not", "an", "event"]', '{"object": "charge", "id": "ch_1"}',
                                     '{"object": "event", "id": "nope", "type": "x", "created": 1}',
                                     '{"object": "event", "id": "evt_1", "created": 1}', "not json"])
def test_signed_bodies_that_are_not_stripe_events_are_refused(receiver, payload):
    client, store = receiver
    assert post(client, payload).status_code == 400
    assert store.inbox.count() == 0


def test_duplicate_deliveries_are_stored_once(receiver):
    """Stripe redelivers until it sees a 2xx, and may deliver one event twice: both get 200, one row."""
    client, store = receiver
    e = event(7)
    first, second = post(client, webhook_body(e)), post(client, json.dumps(e))  # a redelivery, other formatting
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    assert store.inbox.count() == 1


def test_given_a_body_over_the_limit_then_413_before_verifying(receiver):
    client, store = receiver
    big = event(1, padding="x" * (64 * 1024))
    assert post(client, webhook_body(big)).status_code == 413
    # without a Content-Length (chunked), the limit applies while reading
    body = webhook_body(big).encode()
    response = client.post(PATH, content=iter([body[:40000], body[40000:]]),
                           headers={"Stripe-Signature": sign(body.decode(), SECRET)})
    assert response.status_code == 413
    assert store.inbox.count() == 0


def test_healthz_reports_the_store(receiver):
    client, _ = receiver
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "state_store": "ok"}


def test_given_an_unreachable_state_store_then_503_so_stripe_retries():
    """The receiver starts while the store is down and answers 503 (Stripe retries); /healthz says so."""
    unreachable = "postgresql+psycopg2://nobody@127.0.0.1:9/nowhere?connect_timeout=2"
    app = create_app(ReceiverSettings(secret=SECRET, database_url=unreachable))
    with TestClient(app) as client:
        assert post(client, webhook_body(event(1))).status_code == 503
        assert client.get("/healthz").status_code == 503
        assert post(client, webhook_body(event(1)), secret="whsec_wrong").status_code == 400  # still verified first


@pytest.mark.postgres
def test_given_postgres_going_down_and_back_then_503_then_stored(postgres_url):
    """A real outage: the database stops accepting connections while the receiver runs, then comes back."""
    from sqlalchemy import create_engine, text

    base, _, name = postgres_url.rpartition("/")
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    store = StateStore.from_url(postgres_url)
    app = create_app(ReceiverSettings(secret=SECRET), open_store=lambda: store)
    try:
        with TestClient(app) as client, admin.connect() as conn:
            assert post(client, webhook_body(event(1))).status_code == 200
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            assert post(client, webhook_body(event(2))).status_code == 503
            assert client.get("/healthz").status_code == 503
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            assert post(client, webhook_body(event(2))).status_code == 200  # Stripe's retry
            assert {e.event_id for e in store.inbox.received_since(["invoice.payment_failed"], 0)} == {
                event(1)["id"], event(2)["id"]}
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        store.dispose()
        admin.dispose()


def test_logs_name_event_ids_never_payloads_or_the_secret(receiver, caplog):
    client, _ = receiver
    caplog.set_level(logging.DEBUG)
    e = event(3)
    post(client, webhook_body(e))
    post(client, webhook_body(e), secret="whsec_wrong")
    text = caplog.text
    assert e["id"] in text
    assert "jane@example.com" not in text and SECRET not in text and "whsec_wrong" not in text


def test_the_secret_setting_is_required_and_named():
    with pytest.raises(MissingSetting, match="STRIPE_WEBHOOK_SECRET"):
        ReceiverSettings.from_environment({})
    with pytest.raises(MissingSetting, match="STRIPE_WEBHOOK_SECRET"):
        ReceiverSettings.from_environment({"STRIPE_WEBHOOK_SECRET": "sk_test_wrong_kind"})
    settings = ReceiverSettings.from_environment({"STRIPE_WEBHOOK_SECRET": SECRET, "S2S_DATABASE_URL": "sqlite://"})
    assert settings.database_url == "sqlite://" and SECRET not in repr(settings)


def test_the_command_exits_with_a_message_naming_the_unset_secret(monkeypatch, capsys):
    from s2s_pipeline.webhooks.cli import main

    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    assert main(["--port", "0"]) == 2
    assert "STRIPE_WEBHOOK_SECRET is not set" in capsys.readouterr().err


def test_retention_removes_webhook_deliveries_received_before_the_cutoff(state_store):
    state_store.inbox.store(event(1), received_at_ms=1_000_000)
    state_store.inbox.store(event(2), received_at_ms=3_000_000)
    out = state_store.purge(raw_before=None, deleted_customer_pii=False, inbox_before=2_000)  # seconds
    assert out == {"webhook_events_dropped": 1}
    assert state_store.inbox.get(event(1)["id"]) is None and state_store.inbox.get(event(2)["id"]) is not None
