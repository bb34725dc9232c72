"""Sending messages to Segment through segment-analytics-python, knowing exactly what was delivered.

analytics-python is asynchronous and loses messages silently in several
cases (a full queue, a message over 32 KB dropped at batch time, a process
that exits without ``flush()``). This module closes each of them:

- every message is size-checked before it is queued (analytics-python's own
  check, which measures the message as it will be sent), and an oversized
  message or a refused enqueue counts as a failure;
- ``on_error(exc, batch)`` records every message of a batch Segment did not
  accept (after the library's own retries: 5xx, 429 with Retry-After, …);
- ``flush()`` then ``join()`` before returning, so "not failed" means
  "acknowledged by Segment".

Callers record state only for what Segment acknowledged, batch by batch:
``on_acknowledged`` is told each acknowledged batch as soon as Segment
answered it, before the next batch is uploaded, so a process killed mid-way
loses at most the bookkeeping of the batch in flight (its rerun re-sends that
one under the same messageIds). A long delivery can report progress
("identify: 4,000 of 10,000 acknowledged") while it waits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Iterable
from urllib.parse import urlparse

from s2s_pipeline.core.progress import ProgressReporter, ProgressSink
from s2s_pipeline.segment.messages import Message, native  # noqa: F401 - native: also imported from here

log = logging.getLogger(__name__)

# Segment rejects single messages over 32 KB: analytics-python checks that limit itself when a message is
# queued (``MAX_MSG_SIZE``, on the message as it sends it, its context included) and raises; see ``_enqueue``.
DEFAULT_HOST = "https://api.segment.io"

#: How often a delivery with progress looks at what Segment acknowledged (lines are throttled further).
_PROGRESS_POLL_SECONDS = 1.0

# analytics-python logs whole payloads (write key included) at DEBUG.
logging.getLogger("segment").setLevel(logging.WARNING)


class SegmentConfigError(ValueError):
    """A Segment setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True)
class SegmentSettings:
    """How to reach the Segment source (see the README's configuration table)."""

    write_key: str
    host: str = DEFAULT_HOST
    gzip: bool = True
    max_retries: int = 3
    timeout: int = 15
    #: Messages per batch. 500, not analytics-python's 100: every acknowledged batch costs an HTTP round
    #: trip and a bookkeeping transaction (a commit waiting for the disk), and at 100 those were most of
    #: a nightly delivery. Segment takes up to 2,500 per batch and 500 KB, and analytics-python closes a
    #: batch at about 475 KB whatever this says. A run killed mid-delivery re-sends at most one batch
    #: (same messageIds).
    upload_size: int = 500
    #: The file this delivery writes its would-be calls to instead of sending (see ``dry_run_file``).
    dry_run_path: str | None = None

    def __post_init__(self) -> None:
        if not self.dry_run_path and not (self.write_key or "").strip():
            raise SegmentConfigError("SEGMENT_WRITE_KEY is not set: set it to the write key of the Segment source")
        parsed = urlparse(self.host or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SegmentConfigError(f"SEGMENT_HOST is malformed: expected a URL such as {DEFAULT_HOST}, "
                                     f"got {self.host!r}")
        if not 1 <= self.upload_size <= 2500:
            raise SegmentConfigError(f"Segment upload_size must be 1..2500 messages, got {self.upload_size}")


@dataclass
class DeliveryReport:
    """Which messages Segment acknowledged and which it did not (with why)."""

    attempted: list[Message] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # messageId -> reason
    dry_run: bool = False

    @property
    def delivered(self) -> list[Message]:
        if self.dry_run:
            return []
        return [m for m in self.attempted if m.message_id not in self.failed]

    def count(self, message_type: str) -> int:
        return sum(1 for m in self.delivered if m.type == message_type)


def _reason(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    # Never include the exception text: analytics-python puts payloads in it.
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")


class _AcknowledgedProgress:
    """Messages Segment acknowledged so far, per call type, as progress lines.

    Counts only: never a message's ids, traits or properties.
    """

    def __init__(self, attempted: list[Message], sink: ProgressSink | None, clock: Callable[[], float]) -> None:
        self._reporter = ProgressReporter(sink, "acknowledged", clock=clock)
        self._totals = Counter(m.type for m in attempted)
        self.enabled = sink is not None and bool(attempted)
        for message_type, total in self._totals.items():
            self._reporter.update(message_type, 0, total=total)

    def sent_so_far(self, queued: list[Message], finished: int, failed: dict[str, str]) -> None:
        """``finished`` of the ``queued`` messages are answered (acknowledged or in ``failed``).

        analytics-python uploads from one thread in queue order, so the answered
        ones are the first ``finished`` queued (a batch re-queued after a
        rate limit is the exception, and only shifts which type is counted).
        """
        done = Counter(m.type for m in queued[:finished])
        queued_types = {m.message_id: m.type for m in queued}
        refused = Counter(queued_types[i] for i in failed.copy() if i in queued_types)
        for message_type, total in self._totals.items():
            acknowledged = max(0, done[message_type] - refused[message_type])
            self._reporter.update(message_type, acknowledged, total=total)

    def finish(self, report: DeliveryReport) -> None:
        delivered = Counter(m.type for m in report.delivered)
        for message_type, total in self._totals.items():
            self._reporter.update(message_type, delivered[message_type], total=total, emit=False)
        self._reporter.finish()


#: Told each batch of messages Segment acknowledged, on the upload thread, before the next batch is sent.
OnAcknowledged = Callable[[list[Message]], None]


class CompletedGroups:
    """Which groups of messages (a customer's identify calls, a Stripe event's calls) Segment has
    acknowledged in full, told batch by batch."""

    def __init__(self, groups: dict[Hashable, list[Message]]) -> None:
        self._waiting = {key: {m.message_id for m in ms} for key, ms in groups.items()}
        self._keys_of: dict[str, list[Hashable]] = {}
        for key, ms in groups.items():
            for m in ms:
                self._keys_of.setdefault(m.message_id, []).append(key)
        self.completed: set[Hashable] = set()

    def acknowledge(self, batch: list[Message]) -> list[Hashable]:
        """The groups this batch completed (every message of theirs now acknowledged)."""
        done = []
        for message in batch:
            for key in self._keys_of.get(message.message_id, ()):
                waiting = self._waiting.get(key)
                if waiting is None:
                    continue
                waiting.discard(message.message_id)
                if not waiting:
                    del self._waiting[key]
                    done.append(key)
        self.completed.update(done)
        return done


def deliver(messages: Iterable[Message], settings: SegmentSettings, *, progress: ProgressSink | None = None,
            clock: Callable[[], float] = time.monotonic,
            on_acknowledged: OnAcknowledged | None = None) -> DeliveryReport:
    """Send messages and wait until Segment acknowledged or refused each one.

    ``progress`` (e.g. the run log) receives throttled lines of how many
    messages of each type Segment acknowledged so far, timed on ``clock``.
    ``on_acknowledged`` records each acknowledged batch as it is acknowledged; should it raise,
    the delivery goes on and the first error is raised once every message is answered.
    """
    report = DeliveryReport(attempted=list(messages), dry_run=bool(settings.dry_run_path))
    if settings.dry_run_path:
        _write_dry_run(report.attempted, Path(settings.dry_run_path))
        return report
    acknowledged = _AcknowledgedProgress(report.attempted, progress, clock)
    # Sizes are checked as each message is queued (``_enqueue``): measuring them here as well was a
    # second JSON encoding of every message (about 0.3 s of a night's 16,734 calls).
    sendable = report.attempted
    bookkeeping_errors: list[Exception] = []
    report.failed.update(_send(sendable, settings, settings.upload_size,
                               watch=acknowledged.sent_so_far if acknowledged.enabled else None,
                               on_acknowledged=on_acknowledged, errors=bookkeeping_errors))
    # Segment refuses a batch as a whole when one message in it is bad (4xx):
    # its good batch-mates are sent again one per request, so one bad message
    # cannot hold back the others run after run.
    refused = [m for m in sendable if report.failed.get(m.message_id, "").endswith(("(HTTP 400)", "(HTTP 413)"))]
    if refused and settings.upload_size > 1:
        for m in refused:
            del report.failed[m.message_id]
        report.failed.update(_send(refused, settings, 1, on_acknowledged=on_acknowledged,
                                   errors=bookkeeping_errors))
    if report.failed:
        log.warning("Segment did not accept %d of %d messages", len(report.failed), len(report.attempted))
    if acknowledged.enabled:
        acknowledged.finish(report)
    if bookkeeping_errors:
        raise bookkeeping_errors[0]
    return report


#: Told, while a pass waits for Segment, which queued messages are answered so far.
_Watch = Callable[[list[Message], int, dict[str, str]], None]


def _send(messages: list[Message], settings: SegmentSettings, upload_size: int,
          watch: _Watch | None = None, on_acknowledged: OnAcknowledged | None = None,
          errors: list[Exception] | None = None) -> dict[str, str]:
    """One pass through analytics-python; returns messageId -> reason for what Segment did not accept."""
    failed: dict[str, str] = {}
    if not messages:
        return failed
    from segment.analytics.client import Client

    def on_error(exc: Exception, batch: list[dict]) -> None:
        for item in batch:
            failed[str(item.get("messageId"))] = _reason(exc)

    client = Client(
        settings.write_key,
        host=settings.host.rstrip("/"),
        on_error=on_error,
        gzip=settings.gzip,
        max_retries=settings.max_retries,
        timeout=settings.timeout,
        upload_size=upload_size,
        upload_interval=0.1,
        thread=1,  # analytics-python 2.4 only joins the last of several consumer threads
        # Large enough that a full queue never drops a message of this run.
        max_queue_size=max(10_000, len(messages) + 1),
        # Bound how long a 429 with Retry-After may hold up the run.
        max_rate_limit_duration=600,
    )
    recorder = None
    if on_acknowledged is not None:
        by_id = {m.message_id: m for m in messages}
        recorder = _Recorder(on_acknowledged, errors if errors is not None else [])
        for consumer in client.consumers or ():
            consumer.request = _acknowledging(consumer.request, by_id, recorder.put)
    queued: list[Message] = []
    try:
        for message in messages:
            try:
                ok, _ = _enqueue(client, message)
            except _Oversized as exc:
                failed[message.message_id] = str(exc)
                continue
            if ok:
                queued.append(message)
            else:
                failed[message.message_id] = "analytics-python queue refused the message"
        if watch is None:
            client.flush()
        else:
            _flush_watching(client, queued, failed, watch)
    finally:
        client.join()
        if recorder is not None:  # every acknowledged batch recorded before the pass reports
            recorder.close()
        # analytics-python registers every client's ``join`` with atexit, which keeps the client, its
        # consumer and so the wrapped ``request`` (every message of this pass, the caller's bookkeeping
        # closure and what it holds) alive until the process exits: one pass's state per delivery in a
        # long-lived process. The consumer has stopped; nothing is left for atexit to join.
        atexit.unregister(client.join)
    return failed


def _acknowledging(request: Callable[[list[dict]], object], by_id: dict[str, Message],
                   acknowledged: Callable[[list[Message]], None]) -> Callable[[list[dict]], object]:
    """The consumer's ``request(batch)``, then ``acknowledged`` with the batch's messages once it returned.

    analytics-python offers no success callback; its consumer uploads a batch
    with ``request`` and treats a return as Segment's acknowledgement, so
    wrapping it is the one place that knows a batch was accepted. A batch
    Segment refused raises out of ``request`` and is never passed on.
    """

    def acknowledging_request(batch: list[dict]):
        result = request(batch)
        acknowledged([by_id[i] for i in (str(item.get("messageId")) for item in batch) if i in by_id])
        return result

    return acknowledging_request


class _Recorder:
    """The bookkeeping of acknowledged batches (``on_acknowledged``), one batch at a time on a thread of
    its own, in the order Segment acknowledged them.

    Why a thread: the consumer would otherwise wait for each batch's bookkeeping (a transaction of
    pushed state and audit rows, 70-90 ms for 500 identify calls on Postgres) before it uploads the
    next batch; with it, the next upload and this batch's bookkeeping overlap (at 1M customers, 1%
    changed, 16,734 calls: delivery 4.3-4.7 s -> docs/performance.md). What a crash can cost is
    unchanged in kind: batches Segment acknowledged and we had not recorded yet are sent again, with
    the same messageIds, which Segment dedupes. An error of the bookkeeping is kept in ``errors``
    (raised by ``deliver`` once every message is answered), and the next batches are still recorded.
    """

    def __init__(self, on_acknowledged: OnAcknowledged, errors: list[Exception]) -> None:
        self._record = on_acknowledged
        self._errors = errors
        self._batches: queue.SimpleQueue[list[Message] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="segment-bookkeeping", daemon=True)
        self._thread.start()

    def put(self, batch: list[Message]) -> None:
        """A batch Segment acknowledged, to be recorded after those acknowledged before it."""
        self._batches.put(batch)

    def close(self) -> None:
        """Wait until every batch put so far is recorded."""
        self._batches.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (batch := self._batches.get()) is not None:
            try:
                self._record(batch)
            except Exception as exc:  # noqa: BLE001 - raised by deliver() once the pass is over
                log.error("recording an acknowledged batch failed: %s", type(exc).__name__)
                self._errors.append(exc)


def _flush_watching(client, queued: list[Message], failed: dict[str, str], watch: _Watch) -> None:
    """``client.flush()``, telling ``watch`` every second or so how many queued messages are answered."""
    flushing = threading.Thread(target=client.flush, name="segment-flush", daemon=True)
    flushing.start()
    while flushing.is_alive():
        flushing.join(timeout=_PROGRESS_POLL_SECONDS)
        # The queue counts a message as unfinished from enqueue until its
        # batch is answered (acknowledged, or refused through on_error).
        watch(queued, len(queued) - client.queue.unfinished_tasks, failed)


class _Oversized(Exception):
    """A message over Segment's 32 KB limit (the text gives its size, never its content)."""


def _enqueue(client, message: Message):
    """Queue ``message`` on ``client``; ``(queued, message)`` as analytics-python returns it. Raises
    ``_Oversized`` for a message over Segment's 32 KB limit as analytics-python measures it.

    analytics-python raises a bare ``RuntimeError("Message exceeds %skb limit. (%s)", ..., str(msg))``
    for those, the whole message (an email, a name) in its arguments: it is replaced here, before
    anything could log it, by an error naming the size only.
    """
    try:
        return _enqueue_call(client, message)
    except RuntimeError as exc:
        if not (exc.args and isinstance(exc.args[0], str) and exc.args[0].startswith("Message exceeds")):
            raise
    size = len(json.dumps(message.payload(), default=str).encode())
    raise _Oversized(f"message is {size} bytes, over Segment's 32 KB limit") from None


def _enqueue_call(client, message: Message):
    common = dict(user_id=message.user_id, anonymous_id=message.anonymous_id, context=dict(message.context),
                  timestamp=message.timestamp, integrations=message.integrations, message_id=message.message_id)
    if message.type == "identify":
        return client.identify(traits=native(message.traits), **common)
    if message.type == "group":
        return client.group(group_id=message.group_id, traits=native(message.traits), **common)
    if message.type == "track":
        return client.track(event=message.event, properties=native(message.properties), **common)
    raise ValueError(f"unknown Segment message type {message.type!r}")


def dry_run_file(directory: str, run_id: str, asset: str) -> str:
    """Where a dry run of ``asset`` in run ``run_id`` writes its calls: ``<directory>/<run_id>-<asset>.jsonl``.

    One file per run and asset, so the nightly run's track pass never overwrites what its profiles
    pass wrote, and one night's file never replaces another's.
    """
    safe_asset = "".join(c if c.isalnum() or c in "-_." else "_" for c in asset)
    return str(Path(directory) / f"{run_id}-{safe_asset}.jsonl")


def _write_dry_run(messages: list[Message], path: Path) -> None:
    """The would-be calls as JSON lines (nothing is sent, no state changes).

    The calls carry emails and names: the file is created readable and writable by its owner only
    (``os.open`` with mode 0600, never widened and narrowed after), in a directory created 0700. It
    is written under a temporary name and renamed into place, so a reader never sees half a file
    and a step retried in the same run replaces its own earlier file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            for message in messages:
                fh.write(json.dumps(native(message.payload()), sort_keys=True, default=str) + "\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
