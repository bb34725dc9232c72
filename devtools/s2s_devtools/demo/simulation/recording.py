"""The account as it is being simulated: one seeded RNG, the clock, ids, objects and events.

Every part of the simulation draws from the same RNG in the same order, which
is what makes an account reproducible for a seed: reordering calls across
parts changes the account.
"""

from __future__ import annotations

import random
from typing import Any

from s2s_devtools.fakes.stripe.api import event_object, random_alnum, sortable_event_id

from .periods import add_months

# Object types in the order the account lists them.
OBJECT_TYPES = (
    "product",
    "price",
    "coupon",
    "tax_rate",
    "customer",
    "subscription",
    "invoice",
    "invoice_payment",
    "payment_intent",
    "charge",
    "refund",
    "dispute",
)


def copy_sharing(o: Any, shared: set[int]) -> Any:
    """Deep copy of JSON-like data, sharing the dicts listed in ``shared``."""
    t = type(o)
    if t is dict:
        if id(o) in shared:
            return o
        return {k: copy_sharing(v, shared) for k, v in o.items()}
    if t is list:
        return [copy_sharing(v, shared) for v in o]
    return o


class AccountRecorder:
    """What the simulation has produced so far, and how it names and announces things.

    ``out`` holds every object by type, in creation order; ``events`` every
    event (unsorted until the end). ``shared`` lists the ids of nested dicts
    that never change once built (prices and plans embedded in items), so
    snapshots can share them instead of copying.
    """

    def __init__(self, *, seed: int, now: int, months: int, events_since: int | None):
        self.rng = random.Random(seed)
        self.now = now
        self.start = add_months(now, -months)
        self.events_since = events_since
        self.events: list[dict] = []
        self.evt_seq = 0
        self.shared: set[int] = set()
        self.out: dict[str, list[dict]] = {k: [] for k in OBJECT_TYPES}

    def rid(self, prefix: str, n: int = 24, lead: str = "1") -> str:
        """A long Stripe id (``price_1…``, ``ch_3…``)."""
        return f"{prefix}_{lead}{random_alnum(self.rng, n - len(lead))}"

    def short_id(self, prefix: str) -> str:
        """A short Stripe id (``cus_…``, ``prod_…``)."""
        return f"{prefix}_{random_alnum(self.rng, 14)}"

    def request(self) -> dict:
        """The API request that caused an event (null for Stripe's own automation)."""
        key = "%032x" % self.rng.getrandbits(128)
        return {
            "id": "req_" + random_alnum(self.rng, 14),
            "idempotency_key": f"{key[:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:]}",
        }

    def emit(self, type_: str, obj: dict, created: int, previous: dict | None = None, api: bool = False) -> None:
        """Record the event Stripe sends for ``obj`` as it is now (``api``: caused by an API call)."""
        self.evt_seq += 1
        event_id = sortable_event_id(created, self.evt_seq, self.rng)
        request = self.request() if api else None
        # ids and request are drawn even for dropped events, so events_since
        # does not change the rest of the account
        if self.events_since is not None and created < self.events_since:
            return
        data: dict[str, Any] = {"object": copy_sharing(obj, self.shared)}
        if previous is not None:
            data["previous_attributes"] = copy_sharing(previous, self.shared)
        self.events.append(event_object(event_id, type_, created, data, request))

    def snap(self, obj: Any) -> Any:
        """A copy of ``obj`` as it is now (for event payloads and embedded lists)."""
        return copy_sharing(obj, self.shared)

    def objects(self) -> list[dict]:
        """Every object, grouped by type in ``OBJECT_TYPES`` order."""
        objects: list[dict] = []
        for kind in self.out.values():
            objects.extend(kind)
        return objects


class SimulationPart:
    """Base of the parts of the simulation: they share one recorder."""

    def __init__(self, rec: AccountRecorder):
        self.rec = rec
        self.rng = rec.rng
        self.now = rec.now
        self.start = rec.start
        self.out = rec.out
        self.rid = rec.rid
        self.short_id = rec.short_id
        self.emit = rec.emit
        self.snap = rec.snap
