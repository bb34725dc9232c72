"""Shared pieces of the privacy tests: the whole state store as text, a customer's personal values."""

from __future__ import annotations

import json

from sqlalchemy import inspect, text


def every_stored_value(store) -> list[tuple[str, str, str]]:
    """(table, column, value as text) of every non-null cell of every table in the state store."""
    engine = store.engine
    out = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
                    out.append((table, column, shown))
    return out


def personal_values(customer: dict, others: list[dict]) -> set[str]:
    """The customer's email, name and metadata values that no other customer shares
    (a company name two customers share is theirs as much as its)."""
    def values(c):
        return {v for v in [c.get("email"), c.get("name"), *(c.get("metadata") or {}).values()]
                if isinstance(v, str) and v}
    shared = set().union(*(values(o) for o in others)) if others else set()
    return values(customer) - shared


def findings(store, values: set[str]) -> list[tuple[str, str, str]]:
    """Where any of ``values`` appears in the store: (table, column, value)."""
    return [(t, c, v) for t, c, shown in every_stored_value(store) for v in values if v in shown]
