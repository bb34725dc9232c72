"""Serving a stand-in on 127.0.0.1: a threaded HTTP server with start/stop and keep-alive handling."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackHandler(BaseHTTPRequestHandler):
    """Routes every request to the owning server's ``_handle`` and tracks open connections."""

    protocol_version = "HTTP/1.1"  # keep-alive: requests' session reuses connections
    # headers and body go out as separate writes; without TCP_NODELAY each
    # response stalls ~40 ms on Nagle + delayed ACK
    disable_nagle_algorithm = True
    server_version = "LocalStandIn/1.0"

    def setup(self) -> None:
        super().setup()
        self.server.owner._connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._connections.discard(self.connection)  # type: ignore[attr-defined]

    def _dispatch(self) -> None:
        self.server.owner._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the request log is the owner's ``requests``


class LoopbackServer:
    """Start/stop/context-manager plumbing for a stand-in served on 127.0.0.1.

    Subclasses implement ``_handle(handler)``.
    """

    thread_name = "loopback-standin"
    handler_class: type[BaseHTTPRequestHandler] = LoopbackHandler

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self.base_url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # open keep-alive connections, closed on stop() so a stopped server
        # really stops answering
        self._connections: set[socket.socket] = set()

    def start(self) -> str:
        """Listen on 127.0.0.1 (a free port unless ``port`` was given); returns the base URL."""
        if self._server is not None:
            return self.base_url
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler_class)
        server.daemon_threads = True
        server.owner = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @staticmethod
    def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    @staticmethod
    def _send_json(
        handler: BaseHTTPRequestHandler, status: int, body: dict, headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(payload)
