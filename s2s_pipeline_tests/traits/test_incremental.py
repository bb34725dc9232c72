"""Incremental trait refresh == full recompute, on random change sets through the real change feed.

A demo account is synced from the Stripe stand-in and its traits computed in
full; then, night after night (the clock moving a few days each time), random
changes are emitted as Stripe would: customers, subscriptions (seats, status,
price swaps, discounts dropped), prices, products and coupons changed without
any event about the customers using them, invoices failing, refunds created
without a charge event, new charges. After each ``sync_changes`` the
incremental refresh must leave exactly the table a full recompute builds.
"""

from __future__ import annotations

import copy
import random

import pandas as pd
import pytest

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames
from s2s_pipeline.traits import refresh as refresh_module
from s2s_pipeline.traits.refresh import TRAITS_CURSOR, refresh_customer_traits
from s2s_pipeline_tests.demo_store import sync_demo_account

DAY = 86_400


def _latest(standin, kind: str, ids: list[str]) -> list[dict]:
    out = []
    for object_id in ids:
        obj = standin.get(kind, object_id)
        if obj is not None and not obj.get("deleted"):
            out.append(copy.deepcopy(obj))
    return out


def _emit_random_changes(standin, account, rng: random.Random, at: int) -> list[str]:
    """A handful of random Stripe changes at ``at`` (distinct seconds, so no tie needs re-fetching)."""
    kinds = ["customer", "subscription_seats", "subscription_cancel", "subscription_price", "subscription_discounts",
             "price", "product", "coupon", "invoice_failed", "refund", "charge"]
    done: list[str] = []
    ids = {kind: [o["id"] for o in account.of_type(kind)] for kind in
           ("customer", "subscription", "price", "product", "coupon", "invoice", "charge")}
    for step in range(rng.randint(2, 7)):
        kind = rng.choice(kinds)
        when = at + step
        if kind == "customer":
            for c in _latest(standin, "customer", rng.sample(ids["customer"], 1)):
                c.setdefault("metadata", {})["segment_user_id"] = f"u_{rng.randrange(10**6)}"
                c["email"] = f"changed{rng.randrange(10**6)}@example.org"
                standin.emit("customer.updated", c, created=when)
                done.append(kind)
        elif kind.startswith("subscription"):
            for s in _latest(standin, "subscription", rng.sample(ids["subscription"], 1)):
                items = s.get("items", {}).get("data", [])
                if not items:
                    continue
                if kind == "subscription_seats":
                    items[0]["quantity"] = int(items[0].get("quantity") or 1) + rng.randint(1, 5)
                elif kind == "subscription_cancel":
                    s.update(status="canceled", canceled_at=when, ended_at=when)
                elif kind == "subscription_price":
                    other = _latest(standin, "price", rng.sample(ids["price"], 1))
                    if not other or not other[0].get("recurring"):
                        continue
                    items[0]["price"] = other[0]
                else:
                    s["discounts"] = []
                    for item in items:
                        item["discounts"] = []
                standin.emit("customer.subscription.updated", s, created=when)
                done.append(kind)
        elif kind == "price":
            for p in _latest(standin, "price", rng.sample(ids["price"], 1)):
                if p.get("unit_amount") is None:
                    continue
                p["unit_amount"] = int(p["unit_amount"]) + rng.randint(100, 900)
                p["unit_amount_decimal"] = str(p["unit_amount"])
                standin.emit("price.updated", p, created=when)
                done.append(kind)
        elif kind == "product":
            for p in _latest(standin, "product", rng.sample(ids["product"], 1)):
                p["name"] = f"Renamed {rng.randrange(1000)}"
                standin.emit("product.updated", p, created=when)
                done.append(kind)
        elif kind == "coupon" and ids["coupon"]:
            for c in _latest(standin, "coupon", rng.sample(ids["coupon"], 1)):
                if c.get("percent_off") is None:
                    continue
                c["percent_off"] = float(rng.choice([5, 15, 35, 75]))
                standin.emit("coupon.updated", c, created=when)
                done.append(kind)
        elif kind == "invoice_failed":
            for inv in _latest(standin, "invoice", rng.sample(ids["invoice"], 1)):
                if not inv.get("customer"):
                    continue
                inv.update(status="open", attempt_count=int(inv.get("attempt_count") or 0) + 1, amount_paid=0,
                           amount_remaining=inv.get("amount_due"))
                standin.emit("invoice.payment_failed", inv, created=when)
                done.append(kind)
        elif kind == "refund":
            for ch in _latest(standin, "charge", rng.sample(ids["charge"], 1)):
                if ch.get("status") != "succeeded" or not ch.get("customer"):
                    continue
                refund = {"id": f"re_t{rng.randrange(10**9)}", "object": "refund", "charge": ch["id"],
                          "amount": max(1, int(ch["amount"]) // 3), "currency": ch["currency"],
                          "status": "succeeded", "reason": "requested_by_customer", "created": when}
                standin.emit("refund.created", refund, created=when)  # no charge event: found through the charge
                done.append(kind)
        else:
            for ch in _latest(standin, "charge", rng.sample(ids["charge"], 1)):
                if not ch.get("customer"):
                    continue
                ch.update(id=f"ch_t{rng.randrange(10**9)}", created=when, status="succeeded",
                          amount_refunded=0, refunded=False, disputed=False)
                standin.emit("charge.succeeded", ch, created=when)
                done.append(kind)
    return done


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    out = table.sort_values("stripe_customer_id", ignore_index=True).astype(object)
    return out.where(out.notna(), None)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_refresh_equals_full_recompute(state_url, seed, monkeypatch):
    # Seeds 2 and 3 read and compute the changed customers a few (4) and one at a time: the pieces of a
    # change set larger than a shard make the same table as the whole.
    reads: list[int] = []
    if seed > 1:
        monkeypatch.setattr(refresh_module, "INCREMENTAL_CHUNK_CUSTOMERS", {2: 4, 3: 1}[seed])
        real_load = refresh_module.load_customer_frames
        monkeypatch.setattr(refresh_module, "load_customer_frames",
                            lambda mirror, ids: reads.append(len(ids)) or real_load(mirror, ids))
    rng = random.Random(seed)
    account = generate_account(customers=40, seed=seed)
    config = TraitsConfig(mrr_coupon_rule="all_in_effect")  # coupons ending move MRR with the clock
    store = StateStore.from_url(state_url)
    full_store = StateStore.from_url("sqlite://")  # the full recompute's table, stored the same way
    try:
        with StripeStandIn() as standin:
            seed_standin(standin, account, copy=True)
            reader = StripeReader(StripeSettings(api_key="sk_test_x", api_base=standin.base_url, rate_limit=1000))
            now = account.now
            sync_changes(reader, store, clock=lambda: standin.now)
            first = refresh_customer_traits(store, config, now)
            assert first.mode == "full" and first.reason == "first_run"
            modes = []
            for night in range(4):
                now += rng.randint(1, 9) * DAY
                standin.now = now
                changes = _emit_random_changes(standin, account, rng, now - 3600)
                sync_changes(reader, store, clock=lambda: standin.now)
                refresh = refresh_customer_traits(store, config, now)
                modes.append(refresh.mode)
                full_store.traits.write(compute_customer_traits(load_mirror_frames(store.mirror), config, now))
                incremental, full = _comparable(store.traits.read()), _comparable(full_store.traits.read())
                assert list(incremental.columns) == list(full.columns)
                pd.testing.assert_frame_equal(incremental, full, check_dtype=False, obj=f"night {night}: {changes}")
                assert store.changed_objects.pending().empty
            assert modes == ["incremental"] * 4
            if seed > 1:  # the change sets were read in several pieces, none over the chunk size
                assert len(reads) > 4 and max(reads) <= {2: 4, 3: 1}[seed], reads
    finally:
        store.dispose()
        full_store.dispose()


def test_full_recompute_when_rules_change_or_asked(state_url):
    now = sync_demo_account(state_url, customers=10, seed=4).now
    store = StateStore.from_url(state_url)
    try:
        assert refresh_customer_traits(store, TraitsConfig(), now).reason == "first_run"
        quiet = refresh_customer_traits(store, TraitsConfig(), now)
        assert (quiet.mode, quiet.customers_recomputed) == ("incremental", 0)
        changed = refresh_customer_traits(store, TraitsConfig(mrr_coupon_rule="all_in_effect"), now)
        assert (changed.mode, changed.reason) == ("full", "trait_rules_changed")
        asked = refresh_customer_traits(store, TraitsConfig(mrr_coupon_rule="all_in_effect"), now, full=True)
        assert (asked.mode, asked.reason) == ("full", "requested")
        assert store.cursors.get(TRAITS_CURSOR)["full_at"] == now
        assert store.profile_queue.scope().full
    finally:
        store.dispose()
