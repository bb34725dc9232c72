"""Stripe ids of expandable fields.

A Stripe field such as ``charge.customer`` or ``invoice.subscription`` holds
either the related object's id or, when the request asked for it to be
expanded, the whole object. Everything that follows such a reference asks
this module for the id, so both shapes are read the same way everywhere.
"""

from __future__ import annotations

from typing import Any


def id_of(value: Any) -> str | None:
    """The id behind an expandable field: the string itself, or the expanded object's ``id``.

    None for anything else (absent, null, an empty string, a list).
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        found = value.get("id")
        return found if isinstance(found, str) and found else None
    return None
