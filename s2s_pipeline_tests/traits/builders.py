"""A small builder of MirrorFrames for hand-computed trait tests: every column gets a default."""

from __future__ import annotations

import itertools

import pandas as pd

from s2s_pipeline.stripe.normalize import to_rows
from s2s_pipeline.traits.frames import TABLE_COLUMNS, MirrorFrames

#: "now" of the tests: 2026-01-31T12:00:00Z
NOW = 1_769_860_800
DAY = 86_400
MONTH = 30 * DAY

_DEFAULTS: dict[str, dict] = {
    "customers": {"currency": "usd", "deleted": False, "created": NOW - 400 * DAY, "livemode": False,
                  "version_ts": NOW},
    "subscriptions": {"status": "active", "currency": "usd", "created": NOW - 90 * DAY,
                      "start_date": NOW - 90 * DAY, "cancel_at_period_end": False, "deleted": False,
                      "livemode": False, "version_ts": NOW},
    "subscription_items": {"quantity": 1, "current_period_start": NOW - 10 * DAY,
                           "current_period_end": NOW + 20 * DAY, "created": NOW - 90 * DAY},
    "prices": {"currency": "usd", "active": True, "type": "recurring", "billing_scheme": "per_unit",
               "recurring_interval": "month", "recurring_interval_count": 1, "recurring_usage_type": "licensed",
               "deleted": False, "created": NOW - 500 * DAY, "livemode": False, "version_ts": NOW},
    "products": {"active": True, "deleted": False, "livemode": False, "version_ts": NOW},
    "coupons": {"valid": True, "deleted": False, "livemode": False, "version_ts": NOW},
    "discounts": {},
    "invoices": {"status": "paid", "currency": "usd", "attempt_count": 1, "attempted": True, "deleted": False,
                 "livemode": False, "version_ts": NOW},
    "charges": {"status": "succeeded", "currency": "usd", "amount_refunded": 0, "captured": True, "paid": True,
                "refunded": False, "disputed": False, "payment_method_type": "card", "card_brand": "visa",
                "deleted": False, "livemode": False, "version_ts": NOW},
    "refunds": {"status": "succeeded", "deleted": False, "livemode": False, "version_ts": NOW},
    "disputes": {"deleted": False, "livemode": False, "version_ts": NOW},
}


#: Stripe object type -> mirror frame.
_TABLE_OF = {"customer": "customers", "charge": "charges", "refund": "refunds", "dispute": "disputes",
             "invoice": "invoices", "price": "prices", "product": "products", "coupon": "coupons"}


class Mirror:
    """Collects rows table by table; ``frames()`` builds the MirrorFrames."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {table: [] for table in TABLE_COLUMNS}
        self._seq = itertools.count(1)

    def _add(self, table: str, row: dict) -> dict:
        unknown = set(row) - set(TABLE_COLUMNS[table])
        if unknown:
            raise KeyError(f"{table} has no columns {sorted(unknown)}")
        full = {**_DEFAULTS[table], **row}
        self.rows[table].append(full)
        return full

    def customer(self, id: str, **kw) -> "Mirror":
        kw.setdefault("email", f"{id}@example.com")
        kw.setdefault("name", f"Name of {id}")
        self._add("customers", {"id": id, **kw})
        return self

    def product(self, id: str, name: str, **kw) -> "Mirror":
        self._add("products", {"id": id, "name": name, **kw})
        return self

    def price(self, id: str, unit: int | str | None = None, **kw) -> "Mirror":
        """A price; ``unit`` is the unit amount in minor units (int or decimal text)."""
        if unit is not None:
            kw.setdefault("unit_amount_decimal", str(unit))
            if isinstance(unit, int):
                kw.setdefault("unit_amount", unit)
        self._add("prices", {"id": id, **kw})
        return self

    def subscription(self, id: str, customer: str, items=(), **kw) -> "Mirror":
        """``items``: price ids, or (price, quantity) or (price, quantity, {item columns})."""
        self._add("subscriptions", {"id": id, "customer": customer, **kw})
        for n, item in enumerate(items):
            price, quantity, extra = (item, 1, {}) if isinstance(item, str) else (tuple(item) + ({},))[:3]
            self._add("subscription_items", {"id": extra.pop("id", f"si_{id}_{n}"), "subscription": id,
                                             "customer": customer, "price": price, "quantity": quantity, **extra})
        return self

    def coupon(self, id: str, duration: str = "forever", **kw) -> "Mirror":
        self._add("coupons", {"id": id, "duration": duration, **kw})
        return self

    def discount(self, coupon: str, customer: str, subscription: str | None = None, item: str | None = None,
                 start: int | None = None, end: int | None = None) -> "Mirror":
        self._add("discounts", {"id": f"di_{next(self._seq)}", "coupon": coupon, "customer": customer,
                                "subscription": subscription, "subscription_item": item,
                                "start": NOW - 60 * DAY if start is None else start, "end": end})
        return self

    def charge(self, customer: str, amount: int, created: int = NOW - DAY, id: str | None = None, **kw) -> "Mirror":
        kw.setdefault("amount_captured", amount if kw.get("status", "succeeded") == "succeeded" else 0)
        self._add("charges", {"id": id or f"ch_{next(self._seq):06d}", "customer": customer, "amount": amount,
                              "created": created, **kw})
        return self

    def invoice(self, customer: str, created: int, id: str | None = None, **kw) -> "Mirror":
        self._add("invoices", {"id": id or f"in_{next(self._seq):06d}", "customer": customer, "created": created,
                               **kw})
        return self

    def stripe(self, *objects: dict, api_version: str | None = None) -> "Mirror":
        """Stripe objects through the mirror's own normalisation (``to_rows``).

        Shapes of the pinned API unless ``api_version`` says the objects are
        event snapshots rendered at that (older) version.
        """
        for obj in objects:
            rows = to_rows(obj, NOW, api_version=api_version)
            for object_type, parents in rows.parents.items():
                for row in parents:
                    self._add(_TABLE_OF[object_type], {k: v for k, v in row.items() if k != "raw"})
        return self

    def frames(self) -> MirrorFrames:
        tables = {}
        for table, columns in TABLE_COLUMNS.items():
            rows = self.rows[table]
            tables[table] = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in columns})
        return MirrorFrames(**tables)
