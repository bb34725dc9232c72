"""A localstripe server (a third-party fake Stripe) in a subprocess, for smoke tests.

localstripe's own ``localstripe`` command listens on every interface and
rewrites a pickle file in /tmp on every write (quadratic: slow with a few
hundred objects, and shared between runs). Here it serves from memory on
127.0.0.1 only: the child process replaces ``Store.dump_to_disk`` with a no-op
and runs ``localstripe.server.app`` with aiohttp (see STACK-NOTES.md).

Usage::

    with localstripe_server() as url:   # http://127.0.0.1:PORT
        ...
        reset_localstripe(url)          # DELETE /_config/data

or the session-scoped pytest fixture ``localstripe_url`` (import it into the
test module). The child runs in its own process group, which is terminated
(then killed) on exit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

#: How long the server may take to accept connections.
START_DEADLINE_SECONDS = 20.0

# Runs in the child: in-memory store, loopback only, no access log.
_CHILD = r"""
import sys
import localstripe.resources as resources
resources.Store.dump_to_disk = lambda self: None   # never touch /tmp/localstripe.pickle
from aiohttp import web
from localstripe.server import app
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            shutdown_timeout=1)
"""


class LocalstripeError(RuntimeError):
    """localstripe could not be started."""


def localstripe_available() -> bool:
    return importlib.util.find_spec("localstripe") is not None and importlib.util.find_spec("aiohttp") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the child's process group; kill it if it does not exit in 5 s."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the child's pid
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start(port: int, log_path: Path, deadline: float) -> subprocess.Popen | None:
    """Start the child on ``port``; None if it exited early (e.g. the port was taken meanwhile)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        if _accepts(port):
            return proc
        try:
            proc.wait(timeout=0.05)  # bounded poll interval; returns early if the child dies
        except subprocess.TimeoutExpired:
            pass
    _stop(proc)
    raise LocalstripeError(
        f"localstripe did not accept connections on 127.0.0.1:{port} within "
        f"{START_DEADLINE_SECONDS:g} s; its output:\n{log_path.read_text(errors='replace')[-4000:]}"
    )


@contextlib.contextmanager
def localstripe_server(deadline_seconds: float = START_DEADLINE_SECONDS) -> Iterator[str]:
    """Run localstripe in memory on 127.0.0.1 (a free port); yields its base URL."""
    if not localstripe_available():
        raise LocalstripeError("localstripe (and aiohttp) are not installed: pip install -e '.[dev]'")
    with tempfile.TemporaryDirectory(prefix="localstripe-") as tmp:
        log_path = Path(tmp) / "localstripe.log"
        deadline = time.monotonic() + deadline_seconds
        proc = None
        for _attempt in range(3):  # another process may grab the free port before the child binds it
            proc = _start(_free_port(), log_path, deadline)
            if proc is not None:
                break
        if proc is None:
            raise LocalstripeError(
                f"localstripe exited before accepting connections; its output:\n"
                f"{log_path.read_text(errors='replace')[-4000:]}"
            )
        port = proc.args[-1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(proc)


def reset_localstripe(url: str) -> None:
    """Empty localstripe's store (``DELETE /_config/data``)."""
    request = urllib.request.Request(f"{url.rstrip('/')}/_config/data", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise LocalstripeError(f"DELETE /_config/data answered {response.status}")


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """Base URL of a localstripe server shared by the session (skipped if localstripe is missing)."""
    if not localstripe_available():
        pytest.skip("localstripe is not installed (pip install -e '.[dev]')")
    with localstripe_server() as url:
        yield url
