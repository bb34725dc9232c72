"""The Stripe stand-in served over HTTP: routing, API keys, faults and the rate limit, then lists and retrieves.

Standard library only; the server listens on 127.0.0.1 in a daemon thread.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

from s2s_devtools.fakes.loopback import LoopbackHandler, LoopbackServer

from .api import API_VERSION, event_object, random_alnum, sortable_event_id
from .errors import StripeError, invalid_request
from .faults import FaultPlan, SlidingWindowLimit, error_body
from .querying import expand_paths, parse_list_query, parse_query
from .rendering import render
from .store import StoredObjects, deep_copy
from .webhooks import WebhookEndpoint, WebhookSender

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
    "tax_rates": "tax_rate",
    "events": "event",
    "payment_intents": "payment_intent",
    "invoice_payments": "invoice_payment",
}

# Objects Stripe really deletes (a ``*.deleted`` event removes them); a
# subscription "deleted" event only means it was canceled.
DELETABLE = frozenset({"customer", "product", "price", "coupon"})


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
        self._store = StoredObjects()
        self._lock = self._store.lock
        self._rate_window = SlidingWindowLimit()
        self._rng = random.Random()
        self._seq = 0
        self.webhooks = WebhookSender()

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
        self._store.load(objects, copy=copy)

    def load_events(self, events: Iterable[dict], *, copy: bool = True) -> None:
        """Store events (any age; only the retention window is ever served)."""
        self.load(({**e, "object": "event"} if e.get("object") != "event" else e for e in events), copy=copy)

    def emit(
        self,
        type: str,  # noqa: A002 - Stripe's name
        obj: dict,
        *,
        previous_attributes: dict | None = None,
        created: int | None = None,
    ) -> dict:
        """Record a change: store ``obj`` and append the Stripe event announcing it (and post it to the
        webhook endpoints, if any were added).

        ``*.deleted`` events of customers, products, prices and coupons delete
        the object (the event still carries its last state).
        """
        with self._lock:
            when = int(created) if created is not None else self.current_time()
            stored = deep_copy(obj)
            self._store.put(stored)
            kind = stored["object"]
            if type.endswith(".deleted") and kind in DELETABLE:
                self._store.mark_deleted(kind, stored["id"])
            self._seq += 1
            data: dict[str, Any] = {"object": deep_copy(obj)}
            if previous_attributes is not None:
                data["previous_attributes"] = deep_copy(previous_attributes)
            event = event_object(sortable_event_id(when, self._seq, self._rng), type, when, data)
            self._store.put(event)
        if self.webhooks.endpoints:
            self.webhooks.enqueue(render(event, frozenset()))  # collapsed, as Stripe renders webhooks
        return event

    def add_webhook_endpoint(self, url: str, secret: str, enabled_events: Iterable[str] = ("*",),
                             **options: Any) -> WebhookEndpoint:
        """Deliver every event emitted from now on (of ``enabled_events``) to ``url``, signed with ``secret``."""
        return self.webhooks.add_endpoint(url, secret, enabled_events, **options)

    def stop(self) -> None:
        self.webhooks.stop()
        super().stop()

    def dump(self) -> list[dict]:
        """Every stored object and event, then a deletion stub per deleted object (``load`` restores them)."""
        return self._store.dump()

    def save(self, path) -> None:
        """Write the whole account (objects, events, deletions) to a gzipped JSON file; ``restore`` reads it."""
        import gzip
        import json

        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(self._store.dump(), f, separators=(",", ":"))

    def restore(self, path) -> None:
        """Load an account written by ``save`` (replacing same ids)."""
        import gzip
        import json

        with gzip.open(path, "rt", encoding="utf-8") as f:
            self.load(json.load(f), copy=False)

    def delete(self, object_type: str, obj_id: str) -> None:
        """Delete an object: it leaves lists and retrieves return the deleted stub."""
        self._store.mark_deleted(COLLECTIONS.get(object_type, object_type), obj_id)

    def get(self, object_type: str, obj_id: str) -> dict | None:
        """The stored (fully expanded) object, deleted or not; for tests."""
        return self._store.get(COLLECTIONS.get(object_type, object_type), obj_id)

    def count(self, object_type: str) -> int:
        """How many live (not deleted) objects of a type are stored."""
        return self._store.count(COLLECTIONS.get(object_type, object_type))

    # ------------------------------------------------------------ HTTP

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        self._read_body(handler)  # drain so the connection stays usable
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
        self._send_json(
            handler,
            status,
            body,
            {
                "Request-Id": request_id,
                "Stripe-Version": headers.get("Stripe-Version") or API_VERSION,
                **extra_headers,
            },
        )

    def _respond(self, method: str, path: str, query: dict, headers: dict, extra: dict) -> tuple[int, dict]:
        fault = self.faults.check(path)
        if fault is not None:
            if fault == 409:
                extra["Stripe-Should-Retry"] = "true"
            # 429s are plain, like Stripe's: no Stripe-Should-Retry header.
            return fault, error_body(fault)
        limit = self.rate_limit_per_second
        if limit is not None and not self._rate_window.admit(limit, self.monotonic()):
            return 429, error_body(429)
        self._authenticate(headers)
        parts = [p for p in path.split("/") if p]
        if method == "GET" and len(parts) in (2, 3) and parts[0] == "v1" and parts[1] in COLLECTIONS:
            kind = COLLECTIONS[parts[1]]
            if len(parts) == 2:
                return 200, self._list(parts[1], kind, query)
            return 200, self._retrieve(kind, urllib.parse.unquote(parts[2]), query)
        raise invalid_request(
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            status=404,
        )

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
            raise invalid_request("Invalid API Key provided", status=401)

    def _retrieve(self, kind: str, oid: str, query: dict) -> dict:
        exp = frozenset(expand_paths(query))
        obj, deleted = self._store.lookup(kind, oid)
        if obj is None or (kind == "event" and obj["created"] < self._retention_floor()):
            raise invalid_request(f"No such {kind}: '{oid}'", "resource_missing", "id", status=404)
        if deleted:
            return {"id": oid, "object": kind, "deleted": True}
        return render(obj, exp)

    def _retention_floor(self) -> int:
        return self.current_time() - self.event_retention_days * 86400

    def _list(self, collection: str, kind: str, query: dict) -> dict:
        q = parse_list_query(kind, query, event_floor=self._retention_floor() if kind == "event" else None)
        page, has_more = self._store.select(kind, q)
        return {
            "object": "list",
            "url": f"/v1/{collection}",
            "has_more": has_more,
            "data": [render(o, q.expand) for o in page],
        }
