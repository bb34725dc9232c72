"""Smoke test: our Stripe reader and sync against localstripe, a fake Stripe we did not write.

localstripe 1.15.10 speaks API 2017-08-15 shapes (``plan`` and
``current_period_*`` on the subscription and its items, ``invoice.charge``),
so this also checks that the normaliser tolerates older shapes. It is not the
reference for Stripe's behaviour; quirks met here are noted where they matter:

- no ``/v1/prices``: plans instead (mirrored as prices via the items' embedded
  ``plan``); no ``/v1/disputes``;
- lists are oldest-first (ours are written for newest-first), and
  ``created[gte]``/``created[lt]`` are rejected by most lists ("Unexpected
  created"), so ``backfill()`` cannot run against it; ``sync_changes`` lists
  without a window on the first run and works;
- subscriptions have ``discount``, not ``discounts``: our list's
  ``expand=data.discounts`` is answered "400 Bad expand 'discounts'", which
  fails the read (see ``test_refused_expand_fails_the_sync_naming_it``), so the
  reader is configured with ``expand_unsupported=True``, as an operator would
  for such a stand-in;
- the first page of ``GET /v1/events`` holds the *oldest* events; the first
  sync's cursor and history baseline still start at Stripe's clock (the
  response's Date header), so seed events are history, but the next sync's
  overlap re-reads them all (they are seconds old);
- events: ``customer.created/updated/deleted``, ``customer.subscription.created
  /deleted``, ``invoice.created/payment_succeeded``, ``plan.created``,
  ``product.created`` … but never ``customer.subscription.updated``,
  ``charge.*`` or ``refund.*``;
- every object and event of a fast test is created within the same second or
  two, so event snapshots and listed snapshots tie on ``version_ts``. After
  the incremental sync only what does not depend on how those ties resolve is
  asserted (see the comment there).
"""

from __future__ import annotations

import pytest
import stripe
from sqlalchemy import select

from s2s_pipeline.extract.change_feed import EVENTS_CURSOR, sync_changes
from s2s_pipeline.store import schema
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.errors import ExpansionRefused
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_devtools.fakes.localstripe_server import localstripe_url, reset_localstripe  # noqa: F401 - fixture

pytestmark = [pytest.mark.localstripe, pytest.mark.timeout(60)]

API_KEY = "sk_test_smoke"

#: What localstripe can list (no prices, disputes).
OBJECT_TYPES = ["product", "coupon", "customer", "subscription", "invoice", "charge", "refund"]

PLAN_ID = "plan_pro_monthly"
PLAN_AMOUNT = 2000


@pytest.fixture
def ls(localstripe_url):  # noqa: F811 - the imported fixture
    """An emptied localstripe and a stripe-python client for seeding it."""
    reset_localstripe(localstripe_url)
    client = stripe.StripeClient(API_KEY, base_addresses={"api": localstripe_url}, max_network_retries=0)
    return localstripe_url, client


def _reader(url: str, *, expand_unsupported: bool = True) -> StripeReader:
    """A reader for localstripe; page_size=2 forces several pages per type (starting_after paging).

    localstripe's 2017 subscriptions have ``discount``, not ``discounts``, and
    it answers our ``expand=["data.discounts", "data.items.data.discounts"]``
    with 400 "Bad expand 'discounts'". Real Stripe at the pinned API version has
    the field, so the reader is right to ask; here it is told explicitly that
    the server cannot expand.
    """
    return StripeReader(StripeSettings(api_key=API_KEY, api_base=url, rate_limit=1000.0,
                                       max_network_retries=0, page_size=2, expand_unsupported=expand_unsupported))


def test_refused_expand_fails_the_sync_naming_it(ls, tmp_path):
    url, client = ls
    _seed(client)
    store = StateStore(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    with pytest.raises(ExpansionRefused, match=r"expand parameter \['data.discounts.source.coupon', 'data.items.data.discounts'\]"):
        sync_changes(_reader(url, expand_unsupported=False), store, object_types=["subscription"])


def _rows(store: StateStore, table) -> dict[str, dict]:
    with store.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(select(table))}


def _customer_with_card(client: stripe.StripeClient, email: str, metadata: dict) -> tuple[str, str]:
    cus = client.v1.customers.create(params={"email": email, "name": email.split("@")[0].title(),
                                             "metadata": metadata})
    # localstripe turns the test id pm_card_visa into a new pm_ object on each use.
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return cus.id, pm.id


def _seed(client: stripe.StripeClient) -> dict:
    """Customers, catalogue, subscriptions in three states, charges with refunds."""
    product = client.v1.products.create(params={"name": "Pro", "metadata": {"line": "core"}})
    client.v1.plans.create(params={"id": PLAN_ID, "amount": PLAN_AMOUNT, "currency": "usd",
                                   "interval": "month", "product": product.id, "nickname": "Pro monthly"})
    coupon = client.v1.coupons.create(params={"id": "SMOKE10", "percent_off": 10, "duration": "forever"})

    people = {
        "alice": ("alice@example.com", {"tier": "gold", "crm_id": "A-1"}, 3),
        "bob": ("bob@example.com", {"tier": "silver"}, 1),
        "carol": ("carol@example.com", {}, 1),
    }
    customers, pms, subs = {}, {}, {}
    for who, (email, metadata, quantity) in people.items():
        customers[who], pms[who] = _customer_with_card(client, email, metadata)
        subs[who] = client.v1.subscriptions.create(
            params={"customer": customers[who], "items": [{"plan": PLAN_ID, "quantity": quantity}]})
    client.v1.subscriptions.update(subs["bob"].id, params={"cancel_at_period_end": True})
    client.v1.subscriptions.cancel(subs["carol"].id)

    partial = client.v1.charges.create(params={"amount": 5000, "currency": "usd", "customer": customers["alice"]})
    full = client.v1.charges.create(params={"amount": 2500, "currency": "usd", "customer": customers["bob"]})
    refund_partial = client.v1.refunds.create(params={"charge": partial.id, "amount": 1000})
    refund_full = client.v1.refunds.create(params={"charge": full.id})

    # What the server itself reports (read with stripe-python, not our reader).
    subs_now = {who: client.v1.subscriptions.retrieve(s.id).to_dict() for who, s in subs.items()}
    invoices = {who: client.v1.invoices.retrieve(s["latest_invoice"]).to_dict() for who, s in subs_now.items()}
    return {
        "people": people, "customers": customers, "pms": pms, "subs": subs_now, "invoices": invoices,
        "product": product.id, "coupon": coupon.id,
        "direct_charges": {"partial": partial.id, "full": full.id},
        "refunds": {"partial": refund_partial.id, "full": refund_full.id},
    }


def test_sync_changes_mirrors_localstripe(ls, tmp_path):
    url, client = ls
    seeded = _seed(client)
    store = StateStore(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))

    # -- first run: no cursor, so every object is listed -------------------------
    result = sync_changes(_reader(url), store, object_types=OBJECT_TYPES)
    assert result.mode == "initial_full_sync"
    assert result.malformed == []
    assert store.cursors.get(EVENTS_CURSOR) is not None

    customers = _rows(store, schema.customers)
    people, ids = seeded["people"], seeded["customers"]
    assert {c["id"]: c["email"] for c in customers.values()} == {ids[w]: people[w][0] for w in people}
    for who, (email, metadata, _) in people.items():
        row = customers[ids[who]]
        assert row["metadata"] == metadata and row["deleted"] is False
        assert row["default_payment_method"] == seeded["pms"][who]
        assert row["raw"]["object"] == "customer"

    assert set(_rows(store, schema.products)) == {seeded["product"]}
    coupons = _rows(store, schema.coupons)
    assert set(coupons) == {"SMOKE10"} and coupons["SMOKE10"]["percent_off"] == 10
    assert coupons["SMOKE10"]["duration"] == "forever"

    # No /v1/prices: the plan reaches the price table embedded in the items (legacy ``plan``).
    prices = _rows(store, schema.prices)
    assert set(prices) == {PLAN_ID}
    plan = prices[PLAN_ID]
    assert (plan["product"], plan["unit_amount"], plan["unit_amount_decimal"], plan["currency"]) == (
        seeded["product"], PLAN_AMOUNT, str(PLAN_AMOUNT), "usd")
    assert (plan["type"], plan["recurring_interval"], plan["recurring_interval_count"]) == ("recurring", "month", 1)

    subs = _rows(store, schema.subscriptions)
    seeded_subs = seeded["subs"]
    assert set(subs) == {s["id"] for s in seeded_subs.values()}
    expected_state = {"alice": ("active", False), "bob": ("active", True), "carol": ("canceled", False)}
    for who, (status, cancel_at_period_end) in expected_state.items():
        row = subs[seeded_subs[who]["id"]]
        assert (row["customer"], row["status"], row["cancel_at_period_end"]) == (ids[who], status, cancel_at_period_end)
        assert row["latest_invoice"] == seeded_subs[who]["latest_invoice"]
    assert subs[seeded_subs["carol"]["id"]]["ended_at"] is not None

    items = _rows(store, schema.subscription_items)
    assert len(items) == 3
    for who, (_, _, quantity) in people.items():
        sub = seeded_subs[who]
        (item,) = [i for i in items.values() if i["subscription"] == sub["id"]]
        assert item["id"] == sub["items"]["data"][0]["id"]
        assert (item["price"], item["quantity"], item["customer"]) == (PLAN_ID, quantity, ids[who])
        # 2017 shape: the period is on the subscription, not the item.
        assert "current_period_end" not in sub["items"]["data"][0]
        assert (item["current_period_start"], item["current_period_end"]) == (
            sub["current_period_start"], sub["current_period_end"])
    assert _rows(store, schema.discounts) == {}

    invoices = _rows(store, schema.invoices)
    assert set(invoices) == {inv["id"] for inv in seeded["invoices"].values()}
    for who, inv in seeded["invoices"].items():
        row = invoices[inv["id"]]
        quantity = people[who][2]
        assert (row["customer"], row["subscription"], row["status"]) == (ids[who], seeded_subs[who]["id"], "paid")
        assert (row["amount_paid"], row["total"], row["currency"]) == (PLAN_AMOUNT * quantity,) * 2 + ("usd",)
        assert row["paid_at"] is not None

    # Charges: one per subscription invoice (localstripe pays through a
    # PaymentIntent and leaves charge.invoice null) plus the two direct ones.
    charges = _rows(store, schema.charges)
    invoice_charges = {who: inv["charge"]["id"] for who, inv in seeded["invoices"].items()}
    direct = seeded["direct_charges"]
    assert set(charges) == set(invoice_charges.values()) | set(direct.values())
    for who, charge_id in invoice_charges.items():
        row = charges[charge_id]
        assert (row["customer"], row["amount"], row["status"], row["amount_refunded"]) == (
            ids[who], PLAN_AMOUNT * people[who][2], "succeeded", 0)
        assert row["payment_intent"] is not None and row["paid"] is True
    assert {k: (charges[c]["amount"], charges[c]["amount_refunded"], charges[c]["refunded"], charges[c]["status"])
            for k, c in direct.items()} == {"partial": (5000, 1000, False, "succeeded"),
                                           "full": (2500, 2500, True, "succeeded")}
    assert charges[direct["partial"]]["customer"] == ids["alice"]
    assert charges[direct["full"]]["customer"] == ids["bob"]
    # Card secrets never reach the mirror (localstripe's charges carry no card details at all).
    assert all(row["card_brand"] is None for row in charges.values())

    refunds = _rows(store, schema.refunds)
    assert {r["id"]: (r["charge"], r["amount"], r["status"], r["currency"]) for r in refunds.values()} == {
        seeded["refunds"]["partial"]: (direct["partial"], 1000, "succeeded", "usd"),
        seeded["refunds"]["full"]: (direct["full"], 2500, "succeeded", "usd"),
    }

    # -- second run: the change feed ----------------------------------------------
    dave = client.v1.customers.create(params={"email": "dave@example.com", "metadata": {"tier": "trial"}})
    again = sync_changes(_reader(url), store, object_types=OBJECT_TYPES)
    assert again.mode == "incremental"
    assert again.malformed == []
    assert again.events_read >= again.events_new >= 1

    customers = _rows(store, schema.customers)
    assert set(customers) == set(ids.values()) | {dave.id}
    assert (customers[dave.id]["email"], customers[dave.id]["metadata"], customers[dave.id]["deleted"]) == (
        "dave@example.com", {"tier": "trial"}, False)
    # Everything mirrored before is still there, nothing more (no refund or
    # charge events exist in localstripe, and no new objects of those types).
    assert set(_rows(store, schema.subscriptions)) == set(subs)
    assert set(_rows(store, schema.charges)) == set(charges)
    assert set(_rows(store, schema.refunds)) == set(refunds)

    with store.engine.connect() as conn:
        ledger = {r.id: r for r in conn.execute(select(schema.stripe_events))}
    dave_events = [e for e in ledger.values() if e.object_id == dave.id]
    assert [(e.type, e.object_type, e.applied) for e in dave_events] == [("customer.created", "customer", True)]
    assert dave_events[0].api_version == "2017-08-15"
    types = {e.type for e in ledger.values()}
    assert {"customer.created", "customer.subscription.created", "customer.subscription.deleted",
            "invoice.created", "plan.created", "product.created"} <= types
    # Events about objects the mirror does not hold are ledgered, not applied.
    assert all(not e.applied for e in ledger.values() if e.object_type == "payment_intent")
    assert store.cursors.get(EVENTS_CURSOR)["created"] >= ledger[dave_events[0].id].created
    # Objects seeded before the first run keep their state although this run
    # re-read every seed event (they are inside the overlap window): snapshots
    # tying with the listing's version (or with each other) are re-fetched, not
    # applied in event-id order.
    subs_after = _rows(store, schema.subscriptions)
    assert subs_after[seeded_subs["carol"]["id"]]["status"] == "canceled"
    assert subs_after[seeded_subs["bob"]["id"]]["cancel_at_period_end"] is True
    customers_after = _rows(store, schema.customers)
    assert all(customers_after[ids[w]]["default_payment_method"] == seeded["pms"][w] for w in people)
