"""Webhook deliveries from the stand-in, signed the way Stripe signs them.

Stripe POSTs each event to every endpoint enabled for its type, with
``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed
by the endpoint's secret>``, and retries a delivery that gets no 2xx with
exponential backoff (over three days; here over seconds). Deliveries are
asynchronous: ``emit`` returns at once and a background thread posts.

Each attempt is recorded on the endpoint (``endpoint.attempts``) with its
HTTP status (or the error) and how long the answer took.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` (the exact body text)."""
    t = int(time.time() if timestamp is None else timestamp)
    mac = hmac.new(secret.encode("utf-8"), f"{t}.{payload}".encode("utf-8"), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def webhook_body(event: dict) -> str:
    """The body Stripe posts: the event as pretty-printed JSON."""
    return json.dumps(event, indent=2)


@dataclass
class Attempt:
    event_id: str
    status: int | None  # None: no HTTP answer (refused, timeout)
    error: str | None
    seconds: float
    at: float


@dataclass
class WebhookEndpoint:
    """A registered endpoint: where to post, its signing secret, which event types (``*``: all)."""

    url: str
    secret: str
    enabled_events: frozenset[str] = frozenset({"*"})
    attempts: list[Attempt] = field(default_factory=list)
    max_attempts: int = 6
    first_retry_s: float = 0.5

    def wants(self, event_type: str) -> bool:
        return "*" in self.enabled_events or event_type in self.enabled_events

    def delivered(self) -> set[str]:
        """Event ids this endpoint answered with a 2xx."""
        return {a.event_id for a in self.attempts if a.status is not None and 200 <= a.status < 300}


def post_signed(url: str, body: str, secret: str, *, timestamp: int | None = None, timeout: float = 10.0,
                signature: str | None = None) -> int | None:
    """POST one signed delivery; returns the HTTP status (None when there was no answer)."""
    req = urllib.request.Request(url, data=body.encode("utf-8"), method="POST", headers={
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": signature if signature is not None else sign(body, secret, timestamp),
    })
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


class WebhookSender:
    """Posts events to endpoints from one background thread, retrying failures with backoff."""

    def __init__(self) -> None:
        self.endpoints: list[WebhookEndpoint] = []
        self._queue: list[tuple[float, int, WebhookEndpoint, dict, int]] = []  # (due, seq, endpoint, event, attempt)
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._pending = 0
        self._stopped = False
        self._thread: threading.Thread | None = None

    def add_endpoint(self, url: str, secret: str, enabled_events: Iterable[str] = ("*",), **options) -> WebhookEndpoint:
        endpoint = WebhookEndpoint(url=url, secret=secret, enabled_events=frozenset(enabled_events), **options)
        with self._cond:
            self.endpoints.append(endpoint)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stripe-standin-webhooks", daemon=True)
                self._thread.start()
        return endpoint

    def enqueue(self, event: dict) -> None:
        """Schedule ``event`` for every endpoint that wants its type (now)."""
        with self._cond:
            for endpoint in self.endpoints:
                if endpoint.wants(event["type"]):
                    heapq.heappush(self._queue, (time.monotonic(), next(self._seq), endpoint, event, 1))
                    self._pending += 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until every scheduled delivery succeeded or gave up; False at the timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._queue else max(0.0, self._queue[0][0] - time.monotonic()))
                if self._stopped:
                    return
                _, _, endpoint, event, attempt = heapq.heappop(self._queue)
            started = time.monotonic()
            status, error = None, None
            try:
                status = post_signed(endpoint.url, webhook_body(event), endpoint.secret)
            except OSError as exc:  # refused, reset, timeout
                error = type(exc).__name__
            endpoint.attempts.append(Attempt(event["id"], status, error, round(time.monotonic() - started, 4),
                                             time.time()))
            ok = status is not None and 200 <= status < 300
            with self._cond:
                if not ok and attempt < endpoint.max_attempts:
                    due = time.monotonic() + endpoint.first_retry_s * 2 ** (attempt - 1)
                    heapq.heappush(self._queue, (due, next(self._seq), endpoint, event, attempt + 1))
                else:
                    self._pending -= 1
                self._cond.notify_all()
