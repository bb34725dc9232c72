"""The demo account generator: a believable year of a SaaS business in Stripe.

The pipeline's demo, tests and benchmarks rely on it containing every
business scenario the traits and track events must handle, on its objects
pointing at each other the way Stripe's do (current API shapes), and on its
events telling the same story as the final objects.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
import stripe

from s2s_devtools.demo.generator import SCRIPTED_COUNT, DemoAccount, generate_account, price_amount, seed_standin
from s2s_devtools.fakes.stripe import StripeStandIn

NOW = 1_790_000_000  # 2026-09-21
DAY = 86400


@pytest.fixture(scope="module")
def account() -> DemoAccount:
    return generate_account(customers=300, seed=7, now=NOW)


def of(account: DemoAccount, kind: str) -> list[dict]:
    return account.of_type(kind)


def event_object_type(event_type: str) -> str:
    """Which object an event type carries in ``data.object`` (Stripe's naming)."""
    if event_type.startswith("customer.subscription."):
        return "subscription"
    if event_type.startswith("charge.dispute."):
        return "dispute"
    if event_type.startswith("charge.refund."):
        return "refund"
    return event_type.rsplit(".", 1)[0]


def test_same_seed_and_now_give_the_same_account():
    a = generate_account(customers=60, seed=11, now=NOW)
    b = generate_account(customers=60, seed=11, now=NOW)
    c = generate_account(customers=60, seed=12, now=NOW)
    assert json.dumps(a.objects) == json.dumps(b.objects)
    assert json.dumps(a.events) == json.dumps(b.events)
    assert json.dumps(a.objects) != json.dumps(c.objects)


def account_digest(account: DemoAccount) -> str:
    """SHA-256 of the account as JSON, key order included: any change to what is generated changes it."""
    h = hashlib.sha256()
    h.update(json.dumps({"now": account.now, "seed": account.seed}).encode())
    h.update(json.dumps(account.objects, ensure_ascii=False).encode())
    h.update(json.dumps(account.events, ensure_ascii=False).encode())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("params", "digest"),
    [
        (dict(customers=300, seed=7), "1064f673720dc543a872c673ab046e061151a09e222946907ab24e6bf89d8bdf"),
        (
            dict(customers=60, seed=11, months=18, events_since=NOW - 30 * DAY),
            "7d803255d61d1b21e1960f5f80825697cd07c8e3958e0b3ada60c9b19dd94ab6",
        ),
    ],
)
def test_a_fixed_seed_gives_byte_for_byte_the_pinned_account(params, digest):
    # Pinned so that restructuring the generator cannot silently change the
    # demo account; update the digest only when the simulation is meant to change.
    assert account_digest(generate_account(now=NOW, **params)) == digest


def test_demo_size_account_has_every_customer():
    # Generation speed is measured by bench/extract_bench.py, not asserted here.
    big = generate_account(customers=300, seed=1, now=NOW)
    assert len(of(big, "customer")) == 300


@pytest.mark.parametrize("n", [0, 1, 5])
def test_tiny_accounts(n):
    a = generate_account(customers=n, now=NOW)
    assert len(of(a, "customer")) == n
    assert of(a, "price") and of(a, "coupon")


def test_every_scenario_is_present(account):
    customers = {c["id"]: c for c in of(account, "customer")}
    subs = of(account, "subscription")
    charges = of(account, "charge")
    refunds = of(account, "refund")
    invoices = of(account, "invoice")

    currencies = Counter(c["currency"] for c in customers.values())
    assert currencies["jpy"] >= 1 and currencies["eur"] >= 1 and currencies["gbp"] >= 1 and currencies["usd"] >= 1
    assert currencies[None] >= 1  # signed up, never bought
    assert len(customers) == 300

    statuses = Counter(s["status"] for s in subs)
    for status in ("active", "trialing", "past_due", "canceled", "paused"):
        assert statuses[status] >= 1, status
    assert any(s["cancel_at_period_end"] and s["status"] == "active" for s in subs)
    assert all(s["ended_at"] for s in subs if s["status"] == "canceled")
    assert any(s["pause_collection"] for s in subs)

    # failed payments: a failed charge with its reason, an open invoice that was attempted
    failed = [c for c in charges if c["status"] == "failed"]
    assert failed and all(c["failure_code"] and c["failure_message"] and not c["paid"] for c in failed)
    assert any(i["status"] == "open" and i["attempt_count"] > 0 and i["next_payment_attempt"] for i in invoices)
    assert any(c["delinquent"] for c in customers.values())
    # recovered: a subscription invoice paid on a later attempt
    assert any(i["status"] == "paid" and i["attempt_count"] > 1 for i in invoices)

    partial = [c for c in charges if 0 < c["amount_refunded"] < c["amount_captured"]]
    full = [c for c in charges if c["refunded"]]
    assert partial and full
    assert all(c["amount_refunded"] == c["amount_captured"] for c in full)
    assert not any(c["refunded"] for c in partial)
    assert len(refunds) >= 2
    assert len(of(account, "dispute")) >= 1
    assert any(c["disputed"] for c in charges)

    # zero-decimal: JPY amounts are whole yen
    jpy_starter = [
        it["price"]["unit_amount"]
        for s in subs
        if s["currency"] == "jpy"
        for it in s["items"]["data"]
        if it["price"]["nickname"] == "Starter Monthly"
    ]
    assert 3000 in jpy_starter
    assert any(c["currency"] == "jpy" and c["amount"] == 3000 for c in charges)

    coupons = {c["id"]: c for c in of(account, "coupon")}
    durations = {c["duration"] for c in coupons.values()}
    assert {"forever", "repeating", "once"} <= durations
    assert all(c["duration_in_months"] for c in coupons.values() if c["duration"] == "repeating")
    sub_discounts = [d for s in subs for d in s["discounts"]]
    item_discounts = [d for s in subs for it in s["items"]["data"] for d in it["discounts"]]
    applied = {d["source"]["coupon"]["duration"] for d in sub_discounts + item_discounts}
    assert {"forever", "repeating"} <= applied
    assert item_discounts and all(d["subscription_item"] for d in item_discounts)
    for d in sub_discounts + item_discounts:
        assert d["source"]["type"] == "coupon" and d["source"]["coupon"]["object"] == "coupon"
        assert (d["end"] is not None) == (d["source"]["coupon"]["duration"] == "repeating")

    prices = of(account, "price")
    assert any(p["tiers_mode"] == "graduated" and p["tiers"] for p in prices)
    assert any(p["tiers_mode"] == "volume" and p["tiers"] for p in prices)
    assert any(p["recurring"]["interval"] == "year" for p in prices)
    metered_items = [
        it for s in subs for it in s["items"]["data"] if it["price"]["recurring"]["usage_type"] == "metered"
    ]
    assert metered_items and all("quantity" not in it for it in metered_items)
    assert any(it["price"]["tiers_mode"] for s in subs for it in s["items"]["data"])

    meta = [c["metadata"] for c in customers.values()]
    assert any("company_id" in m and "company_name" in m for m in meta)
    assert any("segment_user_id" in m for m in meta)
    assert any("user_id" in m for m in meta)
    assert any(not m for m in meta)

    # one-off charges that belong to no invoice, including a failed one
    invoiced_pis = {ip["payment"]["payment_intent"] for ip in of(account, "invoice_payment")}
    lone = [c for c in charges if c["payment_intent"] not in invoiced_pis]
    assert any(c["status"] == "failed" for c in lone) and any(c["status"] == "succeeded" for c in lone)

    types = Counter(e["type"] for e in account.events)
    for t in (
        "customer.created",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "charge.succeeded",
        "charge.failed",
        "charge.refunded",
        "refund.created",
        "charge.dispute.created",
        "price.created",
        "product.created",
        "coupon.created",
    ):
        assert types[t] >= 1, t


def test_scripted_scenarios_survive_small_accounts():
    small = generate_account(customers=SCRIPTED_COUNT, seed=99, now=NOW)
    statuses = {s["status"] for s in of(small, "subscription")}
    assert {"active", "trialing", "past_due", "canceled", "paused"} <= statuses
    assert of(small, "dispute") and any(c["currency"] == "jpy" for c in of(small, "customer"))


def test_current_api_shapes(account):
    for s in of(account, "subscription"):
        assert "current_period_end" not in s and "current_period_start" not in s
        for it in s["items"]["data"]:
            assert it["current_period_start"] < it["current_period_end"]
            assert it["object"] == "subscription_item" and it["subscription"] == s["id"]
    for i in of(account, "invoice"):
        assert i["parent"]["type"] == "subscription_details"
        assert i["parent"]["subscription_details"]["subscription"].startswith("sub_")
        for gone in ("subscription", "charge", "payment_intent", "paid", "discount"):
            assert gone not in i
    for c in of(account, "charge"):
        assert "invoice" not in c
        assert c["payment_method_details"]["type"] == "card" and c["payment_method_details"]["card"]["brand"]
        for f in ("amount_captured", "amount_refunded", "paid", "captured", "refunded", "balance_transaction", "billing_details"):
            assert f in c
    for d in [d for s in of(account, "subscription") for d in s["discounts"]]:
        assert "coupon" not in d
    prefixes = {
        "customer": "cus_", "subscription": "sub_", "invoice": "in_", "charge": "ch_", "payment_intent": "pi_",
        "refund": "re_", "dispute": "dp_", "price": "price_", "product": "prod_", "invoice_payment": "inpay_",
    }  # fmt: skip
    for o in account.objects:
        if o["object"] in prefixes:
            assert o["id"].startswith(prefixes[o["object"]])
    assert all(e["id"].startswith("evt_") for e in account.events)
    ids = [o["id"] for o in account.objects] + [e["id"] for e in account.events]
    assert len(ids) == len(set(ids))


def test_references_resolve(account):
    by_id = account.by_id()
    for kind in ("subscription", "invoice", "charge", "payment_intent"):
        for o in of(account, kind):
            assert by_id[o["customer"]]["object"] == "customer", (kind, o["id"])
    for o in of(account, "invoice"):
        assert by_id[o["parent"]["subscription_details"]["subscription"]]["customer"] == o["customer"]
    for o in of(account, "refund") + of(account, "dispute"):
        charge = by_id[o["charge"]]
        assert charge["payment_intent"] == o["payment_intent"] and charge["currency"] == o["currency"]
    for s in of(account, "subscription"):
        if s["latest_invoice"]:
            assert by_id[s["latest_invoice"]]["object"] == "invoice"
        for it in s["items"]["data"]:
            assert by_id[it["price"]["id"]]["object"] == "price"
    for p in of(account, "price"):
        assert by_id[p["product"]]["object"] == "product"


def test_invoice_payment_chain_links_charges_to_invoices(account):
    """charge -> payment_intent <- invoice_payment -> invoice (no Charge.invoice any more)."""
    by_id = account.by_id()
    for ip in of(account, "invoice_payment"):
        invoice = by_id[ip["invoice"]]
        pi = by_id[ip["payment"]["payment_intent"]]
        assert ip["payment"]["type"] == "payment_intent"
        assert [p["id"] for p in invoice["payments"]["data"]] == [ip["id"]]
        if invoice["attempt_count"] == 0:
            # finalized, first attempt not made yet (it comes about an hour later)
            assert pi["latest_charge"] is None and invoice["status"] == "open"
            continue
        charge = by_id[pi["latest_charge"]]
        assert charge["payment_intent"] == pi["id"] and charge["customer"] == invoice["customer"]
        if invoice["status"] == "paid":
            assert ip["status"] == "paid" and ip["amount_paid"] == invoice["amount_paid"] == charge["amount"]
            assert charge["status"] == "succeeded" and pi["status"] == "succeeded"
        else:
            assert ip["status"] == "open" and charge["status"] == "failed"
            assert pi["last_payment_error"]["code"] == charge["failure_code"]


def test_invoice_amounts_add_up(account):
    for i in of(account, "invoice"):
        assert sum(line["amount"] for line in i["lines"]["data"]) == i["subtotal"]
        assert i["total"] == i["subtotal"] - sum(d["amount"] for d in i["total_discount_amounts"])
        assert i["amount_due"] == i["total"] >= 0
        assert i["amount_paid"] + i["amount_remaining"] == i["amount_due"] or i["status"] == "paid"
        if i["status"] == "paid":
            assert i["amount_paid"] == i["total"] and i["status_transitions"]["paid_at"]


def test_price_amount_follows_stripe_tiering():
    graduated = {
        "billing_scheme": "tiered",
        "tiers_mode": "graduated",
        "tiers": [
            {"up_to": 5, "unit_amount": 2500, "flat_amount": 1000},
            {"up_to": 20, "unit_amount": 2000, "flat_amount": None},
            {"up_to": None, "unit_amount": 1500, "flat_amount": None},
        ],
    }
    assert price_amount(graduated, 3) == 3 * 2500 + 1000
    assert price_amount(graduated, 12) == 5 * 2500 + 1000 + 7 * 2000
    assert price_amount(graduated, 25) == 5 * 2500 + 1000 + 15 * 2000 + 5 * 1500
    volume = dict(graduated, tiers_mode="volume")
    assert price_amount(volume, 12) == 12 * 2000
    per_1000 = {
        "billing_scheme": "per_unit",
        "unit_amount": 200,
        "unit_amount_decimal": "200",
        "transform_quantity": {"divide_by": 1000, "round": "up"},
    }
    assert price_amount(per_1000, 1001) == 400
    assert price_amount({"billing_scheme": "per_unit", "unit_amount_decimal": "0.18"}, 1000) == 180


def test_events_have_the_right_object_and_are_in_time_order(account):
    assert account.events
    keys = [(e["created"], e["id"]) for e in account.events]
    assert keys == sorted(keys)
    for e in account.events:
        assert e["object"] == "event" and e["api_version"] == "2026-10-28.endive"
        assert e["data"]["object"]["object"] == event_object_type(e["type"]), e["type"]
        assert e["created"] <= NOW


def test_event_snapshots_tell_the_objects_story(account):
    """The newest snapshot of each object is its final state; older ones are history."""
    latest: dict[str, dict] = {}
    first: dict[str, dict] = {}
    for e in account.events:
        obj = e["data"]["object"]
        latest[obj["id"]] = obj
        first.setdefault(obj["id"], obj)
    # fields Stripe changes without an event (or that this generator does)
    quiet = {"customer": {"next_invoice_sequence"}, "coupon": {"times_redeemed"}, "charge": {"disputed"}}
    for o in account.objects:
        if o["object"] in ("payment_intent", "invoice_payment"):
            continue  # no events for these in the demo
        snap = latest[o["id"]]
        changed = {k for k in set(o) | set(snap) if o.get(k) != snap.get(k)}
        assert changed <= quiet.get(o["object"], set()), (o["object"], o["id"], changed)

    subs = of(account, "subscription")
    converted = [s for s in subs if s["trial_end"] and s["status"] == "active"]
    assert converted and all(first[s["id"]]["status"] == "trialing" for s in converted)
    updates = [e for e in account.events if e["type"] == "customer.subscription.updated"]
    conversions = [e for e in updates if e["data"]["previous_attributes"].get("status") == "trialing" and e["data"]["object"]["status"] == "active"]
    assert conversions

    # upgrades/downgrades carry the old items
    def price_and_qty(items: dict) -> list[tuple[str, int | None]]:
        return [(it["price"]["id"], it.get("quantity")) for it in items["data"]]

    moves = [
        e
        for e in updates
        if "items" in e["data"]["previous_attributes"]
        and price_and_qty(e["data"]["previous_attributes"]["items"]) != price_and_qty(e["data"]["object"]["items"])
    ]
    assert len(moves) >= 3
    failed = [e for e in account.events if e["type"] == "invoice.payment_failed"]
    assert all(e["data"]["object"]["attempt_count"] >= 1 and e["data"]["object"]["status"] == "open" for e in failed)
    refunded = [e for e in account.events if e["type"] == "charge.refunded"]
    assert all("amount_refunded" in e["data"]["previous_attributes"] for e in refunded)


def test_events_since_keeps_objects_and_drops_old_events():
    full = generate_account(customers=40, seed=5, now=NOW)
    recent = generate_account(customers=40, seed=5, now=NOW, events_since=NOW - 30 * DAY)
    assert json.dumps(recent.objects) == json.dumps(full.objects)
    assert [e["id"] for e in recent.events] == [e["id"] for e in full.events if e["created"] >= NOW - 30 * DAY]


def test_seeded_standin_serves_the_account():
    # small: the SDK takes ~1 ms to build each object it receives
    account = generate_account(customers=40, seed=3, now=NOW)
    with StripeStandIn() as standin:
        seed_standin(standin, account)
        assert standin.now == NOW
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": standin.base_url}, max_network_retries=0)
        listed = [s.id for s in client.v1.subscriptions.list(params={"limit": 100, "status": "all"}).auto_paging_iter()]
        assert sorted(listed) == sorted(s["id"] for s in of(account, "subscription"))
        events = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
        recent = [e for e in account.events if e["created"] >= NOW - 30 * DAY]
        assert len(events) == len(recent) > 0
        assert len(events) < len(account.events)  # the rest is past Stripe's 30 days


# ------------------------------------------------------- contract v2 scenarios (issue #10)


def customer_of(account: DemoAccount, **where) -> dict:
    """The one scripted customer whose objects match (the scenarios are fixed, so exactly one does)."""
    (found,) = [c for c in of(account, "customer") if all(c.get(k) == v for k, v in where.items())]
    return found


def owned(account: DemoAccount, kind: str, customer: dict) -> list[dict]:
    return [o for o in of(account, kind) if o.get("customer") == customer["id"]]


def subscription_events(account: DemoAccount, sub_id: str) -> list[dict]:
    return [e for e in account.events if e["type"].startswith("customer.subscription.") and e["data"]["object"]["id"] == sub_id]


def test_eu_customer_on_a_vat_inclusive_price(account):
    (rate,) = of(account, "tax_rate")
    assert rate["id"].startswith("txr_")
    assert (rate["percentage"], rate["inclusive"], rate["country"], rate["tax_type"]) == (19.0, True, "DE", "vat")
    (sub,) = [s for s in of(account, "subscription") if s["default_tax_rates"]]
    assert sub["default_tax_rates"] == [rate] and sub["currency"] == "eur" and sub["status"] == "active"
    customer = account.by_id()[sub["customer"]]
    assert customer["address"]["country"] == "DE" and customer["currency"] == "eur"
    (item,) = sub["items"]["data"]
    assert item["price"]["tax_behavior"] == "inclusive" and item["price"]["unit_amount"] == 5355
    assert item["quantity"] == 2 and item["tax_rates"] == []
    invoices = owned(account, "invoice", customer)
    assert len(invoices) >= 3 and all(i["status"] == "paid" for i in invoices)
    for i in invoices:
        # 2 seats × 53.55 = 107.10 with VAT; VAT = 107.10 × 19 / 119 = 17.10; net 107.10 − 17.10 = 90.00
        assert (i["subtotal"], i["total"], i["amount_paid"]) == (10710, 10710, 10710)
        assert (i["subtotal_excluding_tax"], i["total_excluding_tax"]) == (9000, 9000)
        assert i["total_taxes"] == [
            {
                "amount": 1710,
                "tax_behavior": "inclusive",
                "tax_rate_details": {"tax_rate": rate["id"]},
                "taxability_reason": "standard_rated",
                "taxable_amount": 9000,
                "type": "tax_rate_details",
            }
        ]
        assert i["default_tax_rates"] == [rate]
        assert i["lines"]["data"][0]["taxes"] == i["total_taxes"]
    # no other invoice has tax
    assert all(i["total_excluding_tax"] == i["total"] and not i["total_taxes"] for i in of(account, "invoice") if i not in invoices)


def test_manual_capture_partly_captured_and_expired(account):
    manual = [pi for pi in of(account, "payment_intent") if pi["capture_method"] == "manual"]
    assert len(manual) == 2
    customer = account.by_id()[manual[0]["customer"]]
    charges = {c["amount"]: c for c in owned(account, "charge", customer)}
    assert set(charges) == {10000, 5000}
    captured, expired = charges[10000], charges[5000]
    # authorized 100.00, captured 60.00: the 40.00 remainder is released, not refunded (API 2025-03-31.basil+)
    assert (captured["captured"], captured["amount_captured"], captured["amount_refunded"], captured["refunded"]) == (True, 6000, 0, False)
    assert captured["status"] == "succeeded" and captured["paid"] and captured["balance_transaction"]
    card = captured["payment_method_details"]["card"]
    assert card["amount_authorized"] == 10000 and card["capture_before"] == captured["created"] + 7 * DAY
    # the 50.00 authorization expired: never captured, nothing refunded
    assert (expired["captured"], expired["amount_captured"], expired["amount_refunded"], expired["refunded"]) == (False, 0, 0, False)
    assert expired["balance_transaction"] is None
    pis = account.by_id()
    assert (pis[captured["payment_intent"]]["status"], pis[captured["payment_intent"]]["amount_received"]) == ("succeeded", 6000)
    lapsed = pis[expired["payment_intent"]]
    assert (lapsed["status"], lapsed["cancellation_reason"], lapsed["amount_received"]) == ("canceled", "expired", 0)
    assert not [r for r in of(account, "refund") if r["charge"] in (captured["id"], expired["id"])]

    def story(charge):
        return [(e["type"], e["data"]["object"]["captured"], e["data"]["object"]["amount_captured"], e["created"])
                for e in account.events if e["data"]["object"]["id"] == charge["id"]]

    assert story(captured) == [
        ("charge.succeeded", False, 0, captured["created"]),
        ("charge.captured", True, 6000, captured["created"] + 2 * DAY),
    ]
    assert story(expired) == [
        ("charge.succeeded", False, 0, expired["created"]),
        ("charge.expired", False, 0, expired["created"] + 7 * DAY),
    ]
    assert all("previous_attributes" not in e["data"] for e in account.events if e["type"] in ("charge.captured", "charge.expired"))


def test_eur_subscription_on_a_multi_currency_usd_price(account):
    (price,) = [p for p in of(account, "price") if p.get("currency_options")]
    assert (price["currency"], price["unit_amount"]) == ("usd", 1000)
    assert price["currency_options"]["eur"] == {
        "custom_unit_amount": None, "tax_behavior": "exclusive", "unit_amount": 900, "unit_amount_decimal": "900"}
    assert price["currency_options"]["usd"]["unit_amount"] == 1000
    (sub,) = [s for s in of(account, "subscription") if s["items"]["data"][0]["price"]["id"] == price["id"]]
    assert sub["currency"] == "eur" and sub["status"] == "active"
    invoices = [i for i in of(account, "invoice") if i["parent"]["subscription_details"]["subscription"] == sub["id"]]
    assert invoices and all((i["currency"], i["total"]) == ("eur", 900) for i in invoices)
    assert all(i["lines"]["data"][0]["pricing"]["unit_amount_decimal"] == "900" for i in invoices)
    charges = owned(account, "charge", account.by_id()[sub["customer"]])
    assert charges and all((c["currency"], c["amount"]) == ("eur", 900) for c in charges)


def test_coupon_restricted_to_one_product(account):
    coupon = {c["id"]: c for c in of(account, "coupon")}["PRO50"]
    products = {p["metadata"]["catalog_key"]: p["id"] for p in of(account, "product")}
    assert coupon["applies_to"] == {"products": [products["pro"]]} and coupon["percent_off"] == 50.0
    assert all("applies_to" not in c for c in of(account, "coupon") if c["id"] != "PRO50")
    (sub,) = [s for s in of(account, "subscription") if any(d["source"]["coupon"]["id"] == "PRO50" for d in s["discounts"])]
    items = {it["price"]["product"]: it for it in sub["items"]["data"]}
    assert set(items) == {products["pro"], products["support"]}
    assert (items[products["pro"]]["price"]["unit_amount"], items[products["pro"]]["quantity"]) == (4900, 2)
    assert (items[products["support"]]["price"]["unit_amount"], items[products["support"]]["quantity"]) == (9900, 1)
    (invoice,) = [i for i in of(account, "invoice") if i["parent"]["subscription_details"]["subscription"] == sub["id"]]
    # Pro 2 × 49.00 = 98.00, half off = 49.00; Support 99.00 full price: 197.00 − 49.00 = 148.00
    assert invoice["subtotal"] == 19700
    assert [d["amount"] for d in invoice["total_discount_amounts"]] == [4900]
    assert invoice["total"] == invoice["amount_paid"] == 14800


def test_amount_off_coupon_has_currency_options(account):
    coupon = {c["id"]: c for c in of(account, "coupon")}["WELCOME10"]
    assert (coupon["amount_off"], coupon["currency"]) == (1000, "usd")
    assert coupon["currency_options"] == {"eur": {"amount_off": 900}, "gbp": {"amount_off": 800}}


def cancellation_updates(account: DemoAccount, sub_id: str) -> list[tuple]:
    """(cancel_at_period_end before → after, cancel_at before → after) of each update that touched them."""
    out = []
    for e in subscription_events(account, sub_id):
        prev = e["data"].get("previous_attributes") or {}
        obj = e["data"]["object"]
        if "cancel_at" in prev or "cancel_at_period_end" in prev:
            out.append((prev.get("cancel_at_period_end", obj["cancel_at_period_end"]), obj["cancel_at_period_end"],
                        prev["cancel_at"], obj["cancel_at"], e["created"]))
    return out


def test_scheduled_cancellation_withdrawn(account):
    subs = [s for s in of(account, "subscription") if len(cancellation_updates(account, s["id"])) == 2]
    by_flag = {cancellation_updates(account, s["id"])[0][1]: s for s in subs}
    sub = by_flag[True]
    (scheduled, withdrawn) = cancellation_updates(account, sub["id"])
    period_end = scheduled[3]
    assert scheduled[:4] == (False, True, None, period_end) and period_end > scheduled[4]
    assert withdrawn[:4] == (True, False, period_end, None) and scheduled[4] < withdrawn[4] < period_end
    # it renewed after the date it would have ended, and still runs
    assert sub["status"] == "active" and not sub["cancel_at_period_end"] and sub["cancel_at"] is None
    assert sub["canceled_at"] is None and sub["cancellation_details"] == {"comment": None, "feedback": None, "reason": None}
    assert any(i["created"] > period_end for i in of(account, "invoice")
               if i["parent"]["subscription_details"]["subscription"] == sub["id"])


def test_cancel_at_scheduled_withdrawn_and_scheduled_again(account):
    (sub,) = [s for s in of(account, "subscription")
              if [u[:2] for u in cancellation_updates(account, s["id"])] == [(False, False)] * 3]
    first, withdrawn, again = cancellation_updates(account, sub["id"])
    assert first[2] is None and first[3] is not None  # cancel_at set, cancel_at_period_end stays false
    assert withdrawn[2:4] == (first[3], None)
    assert again[2] is None and again[3] == sub["cancel_at"] > NOW
    assert sub["status"] == "active" and not sub["cancel_at_period_end"] and sub["canceled_at"] == again[4]
    assert sub["cancel_at"] == sub["items"]["data"][0]["current_period_end"]


def test_new_scenarios_are_in_every_scripted_account():
    small = generate_account(customers=SCRIPTED_COUNT, seed=99, now=NOW)
    assert of(small, "tax_rate") and any(s["default_tax_rates"] for s in of(small, "subscription"))
    assert any(pi["capture_method"] == "manual" for pi in of(small, "payment_intent"))
    assert any(s["currency"] != s["items"]["data"][0]["price"]["currency"] for s in of(small, "subscription"))
    assert any(s["cancel_at"] and not s["cancel_at_period_end"] for s in of(small, "subscription"))
    types = {e["type"] for e in small.events}
    assert {"charge.captured", "charge.expired", "tax_rate.created"} <= types


def test_includable_fields_only_when_expanded_over_http(account):
    prices = of(account, "price")
    multi = next(p for p in prices if p.get("currency_options"))
    sub = next(s for s in of(account, "subscription") if s["items"]["data"][0]["price"]["id"] == multi["id"])
    coupon_sub = next(s for s in of(account, "subscription") if any(d["source"]["coupon"]["id"] == "PRO50" for d in s["discounts"]))
    with StripeStandIn() as standin:
        seed_standin(standin, account)
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": standin.base_url}, max_network_retries=0)
        assert "currency_options" not in client.v1.prices.retrieve(multi["id"])
        expanded = client.v1.prices.retrieve(multi["id"], params={"expand": ["currency_options"]})
        assert expanded.currency_options["eur"].unit_amount == 900
        listed = client.v1.prices.list(params={"limit": 100, "expand": ["data.currency_options", "data.tiers"]}).data
        assert {p.id for p in listed if "currency_options" in p} == {multi["id"]}

        plain = client.v1.subscriptions.retrieve(sub["id"])
        assert "currency_options" not in plain["items"].data[0].price
        deep = client.v1.subscriptions.retrieve(sub["id"], params={"expand": ["items.data.price.currency_options"]})
        assert deep["items"].data[0].price.currency_options["eur"].unit_amount == 900

        assert "applies_to" not in client.v1.coupons.retrieve("PRO50")
        assert client.v1.coupons.retrieve("PRO50", params={"expand": ["applies_to"]}).applies_to.products
        assert "currency_options" not in client.v1.coupons.retrieve("WELCOME10")
        welcome = client.v1.coupons.retrieve("WELCOME10", params={"expand": ["currency_options"]})
        assert welcome.currency_options["eur"].amount_off == 900
        # the coupon inside a discount: expanded, but its own includable fields still need naming
        in_discount = client.v1.subscriptions.retrieve(coupon_sub["id"], params={"expand": ["discounts.source.coupon"]})
        assert in_discount.discounts[0].source.coupon.id == "PRO50"
        assert "applies_to" not in in_discount.discounts[0].source.coupon
        with_scope = client.v1.subscriptions.retrieve(
            coupon_sub["id"], params={"expand": ["discounts.source.coupon.applies_to"]})
        assert with_scope.discounts[0].source.coupon.applies_to.products

        # webhook-style event payloads never carry includable fields
        events = [e for e in client.v1.events.list(params={"limit": 100, "type": "customer.subscription.*"}).auto_paging_iter()
                  if e.data.object.id == sub["id"]]
        assert events and all("currency_options" not in e.data.object["items"].data[0].price for e in events)
        (rate,) = client.v1.tax_rates.list().data
        assert (rate.percentage, rate.inclusive) == (19.0, True)
