"""An access request answered from the pipeline: what the state store holds about one Stripe customer,
and the audit of every call sent about it (ids, types, names and times; never values it no longer needs)."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from s2s_pipeline.privacy.deletion import UnknownCustomer
from s2s_pipeline.store.state_store import StateStore


def export_customer(store: StateStore, customer_id: str) -> dict:
    """The customer's records by table plus ``calls_sent`` (the delivery audit); raises ``UnknownCustomer``."""
    records = store.customer_records.export(customer_id)
    audit = store.delivery_audit.for_customer(customer_id)
    if records is None and not audit:
        raise UnknownCustomer(customer_id)
    records = records or {"stripe_customer_id": customer_id}
    return {**records, "calls_sent": audit}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars from the trait table
        return _plain(value.item())
    return value


def to_json(export: dict) -> str:
    """The export as stable, indented JSON (keys sorted)."""
    return json.dumps(_plain(export), indent=2, sort_keys=True, default=str)
