"""A stateful stand-in for the Stripe API, for demos, tests and benchmarks.

It answers the read requests the pipeline makes (lists, retrieves, the Events
feed) the way Stripe documents them for API version ``2026-10-28.endive``, so
the extraction code can be exercised end to end without a Stripe account:

- lists are newest first (ties by id, descending) with ``limit`` 1..100,
  ``starting_after`` / ``ending_before`` cursors and ``created`` filters;
- subscriptions leave out ended ones unless asked (``status=all``);
- ``/v1/events`` only shows the last 30 days, like Stripe's Events API, so a
  pipeline that falls behind for longer really does lose changes;
- objects are stored fully expanded and served *collapsed* as Stripe serves
  them (price tiers, subscription discounts, coupon inside a discount, invoice
  payments, charge refunds) unless ``expand[]`` asks for them; event payloads
  are always served collapsed, as Stripe renders webhooks;
- API keys, error bodies and 429s have Stripe's shapes, and ``faults`` /
  ``rate_limit_per_second`` inject the failures a real account produces.

Standard library only; the server listens on 127.0.0.1 in a daemon thread.

Example::

    with StripeStandIn() as standin:
        standin.load(objects)
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": standin.base_url}, max_network_retries=0
        )
        client.v1.customers.list(params={"limit": 100})
"""

from __future__ import annotations

import bisect
import collections
import fnmatch
import json
import random
import re
import string
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

from s2s_devtools.fakes.loopback import LoopbackHandler, LoopbackServer

API_VERSION = "2026-10-28.endive"

# URL collection name -> the ``object`` value of what it holds.
COLLECTIONS: dict[str, str] = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "charges": "charge",
    "refunds": "refund",
    "disputes": "dispute",
    "prices": "price",
    "products": "product",
    "coupons": "coupon",
    "events": "event",
    "payment_intents": "payment_intent",
    "invoice_payments": "invoice_payment",
}
_OBJECT_TO_COLLECTION = {v: k for k, v in COLLECTIONS.items()}

# Objects Stripe really deletes (a ``*.deleted`` event removes them); a
# subscription "deleted" event only means it was canceled.
DELETABLE = frozenset({"customer", "product", "price", "coupon"})

# Equality filters Stripe offers on list endpoints: query param -> field path.
# Values may be stored expanded ({"id": ...}); the id is compared.
_EQ_FILTERS: dict[str, dict[str, tuple[str, ...]]] = {
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
_BOOL_FILTERS: dict[str, dict[str, str]] = {
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
_ENDED = frozenset({"canceled", "incomplete_expired"})

MAX_EXPAND_DEPTH = 4
MAX_EVENT_TYPES = 20

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


class StripeError(Exception):
    """An error response in Stripe's ``{"error": {...}}`` shape."""

    def __init__(self, status: int, type_: str, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        body: dict[str, Any] = {"type": type_, "message": message}
        if code is not None:
            body["code"] = code
        if param is not None:
            body["param"] = param
        self.body = {"error": body}


def error_body(status: int) -> dict:
    """Stripe's error body for an injected failure of the given HTTP status."""
    if status == 429:
        return {
            "error": {
                "type": "invalid_request_error",
                "code": "rate_limit",
                "message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
            }
        }
    if status >= 500:
        return {
            "error": {
                "type": "api_error",
                "code": "api_error",
                "message": "Sorry, something went wrong. We've already been notified of the problem.",
            }
        }
    if status == 409:
        return {
            "error": {
                "type": "invalid_request_error",
                "code": "lock_timeout",
                "message": "This object cannot be accessed right now because another API request or Stripe process is currently accessing it.",
            }
        }
    if status == 401:
        return {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
    return {"error": {"type": "invalid_request_error", "code": "injected_fault", "message": f"Injected fault ({status})."}}


class FaultPlan:
    """Failures to inject into upcoming requests, the way a busy Stripe fails.

    Checked per request, in order: path-specific faults, then ``fail_next``,
    then the random failure rate. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: collections.deque[int] = collections.deque()
        self._paths: list[list] = []  # [substring, remaining, status]
        self._p = 0.0
        self._p_status = 429
        self._rng = random.Random(1)
        self.injected = 0  # how many responses were faults

    def fail_next(self, count: int, status: int = 429) -> None:
        """The next ``count`` requests (any path) fail with ``status``."""
        with self._lock:
            self._next.extend([status] * count)

    def fail_probability(self, p: float, status: int = 429, seed: int = 1) -> None:
        """Each request fails with probability ``p`` (seeded, so runs repeat); ``p=0`` clears."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be within 0..1")
        with self._lock:
            self._p = p
            self._p_status = status
            self._rng = random.Random(seed)

    def fail_paths(self, substring: str, count: int, status: int = 429) -> None:
        """The next ``count`` requests whose path contains ``substring`` fail with ``status``."""
        with self._lock:
            self._paths.append([substring, count, status])

    def clear(self) -> None:
        """Remove every planned fault."""
        with self._lock:
            self._next.clear()
            self._paths.clear()
            self._p = 0.0

    def check(self, path: str) -> int | None:
        """Consume and return the status this request must fail with, if any."""
        with self._lock:
            for plan in self._paths:
                if plan[1] > 0 and plan[0] in path:
                    plan[1] -= 1
                    self.injected += 1
                    return plan[2]
            if self._next:
                self.injected += 1
                return self._next.popleft()
            if self._p > 0 and self._rng.random() < self._p:
                self.injected += 1
                return self._p_status
        return None


def _id_of(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("id")
    return value


def _get_path(obj: dict, path: tuple[str, ...]) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return _id_of(cur)


def _key(obj: dict) -> tuple[int, str]:
    return (int(obj.get("created") or 0), str(obj["id"]))


# ---------------------------------------------------------------- rendering
# Stripe returns expandable/includable fields collapsed unless expand[] names
# them. ``exp`` is the set of expand paths relative to the object rendered.


def _expanded(exp: frozenset[str], path: str) -> bool:
    if path in exp:
        return True
    prefix = path + "."
    return any(p.startswith(prefix) for p in exp)


def _sub(exp: frozenset[str], path: str) -> frozenset[str]:
    prefix = path + "."
    n = len(prefix)
    return frozenset(p[n:] for p in exp if p.startswith(prefix))


def _render_price(price: dict, exp: frozenset[str]) -> dict:
    if "tiers" in price and not _expanded(exp, "tiers"):
        out = dict(price)
        del out["tiers"]
        return out
    return price


def _render_discount(discount: dict, exp: frozenset[str]) -> dict:
    source = discount.get("source")
    if isinstance(source, dict) and isinstance(source.get("coupon"), dict) and not _expanded(exp, "source.coupon"):
        out = dict(discount)
        out["source"] = dict(source, coupon=source["coupon"].get("id"))
        return out
    return discount


def _render_discounts(value: Any, exp: frozenset[str], field: str) -> Any:
    if not isinstance(value, list):
        return value
    if _expanded(exp, field):
        sub = _sub(exp, field)
        return [_render_discount(d, sub) if isinstance(d, dict) else d for d in value]
    return [_id_of(d) for d in value]


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
    if "refunds" in charge and not _expanded(exp, "refunds"):
        out = dict(charge)
        del out["refunds"]
        return out
    return charge


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


# ---------------------------------------------------------------- query parsing


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


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return [str(v) for _, v in sorted(value.items())]
    return [str(value)]


def _int_param(name: str, value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise StripeError(400, "invalid_request_error", f"Invalid integer: {value}", "parameter_invalid_integer", name)


# ---------------------------------------------------------------- the server


class _StripeHandler(LoopbackHandler):
    server_version = "StripeStandIn/1.0"

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header is Stripe's clock, the one event ``created`` uses:
        # follow the stand-in's ``now``, not the host's wall clock.
        if timestamp is None:
            timestamp = self.server.owner.current_time()  # type: ignore[attr-defined]
        return super().date_time_string(timestamp)


class StripeStandIn(LoopbackServer):
    """An in-memory Stripe account served over HTTP on 127.0.0.1.

    ``now`` is the account's clock (Unix seconds) for the 30-day event window
    and for events emitted without a time; ``None`` follows the wall clock.

    Public attributes:

    - ``requests``: every request served, oldest first, as
      ``{method, path, query (parsed), headers, status, time}``;
    - ``faults``: a :class:`FaultPlan` of failures to inject;
    - ``rate_limit_per_second``: ``None`` (off) or the most requests admitted
      in any sliding one-second window; the rest get Stripe's 429;
    - ``monotonic``: the clock of that window (replace it to test without
      sleeping).

    Stored objects are never mutated in place (writes replace them), so
    responses can be rendered outside the lock.
    """

    thread_name = "stripe-standin"
    handler_class = _StripeHandler

    def __init__(self, *, now: int | None = None, event_retention_days: int = 30, api_key_prefix: str = "sk_"):
        self.now = now
        self.event_retention_days = event_retention_days
        self.api_key_prefix = api_key_prefix
        self.requests: list[dict] = []
        self.faults = FaultPlan()
        self.rate_limit_per_second: float | None = None
        # Clock of the rate limiter; replaceable so tests need not sleep.
        self.monotonic: Callable[[], float] = time.monotonic
        super().__init__()
        self._lock = threading.RLock()
        self._objects: dict[str, dict[str, dict]] = collections.defaultdict(dict)
        self._deleted: dict[str, set[str]] = collections.defaultdict(set)
        # Per object type: ascending (created, id) keys, rebuilt lazily after
        # bulk loads; single writes keep it sorted in place.
        self._keys: dict[str, list[tuple[int, str]] | None] = {}
        # (object type, field) -> value -> ascending keys; dropped on any write.
        self._field_index: dict[tuple[str, str], dict[Any, list[tuple[int, str]]]] = {}
        self._window: collections.deque[float] = collections.deque()
        self._rng = random.Random()
        self._seq = 0

    # ------------------------------------------------------------ lifecycle

    def current_time(self) -> int:
        return int(self.now if self.now is not None else time.time())

    # ------------------------------------------------------------ state

    def load(self, objects: Iterable[dict], *, copy: bool = True) -> None:
        """Store objects by their ``object`` type and id, replacing same ids.

        Objects are kept fully expanded; responses collapse them. A stub with
        ``deleted: true`` marks the object deleted. ``copy=False`` stores the
        caller's dicts as they are (faster for large accounts; the caller must
        not mutate them afterwards).
        """
        with self._lock:
            touched = set()
            for obj in objects:
                kind = obj["object"]
                stored = _deep_copy(obj) if copy else obj
                oid = stored["id"]
                bucket = self._objects[kind]
                if stored.get("deleted") and oid in bucket:
                    # a deletion stub keeps the last known state (and its place)
                    self._deleted[kind].add(oid)
                    continue
                bucket[oid] = stored
                if stored.get("deleted"):
                    self._deleted[kind].add(oid)
                else:
                    self._deleted[kind].discard(oid)
                touched.add(kind)
            for kind in touched:
                self._keys[kind] = None
                self._drop_field_index(kind)

    def load_events(self, events: Iterable[dict], *, copy: bool = True) -> None:
        """Store events (any age; only the retention window is ever served)."""
        self.load(({**e, "object": "event"} if e.get("object") != "event" else e for e in events), copy=copy)

    def _put(self, obj: dict) -> None:
        """Store one object, keeping the sorted key list in place (no re-sort)."""
        kind = obj["object"]
        bucket = self._objects[kind]
        old = bucket.get(obj["id"])
        bucket[obj["id"]] = obj
        self._deleted[kind].discard(obj["id"])
        keys = self._keys.get(kind)
        if keys is not None:
            new_key = _key(obj)
            if old is not None:
                old_key = _key(old)
                if old_key != new_key:
                    i = bisect.bisect_left(keys, old_key)
                    if i < len(keys) and keys[i] == old_key:
                        del keys[i]
                    bisect.insort(keys, new_key)
            else:
                bisect.insort(keys, new_key)
        self._drop_field_index(kind)

    def _drop_field_index(self, kind: str) -> None:
        for k in [k for k in self._field_index if k[0] == kind]:
            del self._field_index[k]

    def emit(
        self,
        type: str,  # noqa: A002 - Stripe's name
        obj: dict,
        *,
        previous_attributes: dict | None = None,
        created: int | None = None,
    ) -> dict:
        """Record a change: store ``obj`` and append the Stripe event announcing it.

        ``*.deleted`` events of customers, products, prices and coupons delete
        the object (the event still carries its last state).
        """
        with self._lock:
            when = int(created) if created is not None else self.current_time()
            stored = _deep_copy(obj)
            self._put(stored)
            kind = stored["object"]
            if type.endswith(".deleted") and kind in DELETABLE:
                self._deleted[kind].add(stored["id"])
            self._seq += 1
            data: dict[str, Any] = {"object": _deep_copy(obj)}
            if previous_attributes is not None:
                data["previous_attributes"] = _deep_copy(previous_attributes)
            event = {
                "id": sortable_event_id(when, self._seq, self._rng),
                "object": "event",
                "api_version": API_VERSION,
                "created": when,
                "data": data,
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": None, "idempotency_key": None},
                "type": type,
            }
            self._put(event)
            return event

    def delete(self, object_type: str, obj_id: str) -> None:
        """Delete an object: it leaves lists and retrieves return the deleted stub."""
        kind = COLLECTIONS.get(object_type, object_type)
        with self._lock:
            if obj_id not in self._objects[kind]:
                raise KeyError(f"no {kind} {obj_id}")
            self._deleted[kind].add(obj_id)
            self._drop_field_index(kind)

    def get(self, object_type: str, obj_id: str) -> dict | None:
        """The stored (fully expanded) object, deleted or not; for tests."""
        kind = COLLECTIONS.get(object_type, object_type)
        with self._lock:
            return self._objects[kind].get(obj_id)

    def count(self, object_type: str) -> int:
        """How many live (not deleted) objects of a type are stored."""
        kind = COLLECTIONS.get(object_type, object_type)
        with self._lock:
            return len(self._objects[kind]) - len(self._deleted[kind])

    # ------------------------------------------------------------ HTTP

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)  # drain so the connection stays usable
        parsed = urllib.parse.urlsplit(handler.path)
        path = parsed.path.rstrip("/") or "/"
        query = parse_query(parsed.query)
        headers = {k: v for k, v in handler.headers.items()}
        extra_headers: dict[str, str] = {}
        try:
            status, body = self._respond(method, path, query, headers, extra_headers)
        except StripeError as exc:
            status, body = exc.status, exc.body
        except Exception as exc:  # a bug here must look like a Stripe 500, not hang the client
            status, body = 500, {"error": {"type": "api_error", "message": f"stand-in error: {exc!r}"}}
        payload = json.dumps(body, separators=(",", ":")).encode()
        with self._lock:
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "query": query,
                    "headers": headers,
                    "status": status,
                    "time": self.monotonic(),
                }
            )
        request_id = "req_" + random_alnum(self._rng, 14)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", request_id)
        handler.send_header("Stripe-Version", headers.get("Stripe-Version") or API_VERSION)
        for k, v in extra_headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(payload)

    def _respond(self, method: str, path: str, query: dict, headers: dict, extra: dict) -> tuple[int, dict]:
        fault = self.faults.check(path)
        if fault is not None:
            if fault == 409:
                extra["Stripe-Should-Retry"] = "true"
            # 429s are plain, like Stripe's: no Stripe-Should-Retry header.
            return fault, error_body(fault)
        if self.rate_limit_per_second is not None and not self._admit():
            return 429, error_body(429)
        self._authenticate(headers)
        parts = [p for p in path.split("/") if p]
        if method == "GET" and len(parts) in (2, 3) and parts[0] == "v1" and parts[1] in COLLECTIONS:
            kind = COLLECTIONS[parts[1]]
            if len(parts) == 2:
                return 200, self._list(parts[1], kind, query)
            return 200, self._retrieve(kind, urllib.parse.unquote(parts[2]), query)
        raise StripeError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def _admit(self) -> bool:
        """Sliding one-second window over admitted requests."""
        limit = self.rate_limit_per_second
        with self._lock:
            now = self.monotonic()
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if limit is not None and len(self._window) >= limit:
                return False
            self._window.append(now)
            return True

    def _authenticate(self, headers: dict) -> None:
        auth = ""
        for k, v in headers.items():
            if k.lower() == "authorization":
                auth = v
        key = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""
        prefixes = [self.api_key_prefix]
        if self.api_key_prefix.startswith("sk_"):
            # restricted (read-only) keys work wherever secret keys do
            prefixes.append("rk_" + self.api_key_prefix[3:])
        if not any(key.startswith(p) and len(key) > len(p) for p in prefixes):
            raise StripeError(401, "invalid_request_error", "Invalid API Key provided")

    @staticmethod
    def _expand_paths(query: dict) -> list[str]:
        paths = _as_list(query.get("expand"))
        for p in paths:
            if len(p.split(".")) > MAX_EXPAND_DEPTH:
                raise StripeError(
                    400,
                    "invalid_request_error",
                    f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. Property: {p}",
                    None,
                    "expand",
                )
        return paths

    def _retrieve(self, kind: str, oid: str, query: dict) -> dict:
        exp = frozenset(self._expand_paths(query))
        with self._lock:
            obj = self._objects[kind].get(oid)
            deleted = oid in self._deleted[kind]
        if obj is None or (kind == "event" and obj["created"] < self._retention_floor()):
            raise StripeError(404, "invalid_request_error", f"No such {kind}: '{oid}'", "resource_missing", "id")
        if deleted:
            return {"id": oid, "object": kind, "deleted": True}
        return render(obj, exp)

    def _retention_floor(self) -> int:
        return self.current_time() - self.event_retention_days * 86400

    def _sorted_keys(self, kind: str) -> list[tuple[int, str]]:
        keys = self._keys.get(kind)
        if keys is None:
            keys = sorted(_key(o) for o in self._objects[kind].values())
            self._keys[kind] = keys
        return keys

    def _field_keys(self, kind: str, field: str, path: tuple[str, ...], value: str) -> list[tuple[int, str]]:
        index = self._field_index.get((kind, field))
        if index is None:
            index = collections.defaultdict(list)
            for k in self._sorted_keys(kind):
                index[_get_path(self._objects[kind][k[1]], path)].append(k)
            self._field_index[(kind, field)] = index
        return index.get(value, [])

    def _list(self, collection: str, kind: str, query: dict) -> dict:
        limit = _int_param("limit", query.get("limit", 10))
        if not 1 <= limit <= 100:
            raise StripeError(
                400,
                "invalid_request_error",
                "Invalid limit: must be between 1 and 100",
                "parameter_invalid_integer",
                "limit",
            )
        exp = frozenset(p[len("data.") :] for p in self._expand_paths(query) if p.startswith("data."))
        starting_after = query.get("starting_after") or None
        ending_before = query.get("ending_before") or None
        if starting_after and ending_before:
            raise StripeError(
                400,
                "invalid_request_error",
                "You may only specify one of these parameters: ending_before, starting_after.",
                None,
                "starting_after",
            )

        lo_created: int | None = None
        hi_created: int | None = None  # inclusive bounds
        created = query.get("created")
        if isinstance(created, dict):
            for op, raw in created.items():
                v = _int_param(f"created[{op}]", raw)
                if op == "gt":
                    lo_created = v + 1 if lo_created is None else max(lo_created, v + 1)
                elif op == "gte":
                    lo_created = v if lo_created is None else max(lo_created, v)
                elif op == "lt":
                    hi_created = v - 1 if hi_created is None else min(hi_created, v - 1)
                elif op == "lte":
                    hi_created = v if hi_created is None else min(hi_created, v)
                else:
                    raise StripeError(
                        400, "invalid_request_error", f"Received unknown parameter: created[{op}]", None, f"created[{op}]"
                    )
        elif created is not None:
            v = _int_param("created", created)
            lo_created, hi_created = v, v

        predicates: list[Callable[[dict], bool]] = []
        if kind == "event":
            floor = self._retention_floor()
            lo_created = floor if lo_created is None else max(lo_created, floor)
            predicates.extend(self._event_predicates(query))
        elif kind == "subscription":
            predicates.append(self._status_predicate(query.get("status")))
        elif kind == "invoice_payment" and isinstance(query.get("payment"), dict):
            # payment[type]=payment_intent&payment[payment_intent]=pi_...: the invoice a payment pays
            wanted = query["payment"]
            for field in ("type", "payment_intent", "charge"):
                if wanted.get(field):
                    predicates.append(lambda o, f=field, v=str(wanted[field]): _get_path(o, ("payment", f)) == v)

        eq_field: tuple[str, tuple[str, ...], str] | None = None
        for param, path in _EQ_FILTERS.get(kind, {}).items():
            if param == "status" and kind == "subscription":
                continue
            value = query.get(param)
            if value is None or value == "":
                continue
            value = str(value)
            if eq_field is None:
                eq_field = (param, path, value)  # served from an index
            else:
                predicates.append(lambda o, p=path, v=value: _get_path(o, p) == v)
        for param, field in _BOOL_FILTERS.get(kind, {}).items():
            if param in query:
                want = str(query[param]).lower() == "true"
                predicates.append(lambda o, f=field, w=want: bool(o.get(f)) == w)

        with self._lock:
            bucket = self._objects[kind]
            deleted = self._deleted[kind]
            if eq_field is not None:
                keys = self._field_keys(kind, eq_field[0], eq_field[1], eq_field[2])
            else:
                keys = self._sorted_keys(kind)
            lo = 0 if lo_created is None else bisect.bisect_left(keys, (lo_created, ""))
            hi = len(keys) if hi_created is None else bisect.bisect_left(keys, (hi_created + 1, ""))
            cursor_id = starting_after or ending_before
            if cursor_id:
                cursor = bucket.get(cursor_id)
                if cursor is None:
                    raise StripeError(
                        400,
                        "invalid_request_error",
                        f"No such {kind}: '{cursor_id}'",
                        "resource_missing",
                        "starting_after" if starting_after else "ending_before",
                    )
                ck = _key(cursor)
                if starting_after:
                    hi = min(hi, bisect.bisect_left(keys, ck))  # strictly older
                else:
                    lo = max(lo, bisect.bisect_right(keys, ck))  # strictly newer

            def visible(k: tuple[int, str]) -> dict | None:
                if k[1] in deleted:
                    return None
                o = bucket[k[1]]
                for pred in predicates:
                    if not pred(o):
                        return None
                return o

            page: list[dict] = []
            if ending_before:
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
        return {
            "object": "list",
            "url": f"/v1/{collection}",
            "has_more": has_more,
            "data": [render(o, exp) for o in page],
        }

    @staticmethod
    def _status_predicate(status: Any) -> Callable[[dict], bool]:
        if status is None or status == "":
            return lambda o: o.get("status") not in _ENDED
        status = str(status)
        if status not in SUBSCRIPTION_STATUSES:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Invalid status: must be one of {', '.join(sorted(SUBSCRIPTION_STATUSES))}",
                "parameter_invalid_string",
                "status",
            )
        if status == "all":
            return lambda o: True
        if status == "ended":
            return lambda o: o.get("status") in _ENDED
        return lambda o: o.get("status") == status

    @staticmethod
    def _event_predicates(query: dict) -> list[Callable[[dict], bool]]:
        type_ = query.get("type")
        types = _as_list(query.get("types"))
        if type_ and types:
            raise StripeError(
                400,
                "invalid_request_error",
                "You may only specify one of these parameters: type, types.",
                None,
                "types",
            )
        if len(types) > MAX_EVENT_TYPES:
            raise StripeError(
                400,
                "invalid_request_error",
                f"You may only specify up to {MAX_EVENT_TYPES} types.",
                None,
                "types",
            )
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


def _deep_copy(o: Any) -> Any:
    """Copy JSON-like data (dicts, lists, scalars) much faster than copy.deepcopy."""
    t = type(o)
    if t is dict:
        return {k: _deep_copy(v) for k, v in o.items()}
    if t is list:
        return [_deep_copy(v) for v in o]
    return o
