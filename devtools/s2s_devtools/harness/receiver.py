"""The webhook receiver (s2s-webhooks' app) served by uvicorn in a background thread, for tests, bench and the demo.

``running_receiver(secret, database_url)`` yields a ``Receiver`` whose
``url`` is ``http://127.0.0.1:<free port>/stripe/webhooks``; the server stops
when the block ends. In production the same app runs as ``s2s-webhooks``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Receiver:
    base_url: str
    server: object

    @property
    def url(self) -> str:
        return f"{self.base_url}/stripe/webhooks"


@contextlib.contextmanager
def running_receiver(secret: str, database_url: str | None, *, port: int | None = None,
                     start_deadline_s: float = 20.0, **settings) -> Iterator[Receiver]:
    import uvicorn

    from s2s_pipeline.webhooks.app import create_app
    from s2s_pipeline.webhooks.settings import ReceiverSettings

    app = create_app(ReceiverSettings(secret=secret, database_url=database_url, **settings))
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="s2s-webhooks", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_deadline_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the webhook receiver did not start on 127.0.0.1:{port}")
        thread.join(timeout=0.05)
    try:
        yield Receiver(base_url=f"http://127.0.0.1:{port}", server=server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
