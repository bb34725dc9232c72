"""A local stand-in for Segment's Public API regulations endpoints, for the deletion path's tests.

- ``POST /regulations`` (Bearer token) creates a regulation from
  ``{"regulationType", "subjectType", "subjectIds"}`` (at most 5,000 ids) and
  answers ``{"data": {"regulateId": ...}}``;
- ``GET /regulations/{id}`` answers ``{"data": {"regulation": {"id", "overallStatus", ...}}}``;
- ``fail_next(status, headers)`` queues answers given before any real work
  (a 500, a 429 with ``Retry-After`` ...): a failed request creates nothing.

Standard library only; listens on 127.0.0.1 in a daemon thread.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PublicApiStandIn:
    def __init__(self, token: str = "papi_test_token") -> None:
        self.token = token
        self.regulations: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, failed ones included
        self._faults: list[tuple[int, dict]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with standin._lock:
                    standin.requests.append((method, self.path))
                    fault = standin._faults.pop(0) if standin._faults else None
                if fault is not None:
                    return self._answer(fault[0], {"errors": [{"type": "fault"}]}, fault[1])
                if self.headers.get("Authorization") != f"Bearer {standin.token}":
                    return self._answer(401, {"errors": [{"type": "unauthorized"}]})
                if method == "POST" and self.path == "/regulations":
                    body = json.loads(raw or b"{}")
                    ids = body.get("subjectIds") or []
                    if not ids or len(ids) > 5000 or body.get("subjectType") != "USER_ID":
                        return self._answer(422, {"errors": [{"type": "validation"}]})
                    with standin._lock:
                        regulate_id = f"reg_{next(standin._ids)}"
                        standin.regulations[regulate_id] = {"id": regulate_id, "overallStatus": "INITIALIZED",
                                                            "regulationType": body.get("regulationType"),
                                                            "subjectIds": list(ids)}
                    return self._answer(200, {"data": {"regulateId": regulate_id}})
                if method == "GET" and self.path.startswith("/regulations/"):
                    regulation = standin.regulations.get(self.path.rsplit("/", 1)[1])
                    if regulation is None:
                        return self._answer(404, {"errors": [{"type": "not found"}]})
                    return self._answer(200, {"data": {"regulation": {
                        k: v for k, v in regulation.items() if k != "subjectIds"}}})
                return self._answer(404, {"errors": [{"type": "not found"}]})

            def do_POST(self):  # noqa: N802 - http.server's name
                self._handle("POST")

            def do_GET(self):  # noqa: N802
                self._handle("GET")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, status: int, headers: dict | None = None, times: int = 1) -> None:
        with self._lock:
            self._faults += [(status, dict(headers or {}))] * times

    def set_status(self, regulate_id: str, status: str) -> None:
        self.regulations[regulate_id]["overallStatus"] = status

    def subjects(self) -> list[str]:
        return sorted(s for r in self.regulations.values() for s in r["subjectIds"])

    def __enter__(self) -> "PublicApiStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
