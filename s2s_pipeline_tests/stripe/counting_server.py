"""A local HTTP server that answers Stripe-shaped responses from a script and counts every request.

Each request takes the next scripted answer (the last one repeats), so a test
states exactly what Stripe says and then asserts how many requests the client
made. Every answer carries a fresh ``Request-Id`` (``req_test_<n>``), as
Stripe's do, so messages can be checked for it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Answer:
    """One scripted response."""

    status: int
    body: dict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def ok(data: list[dict] | None = None) -> Answer:
    """A one-page list response."""
    return Answer(200, {"object": "list", "has_more": False, "data": data or []})


def stripe_error(status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, should_retry: str | None = None) -> Answer:
    """Stripe's error body; ``should_retry`` sets the ``Stripe-Should-Retry`` header ("true"/"false")."""
    error = {"type": type_, "message": message}
    error.update({k: v for k, v in (("code", code), ("param", param)) if v is not None})
    headers = {"Stripe-Should-Retry": should_retry} if should_retry is not None else {}
    return Answer(status, {"error": error}, headers)


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    query: dict[str, list[str]]
    request_id: str  # the Request-Id it was answered with


class CountingStripe:
    """Context manager: a scripted server on 127.0.0.1; ``requests`` lists what it received."""

    def __init__(self, *script: Answer) -> None:
        if not script:
            raise ValueError("a script needs at least one answer")
        self._script = list(script)
        self._lock = threading.Lock()
        self.requests: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                server._answer(self)

            def log_message(self, *_args) -> None:  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def request_ids(self) -> list[str]:
        with self._lock:
            return [r.request_id for r in self.requests]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        with self._lock:
            n = len(self.requests)
            answer = self._script[min(n, len(self._script) - 1)]
            request_id = f"req_test_{n + 1}"
            self.requests.append(Seen(url.path, parse_qs(url.query), request_id))
        payload = json.dumps(answer.body).encode()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", request_id)
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def __enter__(self) -> CountingStripe:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
