"""A local Segment HTTP Tracking API, for the demo and for fault-injection tests.

It accepts what ``segment-analytics-python`` (and any other HTTP client) posts
to Segment's tracking API and keeps it in memory:

- ``POST /v1/batch`` with ``{"batch": [...], "sentAt", "writeKey"}``, and the
  single-message endpoints ``/v1/identify``, ``/v1/track``, ``/v1/group``,
  ``/v1/page``, ``/v1/screen``, ``/v1/alias``;
- auth as Segment does it: HTTP Basic with the write key as username and an
  empty password, or ``writeKey`` in the JSON body; otherwise 401;
- ``Content-Encoding: gzip`` bodies are decompressed;
- Segment's documented limits (REFERENCE §D.2) are enforced strictly, as a
  400 for the whole request: a body over 500 KB (decompressed), a message over
  32 KB, more than 2,500 messages, bad JSON, or a message without
  ``messageId``, ``type`` and ``userId``/``anonymousId``. (Real Segment answers
  some of these with a 200 and drops the events quietly; a 400 here makes the
  mistake visible in tests.)

Accepted messages are stored in arrival order with ``receivedAt`` added;
duplicates (same ``messageId``) are kept in ``accepted`` so retries can be
counted, and :meth:`SegmentSink.accepted_by_message_id` deduplicates the way
Segment does (first message per ``messageId`` wins).

``faults`` (:class:`SinkFaults`) injects the failures the delivery code must
survive: the next N requests failing, a random failure rate, 429 with
``Retry-After``, permanently rejected batches, slow responses, and an answer
held back (the batch stored, the 200 not yet sent: crash tests kill the
client while it waits). A failed request stores nothing.

The write key is never logged or stored: the request log keeps no headers and
``writeKey`` is removed from stored messages.

Standard library only; the server listens on 127.0.0.1 in a daemon thread.

Example::

    with SegmentSink() as sink:
        client = Client("demo_write_key", host=sink.base_url, gzip=True)
        client.identify("cus_1", {"plan": "pro"})
        client.flush()
        assert sink.accepted[0]["userId"] == "cus_1"
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any

from s2s_devtools.fakes.faults import HTTPFaults
from s2s_devtools.fakes.loopback import LoopbackServer

MAX_REQUEST_BYTES = 500 * 1024  # a /v1/batch body, decompressed
MAX_MESSAGE_BYTES = 32 * 1024  # one message (analytics-python uses the same 32 << 10)
MAX_BATCH_MESSAGES = 2500

# The message types Segment's tracking API knows, and the fields each needs on
# top of messageId / type / (userId | anonymousId).
MESSAGE_TYPES: dict[str, tuple[str, ...]] = {
    "identify": (),
    "track": ("event",),
    "group": ("groupId",),
    "page": (),
    "screen": (),
    "alias": ("previousId",),
}
SINGLE_ENDPOINTS = frozenset(MESSAGE_TYPES)


class HTTPError(Exception):
    """An error response: status, JSON body and extra headers."""

    def __init__(self, status: int, body: dict, headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def utc_now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds and ``Z``, like Segment's ``receivedAt``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- faults


class SinkFaults(HTTPFaults):
    """:class:`HTTPFaults` plus permanently bad batches.

    ``reject_message_ids(ids)``: any request carrying one of these messageIds is
    rejected as a whole (default 400, which analytics-python does not retry),
    every time, until cleared.

    ``hold_answer_to(ids)``: the first request carrying one of these messageIds
    is accepted (its messages stored: Segment has them) but answered only after
    ``release_held()`` (or ``clear()``); ``holding`` says how many answers are
    held right now.
    """

    #: A held answer is released after this long even if nobody releases it (no server thread is kept for ever).
    MAX_HOLD_SECONDS = 120.0

    def __init__(self) -> None:
        super().__init__()
        self._reject: dict[str, int] = {}
        self._hold_ids: set[str] = set()
        self._released = threading.Event()
        self.holding = 0

    def reject_message_ids(self, ids: Iterable[str], status: int = 400) -> None:
        with self._lock:
            for mid in ids:
                self._reject[str(mid)] = status

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self._reject.clear()
        self.release_held()

    def hold_answer_to(self, message_ids: Iterable[str]) -> None:
        with self._lock:
            self._hold_ids = {str(mid) for mid in message_ids}
            self._released = threading.Event()

    def release_held(self) -> None:
        """Answer the held request(s) now (a client that died meanwhile gets nothing)."""
        with self._lock:
            self._hold_ids = set()
            released = self._released
        released.set()

    def take_hold(self, message_ids: Iterable[str]) -> threading.Event | None:
        """For an accepted request: the event to wait on before answering, if it must be held (once)."""
        with self._lock:
            if not self._hold_ids.intersection(message_ids):
                return None
            self._hold_ids = set()
            self.injected += 1
            self.holding += 1
            return self._released

    def end_hold(self) -> None:
        with self._lock:
            self.holding -= 1

    def rejected_status(self, message_ids: Iterable[str]) -> int | None:
        """The status to reject a batch with, if it holds a rejected messageId."""
        with self._lock:
            if not self._reject:
                return None
            for mid in message_ids:
                status = self._reject.get(mid)
                if status is not None:
                    self.injected += 1
                    return status
        return None


def basic_auth_credentials(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` from an ``Authorization: Basic`` header, else None."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[len("Basic ") :].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> HTTPError:
    # ``code`` and ``message`` are what analytics-python's APIError reads.
    return HTTPError(status, {"success": False, "code": code, "message": message}, headers)


class SegmentSink(LoopbackServer):
    """An in-memory Segment tracking API served over HTTP on 127.0.0.1.

    Public attributes:

    - ``accepted``: every message accepted, in arrival order, duplicates
      included, each with ``receivedAt`` (and the batch's ``sentAt`` when the
      message has none);
    - ``requests``: every request served, oldest first, as ``{method, path,
      status, messages (count), message_ids, bytes (as sent), body_bytes
      (decompressed), gzip, retry_count (X-Retry-Count), time (monotonic)}``;
    - ``faults``: a :class:`SinkFaults`.
    """

    thread_name = "segment-sink"

    def __init__(self, *, write_key: str = "demo_write_key", port: int = 0):
        super().__init__(port=port)
        self._write_key = write_key
        self.accepted: list[dict] = []
        self.requests: list[dict] = []
        self.faults = SinkFaults()
        self._cond = threading.Condition(threading.RLock())

    def __repr__(self) -> str:  # never show the write key
        return f"SegmentSink(base_url={self.base_url!r}, accepted={len(self.accepted)})"

    # ------------------------------------------------------------ queries

    def accepted_by_message_id(self) -> dict[str, dict]:
        """Accepted messages deduplicated like Segment: the first per ``messageId`` wins."""
        with self._cond:
            out: dict[str, dict] = {}
            for msg in self.accepted:
                out.setdefault(msg["messageId"], msg)
            return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` is true (re-checked after every request); False on timeout.

        ``predicate`` takes no arguments and runs under the sink's lock, so it
        sees ``accepted`` / ``requests`` consistently.
        """
        with self._cond:
            return self._cond.wait_for(predicate, timeout=timeout)

    def clear(self) -> None:
        """Forget accepted messages, the request log and every planned fault."""
        with self._cond:
            self.accepted.clear()
            self.requests.clear()
            self.faults.clear()
            self._cond.notify_all()

    # ------------------------------------------------------------ HTTP

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        raw = self._read_body(handler)  # always drain: keeps the connection usable
        path = handler.path.split("?", 1)[0].rstrip("/") or "/"
        gzipped = (handler.headers.get("Content-Encoding") or "").strip().lower() == "gzip"
        entry: dict[str, Any] = {
            "method": handler.command,
            "path": path,
            "status": 0,
            "messages": 0,
            "message_ids": [],
            "bytes": len(raw),
            "body_bytes": None,
            "gzip": gzipped,
            "retry_count": int(handler.headers.get("X-Retry-Count") or 0),
            "time": time.monotonic(),
        }
        headers: dict[str, str] = {}
        try:
            status, body = self._respond(handler, path, raw, gzipped, entry)
        except HTTPError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        except Exception as exc:  # a bug here must look like a 500, not hang the client
            status, body = 500, {"success": False, "code": "internal", "message": f"sink error: {exc!r}"}
        delay = self.faults.current_delay()
        if delay:
            time.sleep(delay)  # an injected slow response (server side)
        entry["status"] = status
        hold = self.faults.take_hold(entry["message_ids"]) if status == 200 else None
        entry["held"] = hold is not None
        with self._cond:
            self.requests.append(entry)
            self._cond.notify_all()
        if hold is None:
            self._send_json(handler, status, body, headers)
            return
        try:
            hold.wait(SinkFaults.MAX_HOLD_SECONDS)
            self._send_json(handler, status, body, headers)
        except OSError:
            pass  # the client is gone (killed while it waited): Segment has the batch all the same
        finally:
            self.faults.end_hold()
            with self._cond:
                self._cond.notify_all()

    def _respond(
        self, handler: BaseHTTPRequestHandler, path: str, raw: bytes, gzipped: bool, entry: dict
    ) -> tuple[int, dict]:
        if handler.command != "POST":
            raise _error(404, "not_found", f"Unrecognized request: {handler.command} {path}")
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2 or parts[0] != "v1" or (parts[1] != "batch" and parts[1] not in SINGLE_ENDPOINTS):
            raise _error(404, "not_found", f"Unrecognized request: {handler.command} {path}")
        endpoint = parts[1]

        # Parse first, so the log shows what even a failed request carried, but
        # report a bad body only after the injected faults (an overloaded
        # server fails before it reads anything).
        body: Any = None
        problem: HTTPError | None = None
        try:
            data = self._decode(raw, gzipped)
            entry["body_bytes"] = len(data)
            if len(data) > MAX_REQUEST_BYTES:
                raise _error(400, "payload_too_large", f"Request body exceeds {MAX_REQUEST_BYTES} bytes")
            try:
                body = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                raise _error(400, "invalid_json", "Invalid JSON") from None
            if not isinstance(body, dict):
                raise _error(400, "invalid_request", "Body must be a JSON object")
        except HTTPError as exc:
            problem = exc
        if body is not None and problem is None:
            msgs = body.get("batch") if endpoint == "batch" else [body]
            if isinstance(msgs, list):
                entry["messages"] = len(msgs)
                entry["message_ids"] = [str(m.get("messageId")) for m in msgs if isinstance(m, dict)]

        fault = self.faults.check()
        if fault is not None:
            status, retry_after = fault
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            code = "rate_limited" if status == 429 else "injected_fault"
            raise _error(status, code, f"Injected fault ({status}).", extra)
        if problem is not None:
            raise problem

        self._authenticate(handler.headers.get("Authorization"), body.get("writeKey"))

        if endpoint == "batch":
            batch = body.get("batch")
            if not isinstance(batch, list):
                raise _error(400, "invalid_request", "batch must be a list")
            if len(batch) > MAX_BATCH_MESSAGES:
                raise _error(400, "too_many_messages", f"A batch holds at most {MAX_BATCH_MESSAGES} messages")
        else:
            msg = {k: v for k, v in body.items() if k != "writeKey"}
            msg.setdefault("type", endpoint)
            if msg["type"] != endpoint:
                raise _error(400, "invalid_request", f"type {msg['type']!r} posted to /v1/{endpoint}")
            batch = [msg]

        for i, msg in enumerate(batch):
            self._validate(i, msg)
        message_ids = [str(m["messageId"]) for m in batch]

        rejected = self.faults.rejected_status(message_ids)
        if rejected is not None:
            raise _error(rejected, "rejected", "Batch rejected (injected fault).")

        received_at = utc_now_iso()
        sent_at = body.get("sentAt")
        stored = []
        for msg in batch:
            msg = {k: v for k, v in msg.items() if k != "writeKey"}
            if sent_at is not None:
                msg.setdefault("sentAt", sent_at)
            msg["receivedAt"] = received_at
            stored.append(msg)
        with self._cond:
            self.accepted.extend(stored)
        return 200, {"success": True}

    @staticmethod
    def _decode(raw: bytes, gzipped: bool) -> bytes:
        if not gzipped:
            return raw
        # bounded decompression: one byte past the limit is enough to reject
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = d.decompress(raw, MAX_REQUEST_BYTES + 1)
        except zlib.error:
            raise _error(400, "invalid_gzip", "Body is not valid gzip") from None
        return out

    def _authenticate(self, authorization: str | None, body_key: Any) -> None:
        if authorization:
            creds = basic_auth_credentials(authorization)
            if creds is not None and creds[0] == self._write_key and creds[1] == "":
                return
            raise _error(401, "unauthorized", "Invalid write key")
        if isinstance(body_key, str) and body_key == self._write_key:
            return
        raise _error(401, "unauthorized", "Missing or invalid write key")

    @staticmethod
    def _validate(i: int, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise _error(400, "invalid_message", f"batch[{i}] is not an object")
        size = len(json.dumps(msg, separators=(",", ":")).encode())
        if size > MAX_MESSAGE_BYTES:
            raise _error(400, "message_too_large", f"batch[{i}] is {size} bytes; the limit is {MAX_MESSAGE_BYTES}")
        mid = msg.get("messageId")
        if not isinstance(mid, str) or not mid:
            raise _error(400, "invalid_message", f"batch[{i}] has no messageId")
        if not msg.get("userId") and not msg.get("anonymousId"):
            raise _error(400, "invalid_message", f"batch[{i}] needs userId or anonymousId")
        mtype = msg.get("type")
        if mtype not in MESSAGE_TYPES:
            raise _error(400, "invalid_message", f"batch[{i}] has an unknown type {mtype!r}")
        for field in MESSAGE_TYPES[mtype]:
            if not msg.get(field):
                raise _error(400, "invalid_message", f"batch[{i}] ({mtype}) needs {field}")
