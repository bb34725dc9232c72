"""Bad input is set aside per object: text a database refuses, malformed objects; the rest completes.

Postgres refuses NUL characters in text; neither backend can store a lone
surrogate (it has no UTF-8 encoding). Both come from Stripe as JSON escapes.
"""

import time

import pytest
from sqlalchemy import select

from s2s_pipeline.extract.backfill import backfill
from s2s_pipeline.extract.change_feed import EVENTS_CURSOR, sync_changes
from s2s_pipeline.extract.quarantine_retry import retry_quarantined
from s2s_pipeline.store import schema

DAY = 86400
SURROGATE = "\ud800"  # no UTF-8 encoding: refused by SQLite and Postgres alike
NUL = "\x00"  # refused by Postgres text columns


def customer(cid: str, created: int, name: str = "N") -> dict:
    return {"id": cid, "object": "customer", "email": f"{cid}@example.com", "name": name, "currency": "usd",
            "created": created, "metadata": {}, "livemode": False, "delinquent": False}


def rows(state_store, table):
    with state_store.engine.connect() as conn:
        return {r.id: r for r in conn.execute(select(table))}


def _initial_sync(standin, make_reader, state_store, now):
    standin.load([customer("cus_0", now - 5 * DAY)])
    standin.emit("customer.created", customer("cus_0", now - 5 * DAY), created=now - 5 * DAY)
    return sync_changes(make_reader(), state_store, clock=lambda: now)


def _bad_texts(state_url):
    """The characters this backend refuses."""
    return [SURROGATE, NUL] if state_url.startswith("postgresql") else [SURROGATE]


def test_unstorable_event_is_quarantined_and_the_rest_applied(standin, make_reader, state_store, state_url):
    now = int(time.time())
    _initial_sync(standin, make_reader, state_store, now)
    bad_texts = _bad_texts(state_url)
    standin.emit("customer.created", customer("cus_good1", now - 60), created=now - 60)
    bad_ids = []
    for i, bad in enumerate(bad_texts):
        cid = f"cus_bad{i}"
        bad_ids.append(cid)
        standin.emit("customer.created", customer(cid, now - 50, name=f"Ann{bad}Lee"), created=now - 50)
    standin.emit("customer.created", customer("cus_good2", now - 40), created=now - 40)

    result = sync_changes(make_reader(), state_store, clock=lambda: now)

    mirrored = rows(state_store, schema.customers)
    assert {"cus_good1", "cus_good2"} <= set(mirrored)
    assert not set(bad_ids) & set(mirrored)
    assert state_store.cursors.get(EVENTS_CURSOR)["created"] == now - 40  # moved past the bad events
    held = {(q.object_type, q.object_id): q for q in state_store.quarantine.entries()}
    assert set(held) == {("customer", cid) for cid in bad_ids}
    for q in held.values():
        assert "refused" in q.reason and q.attempts == 1 and len(q.event_ids) == 1
        assert "Ann" in q.payload and NUL not in q.payload and SURROGATE not in q.payload  # sanitised
    ledger = {r.object_id: r for r in rows(state_store, schema.stripe_events).values()}
    assert all(ledger[cid].track_status == "quarantined" and ledger[cid].payload is None for cid in bad_ids)
    assert ledger["cus_good1"].track_status == "pending" and ledger["cus_good1"].applied
    assert len(result.quarantined) == len(bad_ids)

    # The next run finds the events ledgered: nothing fails, nothing is attempted again.
    again = sync_changes(make_reader(), state_store, clock=lambda: now + 60)
    assert again.quarantined == [] and again.events_new == 0
    assert [q.attempts for q in state_store.quarantine.entries()] == [1] * len(bad_ids)


def test_retry_stores_a_fixed_object_and_takes_it_out_of_the_quarantine(standin, make_reader, state_store):
    now = int(time.time())
    _initial_sync(standin, make_reader, state_store, now)
    event = standin.emit("customer.created", customer("cus_bad", now - 50, name=f"Ann{SURROGATE}"), created=now - 50)
    standin.emit("customer.created", customer("cus_other", now - 40, name=f"Bo{SURROGATE}"), created=now - 40)
    sync_changes(make_reader(), state_store, clock=lambda: now)
    assert len(state_store.quarantine.entries()) == 2

    # Fixed in Stripe (the customer was renamed); the event itself is re-read too, for its track call.
    standin.load([customer("cus_bad", now - 50, name="Ann Lee")])
    stored_event = next(e for e in standin.dump() if e.get("id") == event["id"])
    stored_event["data"]["object"]["name"] = "Ann Lee"
    standin.load_events([stored_event])
    outcome = retry_quarantined(make_reader(), state_store, clock=lambda: now + 60)

    assert outcome.released == [("customer", "cus_bad")]
    assert outcome.still_quarantined == [("customer", "cus_other")]
    assert rows(state_store, schema.customers)["cus_bad"].name == "Ann Lee"
    (left,) = state_store.quarantine.entries()
    assert left.object_id == "cus_other" and left.attempts == 2 and left.last_seen == now + 60
    ledger = {r.object_id: r for r in rows(state_store, schema.stripe_events).values()}
    assert ledger["cus_bad"].track_status == "pending" and ledger["cus_bad"].payload["id"] == event["id"]
    assert ledger["cus_other"].track_status == "quarantined"


def test_malformed_object_in_a_backfill_is_quarantined_with_its_reason(standin, make_reader, state_store):
    start = 1_760_000_000
    good = customer("cus_1", start)
    bad_charge = {"id": "ch_bad", "object": "charge", "currency": "usd", "created": start + 20, "amount": 5}
    standin.load([good, customer("cus_3", start + 30, name=f"X{SURROGATE}"), bad_charge])
    result = backfill(make_reader(), state_store, ["customer", "charge"], start - DAY, start + DAY)
    assert set(rows(state_store, schema.customers)) == {"cus_1"}
    held = {q.object_id: q for q in state_store.quarantine.entries()}
    assert set(held) == {"ch_bad", "cus_3"}
    assert "'status'" in held["ch_bad"].reason and "refused" in held["cus_3"].reason
    assert result.malformed and len(result.quarantined) == 2


def test_quarantine_retention_drops_old_entries(state_store):
    from s2s_pipeline.store.quarantine import QuarantineEntry

    state_store.quarantine.set_aside([QuarantineEntry("customer", "cus_old", "refused", {"id": "cus_old"})], 1000)
    state_store.quarantine.set_aside([QuarantineEntry("customer", "cus_new", "refused", {"id": "cus_new"})], 5000)
    out = state_store.purge(raw_before=None, deleted_customer_pii=False, quarantine_before=2000)
    assert out == {"quarantine_entries_dropped": 1}
    assert [q.object_id for q in state_store.quarantine.entries()] == ["cus_new"]


@pytest.mark.parametrize("bad", [SURROGATE, NUL])
def test_quarantined_payload_is_sanitised_and_truncated(state_store, bad):
    from s2s_pipeline.store.quarantine import MAX_PAYLOAD_CHARS, QuarantineEntry

    payload = {"id": f"cus_{bad}x", "name": f"a{bad}" * 5000}
    state_store.quarantine.set_aside([QuarantineEntry("customer", f"cus_{bad}x", f"reason {bad}", payload)], 1)
    (q,) = state_store.quarantine.entries()
    assert bad not in q.payload + q.object_id + q.reason and len(q.payload) <= MAX_PAYLOAD_CHARS
