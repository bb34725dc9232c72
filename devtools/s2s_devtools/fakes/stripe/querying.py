"""What a request asks the Stripe stand-in for: query-string decoding, list filters, ``created`` ranges, cursors and pages.

Lists are newest first (ties by id, descending), ``limit`` 1..100, with
``starting_after`` / ``ending_before`` cursors, ``created`` ranges, the
equality filters each list endpoint documents, subscriptions' ``status``
(ended ones hidden by default) and the Events API's ``type`` / ``types``.
Stored objects are addressed by their sort key ``(created, id)``.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .api import expandable_id
from .errors import invalid_request

# Equality filters Stripe offers on list endpoints: query param -> field path.
# Values may be stored expanded ({"id": ...}); the id is compared.
EQ_FILTERS: dict[str, dict[str, tuple[str, ...]]] = {
    "customer": {"email": ("email",)},
    "subscription": {"customer": ("customer",)},
    "invoice": {
        "customer": ("customer",),
        "status": ("status",),
        "subscription": ("parent", "subscription_details", "subscription"),
    },
    "charge": {"customer": ("customer",), "payment_intent": ("payment_intent",)},
    "payment_intent": {"customer": ("customer",)},
    "refund": {"charge": ("charge",), "payment_intent": ("payment_intent",)},
    "dispute": {"charge": ("charge",), "payment_intent": ("payment_intent",)},
    "invoice_payment": {"invoice": ("invoice",)},
    "price": {"product": ("product",), "currency": ("currency",), "type": ("type",)},
}
BOOL_FILTERS: dict[str, dict[str, str]] = {
    "price": {"active": "active"},
    "product": {"active": "active"},
}

SUBSCRIPTION_STATUSES = frozenset(
    {
        "active",
        "past_due",
        "unpaid",
        "canceled",
        "incomplete",
        "incomplete_expired",
        "trialing",
        "paused",
        "all",
        "ended",
    }
)
# Stripe's default subscription list hides subscriptions that are over.
ENDED = frozenset({"canceled", "incomplete_expired"})

MAX_EXPAND_DEPTH = 4
MAX_EVENT_TYPES = 20

SortKey = tuple[int, str]


def parse_query(qs: str) -> dict[str, Any]:
    """Rails-style form decoding, as Stripe does: ``a[b]=1`` -> ``{"a": {"b": "1"}}``,
    ``a[]=x`` / ``a[0]=x`` -> ``{"a": ["x"]}``."""
    out: dict[str, Any] = {}
    for raw_key, value in urllib.parse.parse_qsl(qs, keep_blank_values=True):
        m = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", raw_key)
        if not m:
            out[raw_key] = value
            continue
        base, rest = m.group(1), m.group(2)
        parts = re.findall(r"\[([^\[\]]*)\]", rest)
        if not parts:
            out[base] = value
            continue
        container: Any = out
        key: Any = base
        for i, part in enumerate(parts):
            is_list = part == "" or part.isdigit()
            existing = container.get(key) if isinstance(container, dict) else None
            if is_list:
                if not isinstance(existing, list):
                    existing = []
                    container[key] = existing
                if i == len(parts) - 1:
                    existing.append(value)
                    break
                # a list of objects (a[0][b]=..) is not needed for GETs: flatten
                existing.append(value)
                break
            if not isinstance(existing, dict):
                existing = {}
                container[key] = existing
            if i == len(parts) - 1:
                existing[part] = value
            container, key = existing, part
    return out


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return [str(v) for _, v in sorted(value.items())]
    return [str(value)]


def int_param(name: str, value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise invalid_request(f"Invalid integer: {value}", "parameter_invalid_integer", name)




def expand_paths(query: dict) -> list[str]:
    """The request's ``expand[]`` paths; Stripe refuses paths deeper than ``MAX_EXPAND_DEPTH``."""
    paths = as_list(query.get("expand"))
    for p in paths:
        if len(p.split(".")) > MAX_EXPAND_DEPTH:
            raise invalid_request(
                f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. Property: {p}", None, "expand"
            )
    return paths


def field_at(obj: dict, path: tuple[str, ...]) -> Any:
    """The value (an id, for expandable fields) at ``path`` in ``obj``; ``None`` when absent."""
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return expandable_id(cur)


def sort_key(obj: dict) -> SortKey:
    """Where an object sits in list order: ``(created, id)``, served descending."""
    return (int(obj.get("created") or 0), str(obj["id"]))


@dataclass(frozen=True)
class ListQuery:
    """A list request's checked parameters."""

    limit: int
    starting_after: str | None
    ending_before: str | None
    lo_created: int | None  # inclusive
    hi_created: int | None  # inclusive
    # (param, field path, value): the one equality filter served from an index
    indexed: tuple[str, tuple[str, ...], str] | None
    predicates: tuple[Callable[[dict], bool], ...]
    expand: frozenset[str]  # relative to each listed object


def parse_list_query(kind: str, query: dict, *, event_floor: int | None = None) -> ListQuery:
    """Check a list request of objects of type ``kind`` the way Stripe does (errors in Stripe's order).

    ``event_floor`` is the oldest ``created`` the Events API still serves.
    """
    limit = int_param("limit", query.get("limit", 10))
    if not 1 <= limit <= 100:
        raise invalid_request("Invalid limit: must be between 1 and 100", "parameter_invalid_integer", "limit")
    exp = frozenset(p[len("data.") :] for p in expand_paths(query) if p.startswith("data."))
    starting_after = query.get("starting_after") or None
    ending_before = query.get("ending_before") or None
    if starting_after and ending_before:
        raise invalid_request(
            "You may only specify one of these parameters: ending_before, starting_after.", None, "starting_after"
        )
    lo_created, hi_created = created_range(query.get("created"))

    predicates: list[Callable[[dict], bool]] = []
    if kind == "event":
        if event_floor is not None:
            lo_created = event_floor if lo_created is None else max(lo_created, event_floor)
        predicates.extend(event_predicates(query))
    elif kind == "subscription":
        predicates.append(status_predicate(query.get("status")))
    elif kind == "invoice_payment" and isinstance(query.get("payment"), dict):
        # payment[type]=payment_intent&payment[payment_intent]=pi_...: the invoice a payment pays
        wanted = query["payment"]
        for field in ("type", "payment_intent", "charge"):
            if wanted.get(field):
                predicates.append(lambda o, f=field, v=str(wanted[field]): field_at(o, ("payment", f)) == v)

    indexed: tuple[str, tuple[str, ...], str] | None = None
    for param, path in EQ_FILTERS.get(kind, {}).items():
        if param == "status" and kind == "subscription":
            continue
        value = query.get(param)
        if value is None or value == "":
            continue
        value = str(value)
        if indexed is None:
            indexed = (param, path, value)
        else:
            predicates.append(lambda o, p=path, v=value: field_at(o, p) == v)
    for param, field in BOOL_FILTERS.get(kind, {}).items():
        if param in query:
            want = str(query[param]).lower() == "true"
            predicates.append(lambda o, f=field, w=want: bool(o.get(f)) == w)
    return ListQuery(limit, starting_after, ending_before, lo_created, hi_created, indexed, tuple(predicates), exp)


def created_range(created: Any) -> tuple[int | None, int | None]:
    """Inclusive ``(lowest, highest)`` ``created`` from ``created=`` or ``created[gt|gte|lt|lte]=``."""
    lo_created: int | None = None
    hi_created: int | None = None
    if isinstance(created, dict):
        for op, raw in created.items():
            v = int_param(f"created[{op}]", raw)
            if op == "gt":
                lo_created = v + 1 if lo_created is None else max(lo_created, v + 1)
            elif op == "gte":
                lo_created = v if lo_created is None else max(lo_created, v)
            elif op == "lt":
                hi_created = v - 1 if hi_created is None else min(hi_created, v - 1)
            elif op == "lte":
                hi_created = v if hi_created is None else min(hi_created, v)
            else:
                raise invalid_request(f"Received unknown parameter: created[{op}]", None, f"created[{op}]")
    elif created is not None:
        v = int_param("created", created)
        lo_created, hi_created = v, v
    return lo_created, hi_created


def status_predicate(status: Any) -> Callable[[dict], bool]:
    """Which subscriptions a ``status`` filter lists (none given: all but the ended ones)."""
    if status is None or status == "":
        return lambda o: o.get("status") not in ENDED
    status = str(status)
    if status not in SUBSCRIPTION_STATUSES:
        raise invalid_request(
            f"Invalid status: must be one of {', '.join(sorted(SUBSCRIPTION_STATUSES))}",
            "parameter_invalid_string",
            "status",
        )
    if status == "all":
        return lambda o: True
    if status == "ended":
        return lambda o: o.get("status") in ENDED
    return lambda o: o.get("status") == status


def event_predicates(query: dict) -> list[Callable[[dict], bool]]:
    """The Events API's ``type`` (``*`` wildcards allowed) or ``types[]`` (up to ``MAX_EVENT_TYPES``) filter."""
    type_ = query.get("type")
    types = as_list(query.get("types"))
    if type_ and types:
        raise invalid_request("You may only specify one of these parameters: type, types.", None, "types")
    if len(types) > MAX_EVENT_TYPES:
        raise invalid_request(f"You may only specify up to {MAX_EVENT_TYPES} types.", None, "types")
    if type_:
        pattern = str(type_)
        if "*" in pattern:
            rx = re.compile(fnmatch.translate(pattern))
            return [lambda e: rx.match(e["type"]) is not None]
        return [lambda e: e["type"] == pattern]
    if types:
        wanted = set(types)
        return [lambda e: e["type"] in wanted]
    return []


def select_page(
    q: ListQuery, kind: str, keys: Sequence[SortKey], objects: dict[str, dict], deleted: set[str]
) -> tuple[list[dict], bool]:
    """One page of ``q`` over ``keys`` (ascending), newest first, and whether more follow.

    ``objects`` are the stored objects of ``kind`` by id; ``deleted`` the ids not to list.
    """
    lo = 0 if q.lo_created is None else bisect.bisect_left(keys, (q.lo_created, ""))
    hi = len(keys) if q.hi_created is None else bisect.bisect_left(keys, (q.hi_created + 1, ""))
    cursor_id = q.starting_after or q.ending_before
    if cursor_id:
        cursor = objects.get(cursor_id)
        if cursor is None:
            raise invalid_request(
                f"No such {kind}: '{cursor_id}'",
                "resource_missing",
                "starting_after" if q.starting_after else "ending_before",
            )
        ck = sort_key(cursor)
        if q.starting_after:
            hi = min(hi, bisect.bisect_left(keys, ck))  # strictly older
        else:
            lo = max(lo, bisect.bisect_right(keys, ck))  # strictly newer

    def visible(k: SortKey) -> dict | None:
        if k[1] in deleted:
            return None
        o = objects[k[1]]
        for pred in q.predicates:
            if not pred(o):
                return None
        return o

    limit = q.limit
    page: list[dict] = []
    if q.ending_before:
        # the page right above the cursor, still returned newest first
        i = lo
        while i < hi and len(page) <= limit:
            o = visible(keys[i])
            if o is not None:
                page.append(o)
            i += 1
        has_more = len(page) > limit
        page = list(reversed(page[:limit]))
    else:
        i = hi - 1
        while i >= lo and len(page) <= limit:
            o = visible(keys[i])
            if o is not None:
                page.append(o)
            i -= 1
        has_more = len(page) > limit
        page = page[:limit]
    return page, has_more
