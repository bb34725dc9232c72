"""Retention on both stores: ledger, unsent events, track-sent, delivery audit; the nightly queries' indexes."""

from sqlalchemy import inspect, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.privacy_schema import delivery_audit


def _ledger(store, *rows):
    base = {"type": "charge.succeeded", "received_at": 1, "applied": True, "payload": {"customer": "cus_1"}}
    store.ledger.record([{**base, **row} for row in rows])


def _events(store):
    with store.engine.connect() as conn:
        return {r.id: (r.track_status, r.payload) for r in conn.execute(select(schema.stripe_events))}


def test_every_growing_table_is_trimmed_and_unsent_events_expire(state_store):
    _ledger(state_store, {"id": "evt_ancient", "created": 10, "track_status": "sent"},
            {"id": "evt_old_pending", "created": 500, "track_status": "pending"},
            {"id": "evt_old_failed", "created": 500, "track_status": "failed"},
            {"id": "evt_new_pending", "created": 2000, "track_status": "pending"})
    state_store.track_state.record_sent([
        {"dedupe_key": k, "message_id": k, "event": "Order Completed", "stripe_customer_id": "cus_1",
         "stripe_event_id": "evt", "sent_at": t} for k, t in (("old", 100), ("new", 2000))])
    state_store.delivery_audit.append([
        {"message_id": m, "call_type": "track", "event": "Order Completed", "stripe_customer_id": "cus_1",
         "trait_names": [], "property_names": ["order_id"], "integrations": None, "run_id": "r",
         "acknowledged_at": t} for m, t in (("m_old", 100), ("m_new", 2000))])

    out = state_store.purge(raw_before=None, deleted_customer_pii=False, unsent_before=1000, ledger_before=100,
                            track_sent_before=1000, audit_before=1000)

    assert out == {"unsent_events_expired": 2, "ledger_events_deleted": 1, "track_sent_deleted": 1,
                   "audit_rows_deleted": 1}
    events = _events(state_store)
    assert set(events) == {"evt_old_pending", "evt_old_failed", "evt_new_pending"}
    assert events["evt_old_pending"] == ("skipped", None) and events["evt_old_failed"] == ("skipped", None)
    assert events["evt_new_pending"] == ("pending", {"customer": "cus_1"})  # still to be sent
    assert [e.id for e in state_store.ledger.awaiting_track()] == ["evt_new_pending"]
    assert state_store.track_state.already_sent(["old", "new"]) == {"new"}
    with state_store.engine.connect() as conn:
        assert list(conn.execute(select(delivery_audit.c.message_id)).scalars()) == ["m_new"]


def test_the_nightly_queries_and_retention_have_indexes(state_store):
    indexes = {table: {i["name"] for i in inspect(state_store.engine).get_indexes(table)}
               for table in ("stripe_events", "segment_track_sent", "segment_delivery_audit")}
    assert "ix_stripe_events_track_status_created" in indexes["stripe_events"]
    assert {"ix_segment_track_sent_sent_at", "ix_segment_track_sent_customer"} <= indexes["segment_track_sent"]
    assert {"ix_segment_delivery_audit_acknowledged_at",
            "ix_segment_delivery_audit_stripe_customer_id"} <= indexes["segment_delivery_audit"]


def test_migration_adds_indexes_to_a_store_made_before_them(state_url):
    from sqlalchemy import text

    from s2s_pipeline.store.db import make_engine

    from s2s_pipeline.store import schema

    engine = make_engine(state_url)
    # a store of a release before the index: the index missing, that release's fingerprint recorded
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_stripe_events_track_status_created"))
        conn.execute(schema.schema_info.update().values(value="a release before the index"))
    engine.dispose()
    engine = make_engine(state_url)
    assert "ix_stripe_events_track_status_created" in {i["name"] for i in inspect(engine).get_indexes("stripe_events")}
    engine.dispose()


def test_a_forgotten_customer_brought_back_by_a_stripe_change_is_scrubbed_again(state_store):
    from s2s_pipeline.stripe.normalize import to_rows

    cust = {"id": "cus_back", "object": "customer", "email": "back@example.com", "name": "Back Again",
            "metadata": {"segment_user_id": "u_back"}, "created": 1, "currency": "usd"}
    state_store.mirror.apply(to_rows(cust, 100))
    state_store.regulations.request([{"stripe_customer_id": "cus_back", "reason": "forget_request",
                                      "state": "not_regulated", "requested_at": 100}])
    state_store.forget_customer("cus_back", 100)
    state_store.mirror.apply(to_rows(cust, 200))  # a customer.updated the mirror applies afterwards
    assert state_store.purge(raw_before=None, deleted_customer_pii=False, forgotten_customers=True) == {
        "forgotten_customers_rescrubbed": 1}
    row = state_store.mirror.object_row("customer", "cus_back")
    assert (row["email"], row["name"], row["metadata"], row["raw"]) == (None, None, None, None)
