"""Stripe object (plain dict) -> mirror rows.

Parses the shapes of the pinned API version (2026-10-28.endive):
``items.data[].current_period_end``, ``discount.source.coupon``,
``invoice.parent.subscription_details.subscription``, charges without
``invoice``. Events keep the API version they were created with, so older
shapes (``subscription.current_period_end``, ``item.plan``,
``discount.coupon``, ``invoice.subscription``) are read as a fallback.

Card data is reduced to the brand: last4, expiry and fingerprint never reach
the mirror's typed columns, and are stripped from the stored ``raw`` payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from s2s_pipeline.core.ids import id_of
from s2s_pipeline.stripe.api_versions import releases_counted_as_refunds
from s2s_pipeline.stripe.errors import MalformedStripeObject

#: Card fields that must never be stored or sent (PCI / privacy).
_CARD_SECRETS = ("last4", "exp_month", "exp_year", "fingerprint", "iin", "dynamic_last4", "number")


@dataclass
class Rows:
    """Rows for one or more mirror tables, keyed by table name."""

    parents: dict[str, list[dict]] = field(default_factory=dict)
    # Child rows (subscription items, discounts) keyed by parent subscription id;
    # they replace the parent's previous children when the parent is applied.
    items: dict[str, list[dict]] = field(default_factory=dict)
    discounts: dict[str, list[dict]] = field(default_factory=dict)
    # Customer-level discounts keyed by customer id (replaced with the customer).
    customer_discounts: dict[str, list[dict]] = field(default_factory=dict)
    # Objects seen embedded in others (prices in items, coupons in discounts).
    embedded: dict[str, list[dict]] = field(default_factory=dict)
    # Discount objects on their own (``customer.discount.*`` events), keyed by
    # discount id: the row to store, or None when the discount was deleted.
    standalone_discounts: dict[str, dict | None] = field(default_factory=dict)

    def add(self, object_type: str, row: dict) -> None:
        self.parents.setdefault(object_type, []).append(row)

    def extend(self, other: "Rows") -> None:
        for key, rows in other.parents.items():
            self.parents.setdefault(key, []).extend(rows)
        self.items.update(other.items)
        self.discounts.update(other.discounts)
        self.customer_discounts.update(other.customer_discounts)
        for key, rows in other.embedded.items():
            self.embedded.setdefault(key, []).extend(rows)
        self.standalone_discounts.update(other.standalone_discounts)


def _require(obj: dict, key: str) -> Any:
    if key not in obj or obj[key] is None:
        raise MalformedStripeObject(
            f"Stripe {obj.get('object', 'object')} {obj.get('id', '<no id>')} has no {key!r}"
        )
    return obj[key]


class Scrubbed(dict):
    """A payload ``scrub`` made: already without card secrets, so scrubbing it again returns it as it is.

    An event is ledgered whole and its object mirrored in ``raw``: scrubbing the event once lets the
    mirror row take its object without walking it again (walking each object twice was about a tenth
    of applying a night's events).
    Treated as immutable, like every payload.
    """

    __slots__ = ()


def scrub(obj: Any) -> Any:
    """A JSON-ready deep copy of a Stripe payload without card secrets (kept in ``raw``).

    stripe-python parses ``*_decimal`` fields into ``Decimal``; they are kept
    as exact decimal text, as Stripe sends them. A ``Scrubbed`` dict (what this
    returns for a dict) comes back as it is.
    """
    if type(obj) is Scrubbed:
        return obj
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, dict):
        out = Scrubbed()
        for key, value in obj.items():
            if key in _CARD_SECRETS:
                continue
            out[key] = scrub(value)
        return out
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def _base(obj: dict, version_ts: int) -> dict:
    return {
        "id": _require(obj, "id"),
        "livemode": obj.get("livemode"),
        "version_ts": int(version_ts),
        "deleted": bool(obj.get("deleted", False)),
        "raw": scrub(obj),
    }


def _deleted_stub(obj: dict, version_ts: int) -> dict:
    return {"id": _require(obj, "id"), "livemode": obj.get("livemode"), "version_ts": int(version_ts), "deleted": True}


def customer_row(obj: dict, version_ts: int) -> dict:
    if obj.get("deleted"):
        return _deleted_stub(obj, version_ts)
    settings = obj.get("invoice_settings") or {}
    return {
        **_base(obj, version_ts),
        "email": obj.get("email"),
        "name": obj.get("name"),
        "currency": obj.get("currency"),
        "created": obj.get("created"),
        "delinquent": obj.get("delinquent"),
        "metadata": dict(obj.get("metadata") or {}),
        "default_payment_method": id_of(settings.get("default_payment_method")),
    }


def product_row(obj: dict, version_ts: int) -> dict:
    if obj.get("deleted"):
        return _deleted_stub(obj, version_ts)
    return {
        **_base(obj, version_ts),
        "name": obj.get("name"),
        "active": obj.get("active"),
        "created": obj.get("created"),
        "metadata": dict(obj.get("metadata") or {}),
    }


def _tiers(raw_tiers: Any) -> list[dict] | None:
    if raw_tiers is None:
        return None
    out = []
    for tier in raw_tiers:
        unit = tier.get("unit_amount_decimal")
        if unit is None and tier.get("unit_amount") is not None:
            unit = str(tier["unit_amount"])
        flat = tier.get("flat_amount_decimal")
        if flat is None and tier.get("flat_amount") is not None:
            flat = str(tier["flat_amount"])
        out.append({"up_to": tier.get("up_to"),
                    "unit_amount_decimal": None if unit is None else str(unit),
                    "flat_amount_decimal": None if flat is None else str(flat)})
    return out


def _decimal_text(decimal_value: Any, integer_value: Any) -> str | None:
    """``*_decimal`` text, else the integer amount as text; None when neither is set."""
    if decimal_value is None and integer_value is not None:
        decimal_value = integer_value
    return None if decimal_value is None else str(decimal_value)


def _price_currency_options(options: Any) -> dict | None:
    """``price.currency_options`` (includable: present only when the request expanded it).

    Per lowercase currency: the unit amount as exact decimal text, the tiers
    (same shape as the ``tiers`` column, None when not returned) and the
    option's ``tax_behavior``.
    """
    if not isinstance(options, dict):
        return None
    out = {}
    for currency, option in options.items():
        option = option or {}
        out[str(currency).lower()] = {
            "unit_amount_decimal": _decimal_text(option.get("unit_amount_decimal"), option.get("unit_amount")),
            "tiers": _tiers(option.get("tiers")),
            "tax_behavior": option.get("tax_behavior"),
        }
    return out


def price_row(obj: dict, version_ts: int) -> dict:
    """A Price, or a legacy Plan (``object: plan``, older API versions and localstripe)."""
    if obj.get("deleted"):
        return _deleted_stub(obj, version_ts)
    is_plan = obj.get("object") == "plan"
    recurring = obj.get("recurring") or {}
    if is_plan:
        recurring = {
            "interval": obj.get("interval"),
            "interval_count": obj.get("interval_count"),
            "usage_type": obj.get("usage_type"),
            "meter": obj.get("meter"),
        }
    unit_amount = obj.get("amount") if is_plan else obj.get("unit_amount")
    unit_decimal = obj.get("amount_decimal") if is_plan else obj.get("unit_amount_decimal")
    if unit_decimal is None and unit_amount is not None:
        unit_decimal = str(unit_amount)
    transform = obj.get("transform_usage") if is_plan else obj.get("transform_quantity")
    transform = transform or {}
    row = {
        **_base(obj, version_ts),
        "product": id_of(obj.get("product")),
        "currency": obj.get("currency"),
        "nickname": obj.get("nickname"),
        "active": obj.get("active"),
        "type": "recurring" if (is_plan or recurring.get("interval")) else obj.get("type", "one_time"),
        "billing_scheme": obj.get("billing_scheme") or "per_unit",
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_decimal is None else str(unit_decimal),
        "tiers_mode": obj.get("tiers_mode"),
        "tiers": _tiers(obj.get("tiers")),
        "recurring_interval": recurring.get("interval"),
        "recurring_interval_count": recurring.get("interval_count") or (1 if recurring.get("interval") else None),
        "recurring_usage_type": recurring.get("usage_type"),
        "recurring_meter": id_of(recurring.get("meter")),
        "transform_divide_by": transform.get("divide_by"),
        "transform_round": transform.get("round"),
        "tax_behavior": obj.get("tax_behavior"),
        "created": obj.get("created"),
    }
    # Includable: only a response that expanded it has the key. Without it the
    # column is left out of the row, so an event snapshot (never expanded)
    # keeps the options fetched earlier.
    if "currency_options" in obj:
        row["currency_options"] = _price_currency_options(obj["currency_options"])
    return row


_COUPON_TERMS = ("percent_off", "amount_off", "currency", "duration", "duration_in_months")


def coupon_row(obj: dict, version_ts: int) -> dict:
    """A coupon; a deleted one keeps its terms.

    Deleting a coupon does not remove it from the subscriptions and customers
    it is applied to (they keep their discount), while ``GET /v1/coupons/{id}``
    answers 404 from then on. So a ``coupon.deleted`` snapshot (which carries
    the coupon as it was) is stored in full, flagged deleted; a bare deletion
    stub (id and ``deleted`` only) leaves the stored terms alone.
    """
    if obj.get("deleted") and not any(key in obj for key in _COUPON_TERMS):
        return _deleted_stub(obj, version_ts)
    row = {
        **_base(obj, version_ts),
        "name": obj.get("name"),
        "percent_off": obj.get("percent_off"),
        "amount_off": obj.get("amount_off"),
        "currency": obj.get("currency"),
        "duration": obj.get("duration"),
        "duration_in_months": obj.get("duration_in_months"),
        "valid": obj.get("valid"),
        "created": obj.get("created"),
    }
    # Includable fields (present only when the request expanded them); absent
    # keys leave the stored columns alone.
    if "applies_to" in obj:
        applies_to = obj["applies_to"] or {}
        products = applies_to.get("products") if isinstance(applies_to, dict) else None
        row["applies_to_products"] = [id_of(p) for p in products] if products else None
    if "currency_options" in obj:
        options = obj["currency_options"]
        row["currency_options"] = ({str(cur).lower(): {"amount_off": (opt or {}).get("amount_off")}
                                    for cur, opt in options.items()} if isinstance(options, dict) else None)
    return row


def _tax_rates(rates: Any) -> list[dict] | None:
    """Tax rates applied to a subscription or item: id, ``percentage`` and ``inclusive`` of each.

    None when the object has none (an empty list and a missing one mean the same to Stripe).
    A rate given by id only (not expanded) keeps its id with unknown terms.
    """
    out = []
    for rate in rates or []:
        if isinstance(rate, dict):
            out.append({"id": rate.get("id"), "percentage": rate.get("percentage"),
                        "inclusive": rate.get("inclusive"), "rate_type": rate.get("rate_type")})
        elif rate is not None:
            out.append({"id": str(rate), "percentage": None, "inclusive": None, "rate_type": None})
    return out or None


def _discount_coupon(discount: dict) -> Any:
    source = discount.get("source") or {}
    if source.get("coupon") is not None:
        return source["coupon"]
    return discount.get("coupon")  # before 2025-09-30.clover


def _discount_rows(discounts: Any, customer: str | None, subscription: str | None, item: str | None,
                   rows: Rows, version_ts: int) -> list[dict]:
    out = []
    for discount in discounts or []:
        if isinstance(discount, str):
            # Not expanded: the id alone cannot be priced; the client always expands.
            out.append({"id": discount, "customer": customer, "subscription": subscription,
                        "subscription_item": item, "coupon": None, "start": None, "end": None})
            continue
        coupon = _discount_coupon(discount)
        if isinstance(coupon, dict):
            rows.embedded.setdefault("coupon", []).append(coupon_row(coupon, version_ts))
        out.append({
            "id": _require(discount, "id"),
            "customer": id_of(discount.get("customer")) or customer,
            "subscription": subscription,
            "subscription_item": item,
            "coupon": id_of(coupon),
            "start": discount.get("start"),
            "end": discount.get("end"),
        })
    return out


def discount_object_rows(obj: dict, version_ts: int) -> Rows:
    """A Discount object on its own (``customer.discount.created|updated|deleted`` events).

    A discount on the customer (no ``subscription``) is stored as a
    customer-level discount; one of a subscription or item is stored with it
    (the subscription's next snapshot replaces its discounts anyway). A
    deleted discount is removed.
    """
    rows = Rows()
    discount_id = _require(obj, "id")
    if obj.get("deleted"):
        rows.standalone_discounts[discount_id] = None
        return rows
    customer = id_of(obj.get("customer"))
    (row,) = _discount_rows([obj], customer, id_of(obj.get("subscription")), obj.get("subscription_item"),
                            rows, version_ts)
    rows.standalone_discounts[discount_id] = row
    return rows


def subscription_rows(obj: dict, version_ts: int) -> Rows:
    """A subscription with its items and discounts (children replace the stored ones)."""
    rows = Rows()
    sub_id = _require(obj, "id")
    customer = id_of(_require(obj, "customer"))
    status = _require(obj, "status")
    pause = obj.get("pause_collection") or {}
    rows.add("subscription", {
        **_base(obj, version_ts),
        "customer": customer,
        "status": status,
        "currency": obj.get("currency"),
        "created": obj.get("created"),
        "start_date": obj.get("start_date"),
        "cancel_at_period_end": obj.get("cancel_at_period_end"),
        "cancel_at": obj.get("cancel_at"),
        "canceled_at": obj.get("canceled_at"),
        "ended_at": obj.get("ended_at"),
        "trial_start": obj.get("trial_start"),
        "trial_end": obj.get("trial_end"),
        "pause_collection_behavior": pause.get("behavior") if isinstance(pause, dict) else None,
        "latest_invoice": id_of(obj.get("latest_invoice")),
        "collection_method": obj.get("collection_method"),
        "default_payment_method": id_of(obj.get("default_payment_method")),
        "metadata": dict(obj.get("metadata") or {}),
        # Stripe Tax computes the tax (the price's tax_behavior says whether it is inside the price).
        "automatic_tax_enabled": bool((obj.get("automatic_tax") or {}).get("enabled")),
        # Manual tax rates for items without their own ``tax_rates``.
        "default_tax_rates": _tax_rates(obj.get("default_tax_rates")),
    })
    items_obj = obj.get("items") or {}
    item_rows, discount_rows = [], []
    for item in items_obj.get("data") or []:
        price = item.get("price") or item.get("plan")
        if isinstance(price, dict):
            rows.embedded.setdefault("price", []).append(price_row(price, version_ts))
        item_rows.append({
            "id": _require(item, "id"),
            "subscription": sub_id,
            "customer": customer,
            "price": id_of(price),
            "quantity": item.get("quantity"),
            # Since 2025-03-31.basil the period lives on each item; older
            # snapshots carry it on the subscription.
            "current_period_start": item.get("current_period_start", obj.get("current_period_start")),
            "current_period_end": item.get("current_period_end", obj.get("current_period_end")),
            "created": item.get("created"),
            # When set, the subscription's default_tax_rates do not apply to this item.
            "tax_rates": _tax_rates(item.get("tax_rates")),
        })
        discount_rows += _discount_rows(item.get("discounts"), customer, sub_id, item["id"], rows, version_ts)
    sub_discounts = obj.get("discounts")
    if sub_discounts is None and obj.get("discount"):  # before the discounts array existed
        sub_discounts = [obj["discount"]]
    discount_rows += _discount_rows(sub_discounts, customer, sub_id, None, rows, version_ts)
    rows.items[sub_id] = item_rows
    rows.discounts[sub_id] = discount_rows
    return rows


def _invoice_subscription(obj: dict) -> str | None:
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or {}
    if details.get("subscription"):
        return id_of(details["subscription"])
    return id_of(obj.get("subscription"))  # before 2025-03-31.basil


def invoice_row(obj: dict, version_ts: int) -> dict:
    if obj.get("deleted"):
        return _deleted_stub(obj, version_ts)
    transitions = obj.get("status_transitions") or {}
    return {
        **_base(obj, version_ts),
        "customer": id_of(obj.get("customer")),
        "subscription": _invoice_subscription(obj),
        "status": obj.get("status"),
        "currency": obj.get("currency"),
        "amount_due": obj.get("amount_due"),
        "amount_paid": obj.get("amount_paid"),
        "amount_remaining": obj.get("amount_remaining"),
        "total": obj.get("total"),
        "total_excluding_tax": obj.get("total_excluding_tax"),
        "subtotal": obj.get("subtotal"),
        "attempt_count": obj.get("attempt_count"),
        "attempted": obj.get("attempted"),
        "billing_reason": obj.get("billing_reason"),
        "collection_method": obj.get("collection_method"),
        "next_payment_attempt": obj.get("next_payment_attempt"),
        "period_start": obj.get("period_start"),
        "period_end": obj.get("period_end"),
        "paid_at": transitions.get("paid_at"),
        "created": obj.get("created"),
    }


def charge_row(obj: dict, version_ts: int, api_version: str | None = None) -> dict:
    """A charge; ``api_version`` is the version the snapshot was rendered at (None: the pinned one).

    ``amount_refunded_includes_releases`` records whether that version counted
    released authorizations (a partial capture's remainder, an expiry) in
    ``amount_refunded`` -- before 2025-03-31.basil it did (``stripe.api_versions``).
    """
    details = obj.get("payment_method_details") or {}
    method_type = details.get("type")
    card = details.get("card") or {}
    if method_type is None and card:
        method_type = "card"
    if not card and isinstance(obj.get("source"), dict) and obj["source"].get("object") == "card":
        card = obj["source"]  # legacy Sources / older API versions
        method_type = method_type or "card"
    return {
        **_base(obj, version_ts),
        "customer": id_of(obj.get("customer")),
        "status": _require(obj, "status"),
        "currency": _require(obj, "currency"),
        "amount": _require(obj, "amount"),
        "amount_captured": obj.get("amount_captured", obj.get("amount") if obj.get("captured") else 0),
        "amount_refunded": obj.get("amount_refunded") or 0,
        "amount_refunded_includes_releases": releases_counted_as_refunds(api_version),
        "captured": obj.get("captured"),
        "paid": obj.get("paid"),
        "refunded": obj.get("refunded"),
        "disputed": obj.get("disputed"),
        "failure_code": obj.get("failure_code"),
        "failure_message": obj.get("failure_message"),
        "payment_intent": id_of(obj.get("payment_intent")),
        "payment_method_type": method_type,
        "card_brand": card.get("brand"),
        "created": obj.get("created"),
    }


def money_back_row(obj: dict, version_ts: int) -> dict:
    """A refund or a dispute: money of a charge going back to the customer."""
    return {
        **_base(obj, version_ts),
        "charge": id_of(obj.get("charge")),
        "payment_intent": id_of(obj.get("payment_intent")),
        "status": obj.get("status"),
        "currency": obj.get("currency"),
        "amount": _require(obj, "amount"),
        "reason": obj.get("reason"),
        "created": obj.get("created"),
    }


_SIMPLE = {
    "customer": customer_row,
    "product": product_row,
    "price": price_row,
    "plan": price_row,
    "coupon": coupon_row,
    "invoice": invoice_row,
    "charge": charge_row,
    "refund": money_back_row,
    "dispute": money_back_row,
}

#: Stripe object types the mirror stores (``plan`` is stored as a price; a
#: ``discount`` updates the discounts table only).
SUPPORTED_OBJECTS = frozenset(_SIMPLE) | {"subscription", "discount"}


def to_rows(obj: dict, version_ts: int, api_version: str | None = None) -> Rows:
    """Mirror rows for one Stripe object snapshot.

    ``api_version``: the version an event's snapshot was rendered at (the
    event's ``api_version``); None for objects listed or retrieved by the
    pipeline, which are always in the pinned version's shape.
    Raises MalformedStripeObject naming the object and field when a field the
    mirror needs is missing, and for object types it does not store.
    """
    if not isinstance(obj, dict):
        raise MalformedStripeObject(f"expected a Stripe object (dict), got {type(obj).__name__}")
    object_type = obj.get("object")
    if object_type == "customer" and not obj.get("deleted"):
        rows = Rows()
        rows.add("customer", customer_row(obj, version_ts))
        # A customer-wide coupon (``customer.discount``) applies to subscriptions without their own.
        discount = obj.get("discount")
        rows.customer_discounts[obj["id"]] = _discount_rows(
            [discount] if isinstance(discount, dict) else [], obj["id"], None, None, rows, version_ts)
        return rows
    if object_type == "subscription":
        # Stripe never deletes subscriptions: customer.subscription.deleted
        # carries the whole object with status "canceled".
        return subscription_rows(obj, version_ts)
    if object_type == "discount":
        return discount_object_rows(obj, version_ts)
    if object_type not in _SIMPLE:
        raise MalformedStripeObject(f"Stripe object {obj.get('id', '<no id>')} has unsupported type {object_type!r}")
    rows = Rows()
    table_type = "price" if object_type == "plan" else object_type
    if object_type == "charge":
        rows.add(table_type, charge_row(obj, version_ts, api_version))
    else:
        rows.add(table_type, _SIMPLE[object_type](obj, version_ts))
    return rows

