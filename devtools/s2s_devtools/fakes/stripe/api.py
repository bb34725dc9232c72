"""Facts of the Stripe API that the stand-in and the demo account share: the API version, ids, the event envelope."""

from __future__ import annotations

import random
import string
from typing import Any

API_VERSION = "2026-10-28.endive"

_ALNUM = string.ascii_letters + string.digits
_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase

# byte -> alphanumeric character; random bytes through this table make ids
# ~20x faster than random.choices (the slight bias is irrelevant for ids)
_ALNUM_TABLE = bytes.maketrans(bytes(range(256)), bytes(ord(_ALNUM[b % 62]) for b in range(256)))


def random_alnum(rng: random.Random, k: int) -> str:
    """``k`` random letters and digits from ``rng`` (deterministic for a seeded rng)."""
    return rng.randbytes(k).translate(_ALNUM_TABLE).decode("ascii")


def _b62(n: int, width: int) -> str:
    """Fixed-width base-62 digits whose string order is numeric order."""
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(reversed(out))


def sortable_event_id(created: int, seq: int, rng: random.Random) -> str:
    """An ``evt_`` id that sorts by (created, seq), like Stripe's time-prefixed ids.

    Stripe breaks ties in list order by id; time-prefixed ids keep events of the
    same second in the order they happened, newest first.
    """
    tail = random_alnum(rng, 13)
    return f"evt_1{_b62(max(created, 0), 6)}{_b62(seq % 62**4, 4)}{tail}"


def event_object(event_id: str, type_: str, created: int, data: dict[str, Any], request: dict | None = None) -> dict:
    """A test-mode Stripe event; ``request`` is the API request that caused it (``None``: Stripe's own automation)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 0,
        "request": request if request is not None else {"id": None, "idempotency_key": None},
        "type": type_,
    }


def expandable_id(value: Any) -> Any:
    """The id in an expandable field, whether it holds the id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value
