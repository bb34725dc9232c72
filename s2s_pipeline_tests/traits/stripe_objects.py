"""Stripe objects in the pinned API's shapes (2026-10-28.endive), and MirrorFrames built from them.

Includable fields (``price.currency_options``, ``coupon.applies_to``,
``coupon.currency_options``) are only present when the builder is told the
request expanded them, as Stripe returns them.
"""

from __future__ import annotations

import pandas as pd

from s2s_pipeline.stripe.normalize import Rows, to_rows
from s2s_pipeline.traits.frames import TABLE_COLUMNS, MirrorFrames
from s2s_pipeline_tests.traits.builders import DAY, NOW

_TABLES = {"customer": "customers", "product": "products", "price": "prices", "coupon": "coupons",
           "subscription": "subscriptions", "invoice": "invoices", "charge": "charges"}


def price(id: str, unit_amount: int | None, currency: str = "usd", product: str = "prod_A", interval: str = "month",
          interval_count: int = 1, tax_behavior: str = "unspecified", currency_options: dict | None = None,
          **extra) -> dict:
    obj = {"id": id, "object": "price", "active": True, "billing_scheme": "per_unit", "created": NOW - 400 * DAY,
           "currency": currency, "livemode": False, "lookup_key": None, "metadata": {}, "nickname": None,
           "product": product, "recurring": {"interval": interval, "interval_count": interval_count,
                                             "meter": None, "usage_type": "licensed"},
           "tax_behavior": tax_behavior, "tiers_mode": None, "transform_quantity": None, "type": "recurring",
           "unit_amount": unit_amount, "unit_amount_decimal": None if unit_amount is None else str(unit_amount)}
    if currency_options is not None:  # the request expanded currency_options
        obj["currency_options"] = currency_options
    obj.update(extra)
    return obj


def tax_rate(id: str, percentage: float, inclusive: bool) -> dict:
    return {"id": id, "object": "tax_rate", "active": True, "country": "DE", "created": NOW - 300 * DAY,
            "description": None, "display_name": "VAT", "effective_percentage": percentage,
            "flat_amount": None, "inclusive": inclusive, "jurisdiction": None, "jurisdiction_level": None,
            "livemode": False, "metadata": {}, "percentage": percentage, "rate_type": "percentage",
            "state": None, "tax_type": "vat"}


def coupon(id: str, percent_off: float | None = None, amount_off: int | None = None, currency: str | None = None,
           duration: str = "forever", applies_to: list[str] | None = None, currency_options: dict | None = None,
           expanded: bool = True) -> dict:
    """A coupon; ``expanded`` = listed with ``expand[]=data.applies_to`` (and currency_options)."""
    obj = {"id": id, "object": "coupon", "amount_off": amount_off, "created": NOW - 200 * DAY,
           "currency": currency, "duration": duration, "duration_in_months": None, "livemode": False,
           "max_redemptions": None, "metadata": {}, "name": id, "percent_off": percent_off, "redeem_by": None,
           "times_redeemed": 1, "valid": True}
    if expanded:
        obj["applies_to"] = {"products": applies_to} if applies_to else None
        if amount_off is not None:
            obj["currency_options"] = currency_options or {}
    return obj


def discount(id: str, coupon_ref, customer: str, subscription: str | None = None, item: str | None = None,
             start: int = NOW - 60 * DAY) -> dict:
    """A discount (pinned API: ``source.coupon``; an id unless the request expanded it)."""
    return {"id": id, "object": "discount", "checkout_session": None, "customer": customer, "end": None,
            "invoice": None, "invoice_item": None, "promotion_code": None,
            "source": {"coupon": coupon_ref, "type": "coupon"}, "start": start,
            "subscription": subscription, "subscription_item": item}


def subscription(id: str, customer: str, items: list, currency: str = "usd", status: str = "active",
                 discounts: list | None = None, default_tax_rates: list | None = None,
                 automatic_tax: bool = False, latest_invoice: str | None = None) -> dict:
    """``items``: (price object, quantity) or (price object, quantity, {item fields})."""
    data = []
    for n, entry in enumerate(items):
        price_obj, quantity, extra = (tuple(entry) + ({},))[:3]
        data.append({"id": extra.get("id", f"si_{id}_{n}"), "object": "subscription_item",
                     "created": NOW - 90 * DAY, "current_period_start": NOW - 10 * DAY,
                     "current_period_end": NOW + 20 * DAY, "discounts": extra.get("discounts", []),
                     "metadata": {}, "price": price_obj, "quantity": quantity, "subscription": id,
                     "tax_rates": extra.get("tax_rates", [])})
    return {"id": id, "object": "subscription", "automatic_tax": {"enabled": automatic_tax, "liability": None},
            "billing_cycle_anchor": NOW - 90 * DAY, "cancel_at": None, "cancel_at_period_end": False,
            "canceled_at": None, "collection_method": "charge_automatically", "created": NOW - 90 * DAY,
            "currency": currency, "customer": customer, "default_payment_method": None,
            "default_tax_rates": default_tax_rates or [], "discounts": discounts or [], "ended_at": None,
            "items": {"object": "list", "data": data, "has_more": False, "url": f"/v1/subscription_items?subscription={id}"},
            "latest_invoice": latest_invoice, "livemode": False, "metadata": {}, "pause_collection": None,
            "start_date": NOW - 90 * DAY, "status": status, "trial_end": None, "trial_start": None}


def customer(id: str, currency: str = "usd", discount_obj: dict | None = None) -> dict:
    return {"id": id, "object": "customer", "created": NOW - 400 * DAY, "currency": currency,
            "delinquent": False, "discount": discount_obj, "email": f"{id}@example.com",
            "invoice_settings": {"default_payment_method": None}, "livemode": False, "metadata": {},
            "name": f"Name of {id}"}


def invoice(id: str, customer_id: str, subscription_id: str, total: int, total_excluding_tax: int,
            status: str = "paid", created: int = NOW - 10 * DAY, currency: str = "usd") -> dict:
    return {"id": id, "object": "invoice", "amount_due": total, "amount_paid": total if status == "paid" else 0,
            "amount_remaining": 0 if status == "paid" else total, "attempt_count": 1, "attempted": True,
            "billing_reason": "subscription_cycle", "collection_method": "charge_automatically",
            "created": created, "currency": currency, "customer": customer_id, "livemode": False,
            "parent": {"quote_details": None, "subscription_details": {"metadata": {},
                                                                       "subscription": subscription_id},
                       "type": "subscription_details"},
            "period_end": created, "period_start": created - 30 * DAY, "status": status,
            "status_transitions": {"paid_at": created if status == "paid" else None},
            "subtotal": total, "total": total, "total_excluding_tax": total_excluding_tax}


def frames_of(*objects: dict, version: int = NOW) -> MirrorFrames:
    """The mirror as the store would hold it after these snapshots (embedded objects fill gaps)."""
    rows = Rows()
    for obj in objects:
        rows.extend(to_rows(obj, version))
    tables: dict[str, list[dict]] = {t: [] for t in TABLE_COLUMNS}
    for object_type, parent_rows in rows.parents.items():
        tables[_TABLES[object_type]].extend(parent_rows)
    for object_type, embedded in rows.embedded.items():
        have = {r["id"] for r in tables[_TABLES[object_type]]}
        for row in embedded:
            if row["id"] not in have:
                tables[_TABLES[object_type]].append(row)
                have.add(row["id"])
    for children in rows.items.values():
        tables["subscription_items"].extend(children)
    for children in list(rows.discounts.values()) + list(rows.customer_discounts.values()):
        tables["discounts"].extend(children)
    tables["discounts"].extend(r for r in rows.standalone_discounts.values() if r is not None)
    return MirrorFrames(**{
        table: pd.DataFrame({c: pd.Series([r.get(c) for r in table_rows], dtype=object)
                             for c in TABLE_COLUMNS[table]})
        for table, table_rows in tables.items()
    })
