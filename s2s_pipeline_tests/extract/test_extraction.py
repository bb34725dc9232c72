"""Extraction against the Stripe stand-in: paging, windows, 429s, newest-wins, deletions, cursor fallback."""

import copy
import time

import pytest
from sqlalchemy import select

from s2s_pipeline.extract.backfill import backfill
from s2s_pipeline.extract.change_feed import EVENTS_CURSOR, sync_changes
from s2s_pipeline.store import schema
from s2s_pipeline.stripe.client import API_VERSION

DAY = 86400


def charge(i: int, created: int, customer: str = "cus_1") -> dict:
    return {"id": f"ch_{i:05d}", "object": "charge", "amount": 1000 + i, "amount_captured": 1000 + i,
            "amount_refunded": 0, "captured": True, "paid": True, "refunded": False, "status": "succeeded",
            "currency": "usd", "customer": customer, "created": created, "livemode": False,
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}}}


def customer(cid: str, created: int, email: str) -> dict:
    return {"id": cid, "object": "customer", "email": email, "name": "N", "currency": "usd", "created": created,
            "metadata": {}, "livemode": False, "delinquent": False}


def table_rows(state_store, table):
    with state_store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


def test_windows_and_paging_fetch_each_object_exactly_once(standin, make_reader, state_store):
    start = 1_760_000_000
    # 1,537 charges over 10 days, several created in the same second (ties must not be lost or doubled).
    standin.load(charge(i, start + (i * 1601) % (10 * DAY) // 7 * 7) for i in range(1537))
    reader = make_reader(concurrency=4)
    result = backfill(reader, state_store, ["charge"], start, start + 10 * DAY)
    assert result.listed["charge"] == 1537  # every object received once: no duplicate pages
    assert len(table_rows(state_store, schema.charges)) == 1537
    list_requests = [r for r in standin.requests if r["path"] == "/v1/charges"]
    assert all(r["query"].get("limit") in ("100", 100) for r in list_requests)
    assert len(list_requests) >= 8  # split into created windows, each paged with starting_after
    assert any("starting_after" in r["query"] for r in list_requests)


def test_requests_use_the_pinned_api_version(standin, make_reader, state_store):
    standin.load([customer("cus_1", 1_760_000_000, "a@example.com")])
    backfill(make_reader(), state_store, ["customer"], 1_759_999_000, 1_760_001_000)
    assert {r["headers"].get("Stripe-Version") for r in standin.requests} == {API_VERSION}


def test_429_storm_is_survived_with_nothing_missing(standin, make_reader, state_store):
    start = 1_760_000_000
    standin.load(charge(i, start + i * 300) for i in range(400))
    standin.faults.fail_probability(0.5, status=429, seed=3)
    reader = make_reader(concurrency=4, max_rate_limit_retries=30)
    result = backfill(reader, state_store, ["charge"], start, start + 2 * DAY)
    assert len(table_rows(state_store, schema.charges)) == 400
    assert result.rate_limited > 5
    assert len(reader.slept) >= result.rate_limited  # every 429 waited before retrying
    assert all(0 <= s <= 30 for s in reader.slept)


def test_persistent_429_gives_up_with_stripe_error_and_keeps_committed_pages(standin, make_reader, state_store):
    import stripe

    standin.load(charge(i, 1_760_000_000 + i) for i in range(150))
    standin.faults.fail_next(1000, status=429)
    with pytest.raises(stripe.RateLimitError):
        backfill(make_reader(max_rate_limit_retries=2, concurrency=1), state_store, ["charge"],
                 1_759_000_000, 1_761_000_000)
    assert table_rows(state_store, schema.charges) == []


def test_rerunning_a_window_is_safe_and_flags_vanished_customers(standin, make_reader, state_store):
    start = 1_760_000_000
    standin.load([customer("cus_a", start + 10, "a@example.com"), customer("cus_b", start + 20, "b@example.com")])
    backfill(make_reader(), state_store, ["customer"], start, start + DAY)
    standin.delete("customer", "cus_b")
    result = backfill(make_reader(), state_store, ["customer"], start, start + DAY)
    flags = {r["id"]: r["deleted"] for r in table_rows(state_store, schema.customers)}
    assert flags == {"cus_a": False, "cus_b": True}
    assert result.deleted == 1


def _initial_sync(standin, make_reader, state_store, now):
    standin.load([customer("cus_1", now - 5 * DAY, "old@example.com")])
    standin.emit("customer.created", customer("cus_1", now - 5 * DAY, "old@example.com"), created=now - 5 * DAY)
    return sync_changes(make_reader(), state_store, clock=lambda: now)


def test_first_run_full_syncs_and_starts_cursor_at_newest_event(standin, make_reader, state_store):
    now = int(time.time())
    result = _initial_sync(standin, make_reader, state_store, now)
    assert result.mode == "initial_full_sync"
    assert result.cursor["created"] == now - 5 * DAY == result.cursor["baseline"]
    assert [r["email"] for r in table_rows(state_store, schema.customers)] == ["old@example.com"]
    assert state_store.cursors.get(EVENTS_CURSOR)["created"] == now - 5 * DAY


def test_cursor_age_is_measured_on_the_events_clock(standin, make_reader, state_store):
    """A server whose clock (events and Date header) runs a year behind ours is read incrementally."""
    simulated = int(time.time()) - 365 * DAY
    standin.now = simulated + 120
    standin.load([customer("cus_1", simulated - DAY, "a@example.com")])
    standin.emit("customer.created", customer("cus_1", simulated - DAY, "a@example.com"), created=simulated)
    assert sync_changes(make_reader(), state_store).mode == "initial_full_sync"
    standin.now = simulated + 300
    standin.emit("customer.updated", customer("cus_1", simulated - DAY, "b@example.com"), created=simulated + 200)
    result = sync_changes(make_reader(), state_store)
    assert result.mode == "incremental"  # not "resync_cursor_expired" by our clock
    assert table_rows(state_store, schema.customers)[0]["email"] == "b@example.com"


def test_change_feed_applies_newest_and_ignores_older_snapshot_arriving_later(standin, make_reader, state_store):
    now = int(time.time())
    _initial_sync(standin, make_reader, state_store, now)
    newer = customer("cus_1", now - 5 * DAY, "new@example.com")
    older = customer("cus_1", now - 5 * DAY, "stale@example.com")
    # Event times come after the initial listing (its snapshots are versioned at listing time).
    standin.emit("customer.updated", newer, created=now + 100, previous_attributes={"email": "old@example.com"})
    result = sync_changes(make_reader(), state_store, clock=lambda: now + 150)
    assert result.mode == "incremental" and result.events_applied >= 1
    # An older snapshot is delivered late (Stripe does not guarantee order).
    standin.emit("customer.updated", older, created=now + 50, previous_attributes={"email": "old@example.com"})
    standin.load([newer])  # the object itself stays at its newest state
    result = sync_changes(make_reader(), state_store, clock=lambda: now + 200)
    assert result.stats.stale["customer"] == 1
    assert table_rows(state_store, schema.customers)[0]["email"] == "new@example.com"


def test_replayed_events_are_deduped_by_id(standin, make_reader, state_store):
    now = int(time.time())
    _initial_sync(standin, make_reader, state_store, now)
    standin.emit("customer.updated", customer("cus_1", now - 5 * DAY, "x@example.com"), created=now + 50)
    first = sync_changes(make_reader(), state_store, clock=lambda: now + 60)
    second = sync_changes(make_reader(), state_store, clock=lambda: now + 61)
    assert first.events_new >= 1 and second.events_new == 0 and second.events_duplicate >= 1
    ledger = table_rows(state_store, schema.stripe_events)
    assert len(ledger) == len({e["id"] for e in ledger})


def test_deleted_customer_is_marked(standin, make_reader, state_store):
    now = int(time.time())
    _initial_sync(standin, make_reader, state_store, now)
    gone = customer("cus_1", now - 5 * DAY, "old@example.com")
    standin.emit("customer.deleted", copy.deepcopy(gone), created=now + 30)
    sync_changes(make_reader(), state_store, clock=lambda: now + 60)
    (row,) = table_rows(state_store, schema.customers)
    assert row["deleted"] is True


def test_events_before_first_sync_are_history_not_pending(standin, make_reader, state_store):
    now = int(time.time())
    standin.load([customer("cus_1", now - 5 * DAY, "a@example.com")])
    standin.emit("customer.created", customer("cus_1", now - 5 * DAY, "a@example.com"), created=now - 300)
    standin.emit("customer.updated", customer("cus_1", now - 5 * DAY, "a@example.com"), created=now - 60)
    sync_changes(make_reader(), state_store, clock=lambda: now)  # cursor at now-60, overlap re-reads now-300
    standin.emit("customer.updated", customer("cus_1", now - 5 * DAY, "b@example.com"), created=now + 5)
    sync_changes(make_reader(), state_store, clock=lambda: now + 10)
    status = {r["created"]: r["track_status"] for r in table_rows(state_store, schema.stripe_events)}
    assert status == {now - 300: "historical", now - 60: "historical", now + 5: "pending"}


def test_cursor_older_than_30_days_falls_back_to_relisting(standin, make_reader, state_store):
    now = int(time.time())
    _initial_sync(standin, make_reader, state_store, now)
    state_store.cursors.set(EVENTS_CURSOR, {"created": now - 40 * DAY, "baseline": now - 60 * DAY})
    standin.load([customer("cus_2", now - DAY, "two@example.com")])  # created while we were away, no event kept
    result = sync_changes(make_reader(), state_store, clock=lambda: now)
    assert result.mode == "resync_cursor_expired"
    assert "30-day" in result.note
    assert {r["id"] for r in table_rows(state_store, schema.customers)} == {"cus_1", "cus_2"}
    assert state_store.cursors.get(EVENTS_CURSOR)["created"] >= now - 5 * DAY


def test_malformed_object_is_reported_and_the_rest_committed(standin, make_reader, state_store):
    from s2s_pipeline.extract.results import PartialSyncError

    bad = charge(2, 1_760_000_100)
    del bad["status"]
    standin.load([charge(1, 1_760_000_000), bad])
    result = backfill(make_reader(), state_store, ["charge"], 1_759_000_000, 1_761_000_000)
    assert [r["id"] for r in table_rows(state_store, schema.charges)] == ["ch_00001"]
    with pytest.raises(PartialSyncError, match="ch_00002.*'status'"):
        result.raise_if_malformed()


def invoice(status: str, created: int) -> dict:
    return {"id": "in_1", "object": "invoice", "customer": "cus_1", "status": status, "currency": "usd",
            "amount_due": 500, "amount_paid": 500 if status == "paid" else 0, "created": created}


def test_events_in_the_same_second_are_resolved_by_refetching(standin, make_reader, state_store):
    """Stripe emits invoice.created/finalized/paid in one second; event order cannot tell the final state."""
    now = int(time.time())
    _initial_sync(standin, make_reader, state_store, now)
    standin.emit("invoice.paid", invoice("paid", now), created=now + 100)
    standin.emit("invoice.created", invoice("draft", now), created=now + 100)
    standin.load([invoice("paid", now)])  # what Stripe holds now
    for _ in range(3):  # whatever the ids, the result is the same
        result = sync_changes(make_reader(), state_store, clock=lambda: now + 150)
    (row,) = table_rows(state_store, schema.invoices)
    assert row["status"] == "paid"
    retrieves = [r for r in standin.requests if r["path"] == "/v1/invoices/in_1"]
    assert len(retrieves) == 1 and result.events_new == 0


def test_event_tying_with_the_stored_version_is_refetched(standin, make_reader, state_store):
    now = int(time.time())
    _initial_sync(standin, make_reader, state_store, now)
    stored_version = state_store.mirror.versions("customer", ["cus_1"])["cus_1"]
    stale = customer("cus_1", now - 5 * DAY, "stale@example.com")
    standin.emit("customer.updated", stale, created=stored_version)
    standin.load([customer("cus_1", now - 5 * DAY, "current@example.com")])
    sync_changes(make_reader(), state_store, clock=lambda: stored_version + 60)
    assert table_rows(state_store, schema.customers)[0]["email"] == "current@example.com"


def test_listed_snapshots_are_versioned_on_stripes_clock(standin, make_reader, state_store):
    """The response's Date header (Stripe's clock), not the local clock, versions a listing."""
    standin.load([customer("cus_1", 1_760_000_000, "a@example.com")])
    reader = make_reader()
    reader._clock = lambda: 5_000_000_000.0  # a local clock far ahead of Stripe's
    backfill(reader, state_store, ["customer"], 1_759_000_000, 1_761_000_000)
    version = state_store.mirror.versions("customer", ["cus_1"])["cus_1"]
    assert abs(version - time.time()) < 120


def _refusing(reader, param):
    """A server that answers 400 to a parameter real Stripe accepts (some Stripe-compatible stand-ins do)."""
    import stripe

    real = reader._get

    def get(path, params, what):
        if param in params:
            raise stripe.InvalidRequestError(f"Received unknown parameter: {param}", param, http_status=400)
        return real(path, params, what)

    reader._get = get
    return reader


def _per_unit_price() -> dict:
    return {"id": "price_t", "object": "price", "currency": "usd", "billing_scheme": "per_unit",
            "unit_amount": 500, "recurring": {"interval": "month", "interval_count": 1}, "created": 1_760_000_000}


def test_server_without_expand_still_mirrors_everything(standin, make_reader, state_store):
    """A stand-in that cannot expand, configured as such (expand_unsupported), is listed without expand."""
    standin.load([_per_unit_price(), customer("cus_1", 1_760_000_000, "a@example.com")])
    reader = _refusing(make_reader(expand_unsupported=True), "expand")
    result = backfill(reader, state_store, ["price", "customer"], 1_759_000_000, 1_761_000_000)
    assert result.listed == {"price": 1, "customer": 1}
    assert [r["unit_amount"] for r in table_rows(state_store, schema.prices)] == [500]


def test_refused_expand_fails_the_backfill_naming_the_parameter(standin, make_reader, state_store):
    """Not configured as a stand-in: a refused expansion is an error, not a silent listing without tiers."""
    from s2s_pipeline.stripe.errors import ExpansionRefused

    standin.load([_per_unit_price()])
    with pytest.raises(ExpansionRefused, match=r"expand parameter \['data.tiers', 'data.currency_options'\] while reading prices"):
        backfill(_refusing(make_reader(), "expand"), state_store, ["price"], 1_759_000_000, 1_761_000_000)
    assert not [r for r in standin.requests if r["path"] == "/v1/prices"]  # never listed without expand
    assert table_rows(state_store, schema.prices) == []


def _subscription_with_coupon(quantity: int, expanded: bool, discounts: tuple[str, ...] = ("di_1",)) -> dict:
    coupon = {"id": "co_20", "object": "coupon", "duration": "forever", "percent_off": 20.0, "valid": True}

    def discount(did: str) -> dict | str:
        return {"id": did, "object": "discount", "start": 1, "end": None,
                "source": {"type": "coupon", "coupon": coupon if expanded else "co_20"}} if expanded else did

    return {"id": "sub_c", "object": "subscription", "customer": "cus_1", "status": "active", "created": 100,
            "currency": "usd", "discounts": [discount(d) for d in discounts],
            "items": {"data": [{"id": "si_1", "quantity": quantity, "current_period_end": 2_000_000_000,
                                "discounts": [],
                                "price": {"id": "price_m", "object": "price", "currency": "usd",
                                          "unit_amount": 10000, "billing_scheme": "per_unit",
                                          "recurring": {"interval": "month", "interval_count": 1}}}]}}


def _subscription_fetches(standin, since: int) -> list[str]:
    return [r["path"] for r in standin.requests[since:] if r["path"].startswith("/v1/subscriptions/")]


def test_subscription_event_naming_mirrored_discounts_keeps_their_coupon_without_a_refetch(
        standin, make_reader, state_store):
    """Event payloads name discounts by id. The first sync mirrored di_1 with its coupon (listings are
    expanded), so the seats update (quantity 1 -> 2) is applied from the event, di_1 keeping co_20 and its
    start, and the subscription is not fetched again."""
    now = int(time.time())
    standin.load([customer("cus_1", now - DAY, "a@example.com"), _subscription_with_coupon(1, True)])
    standin.emit("customer.created", customer("cus_1", now - DAY, "a@example.com"), created=now - DAY)
    sync_changes(make_reader(), state_store, clock=lambda: now)
    standin.emit("customer.subscription.updated", _subscription_with_coupon(2, True), created=now + 100,
                 previous_attributes={"items": _subscription_with_coupon(1, True)["items"]})
    before = len(standin.requests)
    result = sync_changes(make_reader(), state_store, clock=lambda: now + 200)
    assert result.references_fetched == 0 and _subscription_fetches(standin, before) == []
    (item,) = table_rows(state_store, schema.subscription_items)
    (discount,) = table_rows(state_store, schema.discounts)
    assert item["quantity"] == 2
    assert (discount["id"], discount["coupon"], discount["start"], discount["subscription"]) == ("di_1", "co_20", 1,
                                                                                                 "sub_c")


def test_subscription_event_naming_a_discount_not_mirrored_is_fetched_again(standin, make_reader, state_store):
    """The update adds di_2, which the mirror does not hold: its coupon cannot be priced from the payload,
    so the subscription is fetched again (expanded) instead of storing di_2 without a coupon."""
    now = int(time.time())
    standin.load([customer("cus_1", now - DAY, "a@example.com"), _subscription_with_coupon(1, True)])
    standin.emit("customer.created", customer("cus_1", now - DAY, "a@example.com"), created=now - DAY)
    sync_changes(make_reader(), state_store, clock=lambda: now)
    standin.emit("customer.subscription.updated", _subscription_with_coupon(2, True, ("di_1", "di_2")),
                 created=now + 100, previous_attributes={"items": _subscription_with_coupon(1, True)["items"]})
    before = len(standin.requests)
    result = sync_changes(make_reader(), state_store, clock=lambda: now + 200)
    assert result.references_fetched >= 1 and _subscription_fetches(standin, before) == ["/v1/subscriptions/sub_c"]
    (item,) = table_rows(state_store, schema.subscription_items)
    discounts = sorted((d["id"], d["coupon"]) for d in table_rows(state_store, schema.discounts))
    assert item["quantity"] == 2 and discounts == [("di_1", "co_20"), ("di_2", "co_20")]


def test_charge_snapshots_keep_the_shape_of_their_events_api_version(state_store):
    """A pre-basil ``charge.captured`` counts the released remainder in ``amount_refunded``; a pinned one does not.

    Both charges: $100 authorized, $60 captured. Before 2025-03-31.basil the release was a Refund in
    ``amount_refunded``: 4000, then + a $10 refund = 5000 -> refunded after capture 5000 - 4000 = 1000,
    LTV (6000 - 1000)/100 = 50.00, refund_rate 1000/6000 = 0.16666 -> 0.1667 (read as the pinned shape
    it would be 5000 refunded: 10.00). Since basil ``amount_refunded`` holds only the refund: a $30
    refund is 3000 -> LTV 30.00, refund_rate 3000/6000 = 0.5.
    """
    from s2s_pipeline.extract.change_feed import apply_events
    from s2s_pipeline.extract.results import SyncResult
    from s2s_pipeline.traits.config import TraitsConfig
    from s2s_pipeline.traits.customer_traits import compute_customer_traits
    from s2s_pipeline.traits.loading import load_mirror_frames

    now = 1_767_225_600
    old_charge = {**charge(1, now - DAY, customer="cus_old"), "amount": 10000, "amount_captured": 6000,
                  "amount_refunded": 5000}
    new_charge = {**charge(2, now - DAY, customer="cus_new"), "amount": 10000, "amount_captured": 6000,
                  "amount_refunded": 3000}

    def event(eid: str, type_: str, obj: dict, api_version: str) -> dict:
        return {"id": eid, "object": "event", "api_version": api_version, "created": now, "type": type_,
                "data": {"object": obj}, "livemode": False}

    def no_refetch(object_type, object_id):
        raise AssertionError(f"unexpected refetch of {object_type} {object_id}")

    events = [event("evt_1", "customer.created", customer("cus_old", now - 2 * DAY, "o@example.com"), "2024-06-20"),
              event("evt_2", "customer.created", customer("cus_new", now - 2 * DAY, "n@example.com"), API_VERSION),
              event("evt_3", "charge.refunded", old_charge, "2024-06-20"),
              event("evt_4", "charge.refunded", new_charge, API_VERSION)]
    apply_events(state_store, events, {}, now, SyncResult(mode="incremental"), no_refetch)

    flags = {r["id"]: r["amount_refunded_includes_releases"] for r in table_rows(state_store, schema.charges)}
    assert flags == {"ch_00001": True, "ch_00002": False}
    traits = compute_customer_traits(load_mirror_frames(state_store.mirror), TraitsConfig(), now)
    table = traits.set_index("stripe_customer_id")
    assert table.loc["cus_old", ["lifetime_value", "refund_rate"]].tolist() == [50.0, 0.1667]
    assert table.loc["cus_new", ["lifetime_value", "refund_rate"]].tolist() == [30.0, 0.5]
