"""MRR of one subscription as a Stripe event shows it (before and after the change).

The ``mrr`` trait's rule (``traits.mrr``, REFERENCE §A) applied to the one
subscription of an event, at the event's ``created``, on the data the trait
reads. The snapshot's rows (``stripe.normalize.to_rows``) say the
subscription's state (status, schedule, items, quantities, tax rates, its own
discounts); the rest comes from the mirror through the context, because an
event payload is never expanded:

- prices: the mirror's row (with the includable ``tiers`` and
  ``currency_options``, which the catalogue listing expands and an event
  never carries), the payload's only for a price the mirror lacks;
- coupons: the mirror's row (the includable ``applies_to`` and
  ``currency_options``, a deleted coupon's terms), else the payload's;
  discounts named by id take their coupon from ``ctx.discount``;
- the customer's own discounts (``ctx.customer_discounts``), which the trait
  applies to a subscription without a discount of its own;
- with Stripe Tax, the subscription's invoices (``ctx.subscription_invoices``),
  whose newest paid or open one gives the share that is not tax.

``state_before`` rebuilds the subscription as it was before the event from
``previous_attributes``, so Upgraded/Downgraded can compare; both states are
priced through the same context.
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


def _optional(ctx: MappingContext, name: str):
    """An optional context method (``MappingContext`` documents which), None when the context lacks it."""
    return getattr(ctx, name, None)


def _prices(item_rows: list[dict], embedded: dict[str, dict], ctx: MappingContext) -> tuple[dict, dict, bool]:
    """The price rows the items use, as the trait reads them: the mirror's row, else the payload's.

    The mirror holds a price as the catalogue listing returned it, with the
    includable ``tiers`` and ``currency_options`` expanded (an event never
    carries them, and embedded prices never overwrite a stored one), so the
    ``mrr`` trait prices from that row; the payload's own row only stands in
    for a price the mirror lacks. Returns (price rows by id, product names of
    expanded products by price id, whether every item's price was known).
    """
    prices: dict[str, dict] = {}
    product_names: dict[str, str] = {}
    complete = True
    for item in item_rows:
        price_id = item.get("price")
        if price_id is None:
            complete = False
            continue
        if price_id in prices:
            continue
        row = embedded.get(price_id)
        product = ((row or {}).get("raw") or {}).get("product")
        if isinstance(product, dict) and product.get("name"):
            product_names[price_id] = product["name"]
        stored = ctx.price(price_id)
        if stored is not None:
            row = {**(row or {}), **stored}
        if row is None:
            complete = False
            continue
        prices[price_id] = row
    return prices, product_names, complete


def _discounts(rows, sub_row: dict, ctx: MappingContext) -> tuple[list[dict], bool]:
    """The snapshot's discount rows (collapsed ones resolved from the mirror) and the customer's own.

    Customer-level discounts are the mirror's (an event about a subscription
    does not carry them); the trait applies them to a subscription without a
    discount of its own in effect, so they are passed on for the same rule.
    """
    out, complete = [], True
    resolve = _optional(ctx, "discount")
    for d in rows.discounts.get(sub_row["id"], []):
        d = dict(d)
        if d.get("coupon") is None:
            stored = resolve(d["id"]) if resolve is not None else None
            if stored is None or stored.get("coupon") is None:
                complete = False
                continue
            d.update(coupon=id_of(stored["coupon"]), start=stored.get("start"), end=stored.get("end"))
        out.append(d)
    of_customer = _optional(ctx, "customer_discounts")
    if of_customer is not None and sub_row.get("customer"):
        own = {d["id"] for d in out}
        out += [dict(d) for d in of_customer(sub_row["customer"]) or [] if d.get("id") not in own]
    return out, complete


def _coupons(discount_rows: list[dict], embedded: dict[str, dict], ctx: MappingContext,
             subscription_id: str) -> tuple[dict, bool]:
    """The coupon rows of the discounts: the mirror's row, else the payload's.

    The mirror's row has what an embedded coupon lacks: the includable
    ``applies_to`` and ``currency_options`` (the coupon listing expands them),
    and the terms of a deleted coupon (kept from ``coupon.deleted``). A coupon
    known nowhere leaves the figures incomplete when a discount of the
    subscription uses it (one of the customer's discounts is simply skipped,
    as the trait skips it).
    """
    coupons: dict[str, dict] = {}
    complete = True
    for d in discount_rows:
        coupon_id = d.get("coupon")
        if coupon_id is None or coupon_id in coupons:
            continue
        row = ctx.coupon(coupon_id)
        if row is not None:
            row = {**embedded.get(coupon_id, {}), **row}
        else:
            row = embedded.get(coupon_id)
        if row is None:
            complete = complete and d.get("subscription") != subscription_id
            continue
        coupons[coupon_id] = row
    return coupons, complete


def _tax_invoices(sub_row: dict, ctx: MappingContext) -> list[dict]:
    """With Stripe Tax: the subscription's invoices from the mirror (the trait takes the newest one's share)."""
    if not sub_row.get("automatic_tax_enabled"):
        return []
    invoices = _optional(ctx, "subscription_invoices")
    return list(invoices(sub_row["id"]) or []) if invoices is not None else []


def subscription_figures(snapshot: dict, ctx: MappingContext, config: TraitsConfig, now: int) -> SubscriptionFigures:
    """MRR (and plan, interval) of one subscription snapshot at ``now``, as the ``mrr`` trait computes it.

    The snapshot says the subscription's state; everything else the trait
    reads comes from the mirror through ``ctx``, as the trait reads it (module doc).
    """
    rows = to_rows(snapshot, now)
    sub_row = rows.parents["subscription"][0]
    sub_id = sub_row["id"]
    item_rows = rows.items.get(sub_id, [])
    prices, raw_products, prices_known = _prices(item_rows, _unique(rows.embedded.get("price", [])), ctx)
    discount_rows, discounts_known = _discounts(rows, sub_row, ctx)
    coupons, coupons_known = _coupons(discount_rows, _unique(rows.embedded.get("coupon", [])), ctx, sub_id)
    complete = prices_known and discounts_known and coupons_known
    customers = [{"id": sub_row["customer"]}] if sub_row.get("customer") else []

    tables = _empty_tables()
    tables.update(
        customers=_frame("customers", customers),
        invoices=_frame("invoices", _tax_invoices(sub_row, ctx)),
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

