"""The receiver as an ASGI application (Starlette): ``POST /stripe/webhooks`` and ``GET /healthz``.

Answers, in the order they are decided:

- 413 when the body is larger than ``max_body_bytes`` (from Content-Length,
  or while reading it), before anything is verified or stored;
- 400 when the signature is missing, wrong or stale, or the body is not a
  Stripe event: nothing is stored, and Stripe's retry will fail the same way
  (its Dashboard shows the failed delivery);
- 503 when the state store cannot take the event: Stripe retries the
  delivery (with backoff, for up to three days);
- 200 once the event is committed to the inbox, whether it is new or a
  redelivery (stored once by event id).

Logs name event ids and types only: never the body (customer emails, names,
card details) or the secret.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.store.webhook_inbox import InboxUnavailable
from s2s_pipeline.webhooks.settings import ReceiverSettings
from s2s_pipeline.webhooks.verification import RejectedDelivery, verified_event

log = logging.getLogger("s2s_pipeline.webhooks")

WEBHOOK_PATH = "/stripe/webhooks"
HEALTH_PATH = "/healthz"


class _BodyTooLarge(Exception):
    pass


class StoreHandle:
    """The state store, opened on first use and again after a failed open.

    The receiver starts (and answers 503) while the store is down, so a
    database restart never takes the endpoint off the network; Stripe's
    retries deliver what arrived meanwhile.
    """

    def __init__(self, opener: Callable[[], StateStore]) -> None:
        self._opener = opener
        self._store: StateStore | None = None
        self._lock = threading.Lock()

    def get(self) -> StateStore:
        if self._store is not None:
            return self._store
        with self._lock:
            if self._store is None:
                try:
                    self._store = self._opener()
                except Exception as exc:  # noqa: BLE001 - any failure to open means "not now"
                    raise InboxUnavailable(f"state store cannot be opened: {type(exc).__name__}") from exc
            return self._store

    def dispose(self) -> None:
        if self._store is not None:
            self._store.dispose()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: ReceiverSettings, open_store: Callable[[], StateStore] | None = None,
               clock_ms: Callable[[], int] | None = None) -> Starlette:
    """The receiver. ``open_store`` (default: ``StateStore.from_url(settings.database_url)``) is called lazily."""
    store = StoreHandle(open_store or (lambda: StateStore.from_url(settings.database_url)))
    now_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)

    async def receive(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except _BodyTooLarge:
            log.warning("webhook refused (413): body larger than %d bytes", settings.max_body_bytes)
            return JSONResponse({"error": f"body larger than {settings.max_body_bytes} bytes"}, status_code=413)
        try:
            event = verified_event(body, request.headers.get("stripe-signature"), settings.secret,
                                   settings.tolerance_s)
        except RejectedDelivery as exc:
            log.warning("webhook refused (400): %s", exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=400)
        received = now_ms()
        try:
            new = await run_in_threadpool(lambda: store.get().inbox.store(event, received))
        except InboxUnavailable as exc:
            log.error("webhook %s (%s) not stored, answering 503 so Stripe retries: %s",
                      event["id"], event["type"], exc)
            return JSONResponse({"error": "state store unavailable; retry later"}, status_code=503)
        log.info("webhook %s (%s) %s", event["id"], event["type"], "stored" if new else "already stored")
        return JSONResponse({"received": True, "event_id": event["id"], "duplicate": not new})

    async def health(_: Request) -> JSONResponse:
        try:
            await run_in_threadpool(lambda: store.get().inbox.ping())
        except InboxUnavailable:
            return JSONResponse({"status": "unavailable", "state_store": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "state_store": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette):
        yield
        store.dispose()

    app = Starlette(
        routes=[Route(WEBHOOK_PATH, receive, methods=["POST"]), Route(HEALTH_PATH, health, methods=["GET"])],
        lifespan=lifespan,
    )
    app.state.store = store
    return app
