"""MRR of one subscription as a Stripe event shows it (before and after the change).

The ``mrr`` trait's rule (``traits.mrr``, REFERENCE §A) applied to the one
subscription of an event, at the event's ``created``: the snapshot's rows
(``stripe.normalize.to_rows``) plus the prices and coupons its items and
discounts reference. Embedded prices are used as they are; a tiered price
whose tiers the payload omits (Stripe never renders tiers in events) comes
from ``ctx.price``; coupons of collapsed discounts come from ``ctx.discount``
and ``ctx.coupon``. Customer-level discounts are not considered (the event
cannot see them). ``state_before`` rebuilds the subscription as it was before
the event from ``previous_attributes``, so Upgraded/Downgraded can compare.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pandas as pd

from s2s_pipeline.core.ids import id_of
from s2s_pipeline.segment.mapping_context import MappingContext
from s2s_pipeline.stripe.normalize import to_rows
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.frames import TABLE_COLUMNS, MirrorFrames, empty_frames
from s2s_pipeline.traits.money import to_major
from s2s_pipeline.traits.mrr import compute_item_mrr, compute_subscription_mrr

#: Subscription fields whose change can change MRR (``previous_attributes`` keys).
MRR_FIELDS: frozenset[str] = frozenset({
    "items", "plan", "quantity", "status", "discounts", "discount", "cancel_at_period_end", "cancel_at",
    "pause_collection", "ended_at", "currency",
})

#: Fields that schedule a cancellation (``previous_attributes`` keys).
SCHEDULE_FIELDS: frozenset[str] = frozenset({"cancel_at_period_end", "cancel_at"})


def currency_code(value: Any) -> str | None:
    """A Stripe currency as the contract writes it: lowercase, None when absent."""
    return str(value).lower() if value else None



@dataclass(frozen=True)
class SubscriptionFigures:
    """MRR facts of one subscription snapshot, by the ``mrr`` trait's rules."""

    mrr_minor: int
    mrr: float
    currency: str | None
    plan: str | None
    billing_interval: str | None
    complete: bool  # every item's price and every discount's coupon was known


_EMPTY: dict[str, pd.DataFrame] = {}


def _empty_tables() -> dict[str, pd.DataFrame]:
    """The empty mirror tables, built once (the MRR computation only reads its frames)."""
    if not _EMPTY:
        _EMPTY.update(empty_frames().tables())
    return dict(_EMPTY)


def _frame(table: str, rows: list[dict]):
    if not rows:
        return _empty_tables()[table]
    columns = TABLE_COLUMNS[table]
    return pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=list(columns))


def _unique(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for row in rows:
        if row.get("id") is not None:
            out[row["id"]] = row
    return out


def subscription_figures(snapshot: dict, ctx: MappingContext, config: TraitsConfig, now: int) -> SubscriptionFigures:
    """MRR (and plan, interval) of one subscription snapshot at ``now``, as the ``mrr`` trait computes it."""
    rows = to_rows(snapshot, now)
    sub_row = rows.parents["subscription"][0]
    sub_id = sub_row["id"]
    item_rows = rows.items.get(sub_id, [])
    complete = True

    embedded_prices = _unique(rows.embedded.get("price", []))
    prices: dict[str, dict] = {}
    raw_products: dict[str, str] = {}
    for item in item_rows:
        price_id = item.get("price")
        if price_id is None:
            complete = False
            continue
        if price_id in prices:
            continue
        row = embedded_prices.get(price_id)
        if row is None or (row.get("billing_scheme") == "tiered" and row.get("tiers") is None):
            stored = ctx.price(price_id)
            if stored is not None and (row is None or stored.get("tiers") is not None):
                row = {**(row or {}), **stored}
        if row is None:
            complete = False
            continue
        prices[price_id] = row
        product = (row.get("raw") or {}).get("product")
        if isinstance(product, dict) and product.get("name"):
            raw_products[price_id] = product["name"]

    discount_rows = []
    resolve = getattr(ctx, "discount", None)
    for d in rows.discounts.get(sub_id, []):
        d = dict(d)
        if d.get("coupon") is None:
            stored = resolve(d["id"]) if resolve is not None else None
            if stored is None or stored.get("coupon") is None:
                complete = False
                continue
            d.update(coupon=id_of(stored["coupon"]), start=stored.get("start"), end=stored.get("end"))
        discount_rows.append(d)
    coupons = _unique(rows.embedded.get("coupon", []))
    for d in discount_rows:
        if d["coupon"] not in coupons:
            stored = ctx.coupon(d["coupon"])
            if stored is None:
                complete = False
                continue
            coupons[d["coupon"]] = stored

    tables = _empty_tables()
    tables.update(
        subscriptions=_frame("subscriptions", [sub_row]),
        subscription_items=_frame("subscription_items", item_rows),
        prices=_frame("prices", list(prices.values())),
        coupons=_frame("coupons", list(coupons.values())),
        discounts=_frame("discounts", discount_rows),
    )
    frames = MirrorFrames(**tables)
    sub = compute_subscription_mrr(frames, config, now).iloc[0]
    currency = currency_code(sub["currency"]) or currency_code(snapshot.get("currency"))
    mrr_minor = int(sub["mrr_minor"])

    plan = interval = None
    if item_rows:
        main = 0
        if len(item_rows) > 1:
            items = compute_item_mrr(frames, config, now)
            main = min(range(len(items)), key=lambda i: (-float(items["mrr_minor"].iloc[i]),
                                                         -float(items["list_monthly_minor"].iloc[i]),
                                                         str(items["id"].iloc[i])))
        main_price_id = item_rows[main].get("price")
        price = prices.get(main_price_id) or {}
        plan = price.get("nickname") or None
        if plan is None and price.get("product"):
            plan = ctx.product_name(price["product"]) or None
        if plan is None:
            plan = raw_products.get(main_price_id) or main_price_id
        interval = price.get("recurring_interval")
    return SubscriptionFigures(mrr_minor=mrr_minor, mrr=to_major(mrr_minor, currency), currency=currency,
                               plan=plan, billing_interval=interval, complete=complete and bool(item_rows))


def _merge_previous(value: Any, previous: Any) -> Any:
    """``value`` with Stripe's ``previous_attributes`` applied: hashes merged, everything else replaced."""
    if isinstance(value, dict) and isinstance(previous, dict):
        out = dict(value)
        for key, old in previous.items():
            out[key] = _merge_previous(value.get(key), old)
        return out
    return copy.deepcopy(previous)


def state_before(snapshot: dict, previous: dict) -> dict:
    """The subscription as it was before the event (``previous_attributes`` over the snapshot)."""
    before = _merge_previous(snapshot, previous)
    items = (before.get("items") or {}).get("data") or []
    if "items" not in previous and len(items) == 1 and ("quantity" in previous or "plan" in previous):
        # Legacy single-plan subscriptions (old API versions): top-level plan/quantity
        item = dict(items[0])
        if "quantity" in previous:
            item["quantity"] = previous["quantity"]
        if isinstance(previous.get("plan"), dict):
            item.pop("price", None)
            item["plan"] = previous["plan"]
        before["items"] = dict(before["items"], data=[item])
    return before


def cancellation_scheduled(snapshot: dict) -> bool:
    """Whether the subscription is set to end: ``cancel_at_period_end``, or ``cancel_at`` set (the ``mrr`` rule)."""
    return bool(snapshot.get("cancel_at_period_end")) or snapshot.get("cancel_at") is not None


def scheduled_end(snapshot: dict) -> int | None:
    """When a scheduled cancellation takes effect: ``cancel_at``, else the end of the current period.

    Current API versions set ``cancel_at`` together with the flag; older
    shapes only had the flag, so the period end (the items' latest
    ``current_period_end``, or the legacy top-level one) is when it ends.
    """
    if snapshot.get("cancel_at") is not None:
        return int(snapshot["cancel_at"])
    ends = [int(item["current_period_end"]) for item in (snapshot.get("items") or {}).get("data") or []
            if isinstance(item, dict) and item.get("current_period_end") is not None]
    if ends:
        return max(ends)
    end = snapshot.get("current_period_end")
    return int(end) if end is not None else None


def without_schedule(snapshot: dict) -> dict:
    """The subscription as if no cancellation were scheduled (what it brings in while it runs)."""
    return {**snapshot, "cancel_at_period_end": False, "cancel_at": None}


def as_running(snapshot: dict) -> dict:
    """An ended subscription as it was while it ran: active, nothing scheduled, not ended."""
    return {**without_schedule(snapshot), "status": "active", "ended_at": None}


def ended_in_trial(snapshot: dict, at: int) -> bool:
    trial_end = snapshot.get("trial_end")
    if trial_end is None:
        return False
    end = snapshot.get("ended_at") or snapshot.get("canceled_at") or at
    start = snapshot.get("trial_start")
    return int(end) <= int(trial_end) and (start is None or int(end) >= int(start))

