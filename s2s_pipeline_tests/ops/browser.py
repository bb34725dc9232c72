"""Headless Chromium driven over the DevTools protocol: open a page, wait for it, click, screenshot.

The UI tests need more than `--dump-dom` / `--screenshot` give: the asset graph
must be zoomed until it fits, and the Plots view of an asset's metadata is a
toggle behind a click. Chromium listens on a free loopback port
(`--remote-debugging-port=0`, the port read from `DevToolsActivePort` in its
fresh profile); the `websockets` client speaks the protocol. Every wait is a
condition polled inside the page with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import base64
import json
import signal
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

from s2s_devtools.harness.daemon import kill_group

START_DEADLINE_S = 30


class BrowserError(AssertionError):
    """Chromium did not start, or the page did not do what the test waited for."""


class HeadlessChromium:
    """One headless Chromium with a fresh profile and one page of ``width`` x ``height`` CSS pixels."""

    def __init__(self, chromium: Path, profile: Path, width: int = 1600, height: int = 1000):
        self.chromium, self.profile, self.width, self.height = chromium, profile, width, height
        self._next_id = 0

    def __enter__(self) -> "HeadlessChromium":
        self.profile.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(self.chromium), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-quic", f"--user-data-dir={self.profile}", "--hide-scrollbars",
            f"--window-size={self.width},{self.height}", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", "about:blank",
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port = self._devtools_port()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                pages = [t for t in json.load(resp) if t.get("type") == "page"]
            if not pages:
                raise BrowserError("Chromium opened no page")
            self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            self.call("Page.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.ws.close()
        finally:
            self._stop()

    def _stop(self) -> None:
        kill_group(self.proc, 5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftover helpers, if any
        except ProcessLookupError:
            pass

    def _devtools_port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self.proc.poll() is not None:
                raise BrowserError(f"Chromium exited with {self.proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise BrowserError(f"Chromium wrote no {marker} within {START_DEADLINE_S} s")
            try:
                self.proc.wait(timeout=0.1)  # poll interval; returns early if it dies
            except subprocess.TimeoutExpired:
                pass

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result (events in between are ignored)."""
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, condition: str, what: str, timeout_s: float = 30) -> None:
        """Until the JavaScript ``condition`` is true in the page (polled there every 100 ms)."""
        ok = self.evaluate(
            "new Promise(done => { const end = Date.now() + %d; (function poll() {"
            " let ok = false; try { ok = !!(%s); } catch (e) {}"
            " if (ok) done(true); else if (Date.now() > end) done(false); else setTimeout(poll, 100); })(); })"
            % (int(timeout_s * 1000), condition))
        if not ok:
            raise BrowserError(f"timed out after {timeout_s} s waiting for {what}")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
