"""Stored objects as Stripe's API returns them: expandable and includable fields collapsed unless ``expand[]`` names them.

The stand-in stores objects fully expanded; ``render`` produces the response
shape for a set of expand paths relative to the object rendered (``exp``).

Includable fields, returned only when expanded (REFERENCE §C.6, checked
against the OpenAPI spec): ``price.tiers``, ``price.currency_options``,
``coupon.applies_to``, ``coupon.currency_options``, ``invoice.payments``,
``charge.refunds``, wherever the object appears (a price in a subscription
item, a coupon in a discount).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .api import expandable_id


def _expanded(exp: frozenset[str], path: str) -> bool:
    if path in exp:
        return True
    prefix = path + "."
    return any(p.startswith(prefix) for p in exp)


def _sub(exp: frozenset[str], path: str) -> frozenset[str]:
    prefix = path + "."
    n = len(prefix)
    return frozenset(p[n:] for p in exp if p.startswith(prefix))


def _without_unexpanded(obj: dict, exp: frozenset[str], *fields: str) -> dict:
    """``obj`` without those of ``fields`` that ``exp`` does not expand (a copy only when something is left out)."""
    dropped = [f for f in fields if f in obj and not _expanded(exp, f)]
    if not dropped:
        return obj
    return {k: v for k, v in obj.items() if k not in dropped}


def _render_price(price: dict, exp: frozenset[str]) -> dict:
    return _without_unexpanded(price, exp, "tiers", "currency_options")


def _render_coupon(coupon: dict, exp: frozenset[str]) -> dict:
    return _without_unexpanded(coupon, exp, "applies_to", "currency_options")


def _render_discount(discount: dict, exp: frozenset[str]) -> dict:
    source = discount.get("source")
    if isinstance(source, dict) and isinstance(source.get("coupon"), dict):
        if not _expanded(exp, "source.coupon"):
            coupon: Any = source["coupon"].get("id")
        else:
            coupon = _render_coupon(source["coupon"], _sub(exp, "source.coupon"))
        if coupon is not source["coupon"]:
            return dict(discount, source=dict(source, coupon=coupon))
    return discount


def _render_discounts(value: Any, exp: frozenset[str], field: str) -> Any:
    if not isinstance(value, list):
        return value
    if _expanded(exp, field):
        sub = _sub(exp, field)
        return [_render_discount(d, sub) if isinstance(d, dict) else d for d in value]
    return [expandable_id(d) for d in value]


def _render_subscription(sub: dict, exp: frozenset[str]) -> dict:
    out = dict(sub)
    if "discounts" in out:
        out["discounts"] = _render_discounts(out["discounts"], exp, "discounts")
    items = out.get("items")
    if isinstance(items, dict) and isinstance(items.get("data"), list):
        item_exp = _sub(exp, "items.data")
        new_items = []
        for item in items["data"]:
            item = dict(item)
            if "discounts" in item:
                item["discounts"] = _render_discounts(item["discounts"], item_exp, "discounts")
            if isinstance(item.get("price"), dict):
                item["price"] = _render_price(item["price"], _sub(item_exp, "price"))
            new_items.append(item)
        out["items"] = dict(items, data=new_items)
    return out


def _render_invoice(invoice: dict, exp: frozenset[str]) -> dict:
    out = dict(invoice)
    if "payments" in out and not _expanded(exp, "payments"):
        del out["payments"]
    if "discounts" in out:
        out["discounts"] = _render_discounts(out["discounts"], exp, "discounts")
    return out


def _render_charge(charge: dict, exp: frozenset[str]) -> dict:
    # Since 2022-11-15 a charge's refunds are only returned when expanded.
    return _without_unexpanded(charge, exp, "refunds")


def _render_customer(customer: dict, exp: frozenset[str]) -> dict:
    if isinstance(customer.get("discount"), dict):
        return dict(customer, discount=_render_discount(customer["discount"], _sub(exp, "discount")))
    return customer


def _render_event(event: dict, exp: frozenset[str]) -> dict:
    # Event payloads are rendered like a default (unexpanded) API response.
    data = event.get("data")
    if isinstance(data, dict) and isinstance(data.get("object"), dict):
        return dict(event, data=dict(data, object=render(data["object"], frozenset())))
    return event


_RENDERERS: dict[str, Callable[[dict, frozenset[str]], dict]] = {
    "price": _render_price,
    "coupon": _render_coupon,
    "subscription": _render_subscription,
    "invoice": _render_invoice,
    "charge": _render_charge,
    "customer": _render_customer,
    "discount": _render_discount,
    "event": _render_event,
}


def render(obj: dict, exp: frozenset[str] = frozenset()) -> dict:
    """The object as Stripe would return it for these (relative) expand paths.

    Never mutates ``obj``: changed levels are shallow-copied, the rest shared.
    """
    fn = _RENDERERS.get(obj.get("object", ""))
    return fn(obj, exp) if fn else obj
