"""Reading the webhook inbox for failed payments, for the failed-payment sensor (plain Python).

The cursor is JSON: ``after_ms`` (the newest arrival time handled, the
receiver's clock in milliseconds) and ``seen`` (ids of events that arrived
near it, with their arrival times). Each read starts ``OVERLAP_MS`` before
``after_ms``: an event's arrival time is taken before its row commits, so a
slow commit can land behind a newer one; ``seen`` keeps the re-read from
requesting a run twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from s2s_pipeline.core.alert_rule import FAILED_PAYMENT_EVENT_TYPES
from s2s_pipeline.store.webhook_inbox import WebhookInbox

#: Re-read this far behind the newest arrival handled (commit order may lag arrival order).
OVERLAP_MS = 60_000
#: Rows per page; a tick reads at most ``max_pages`` pages and continues on the next tick.
PAGE_SIZE = 500


@dataclass
class InboxRead:
    """New failed-payment events from the inbox (arrival order) and the cursor to store."""

    events: list[dict]
    cursor: dict
    complete: bool = True  # False when the page cap stopped the read
    not_alerting: int = 0  # new failures the alert rule turned down (an invoice's declined charge)


def read_inbox_failures(inbox: WebhookInbox, cursor: dict | None, *, now_ms: int, max_pages: int = 4,
                        page_size: int = PAGE_SIZE, alerts_on: Callable[[dict], bool] | None = None) -> InboxRead:
    """One sensor tick's worth of new failed payments delivered by webhook.

    First read (no cursor): no events; the cursor starts now (like the Events
    API poll, the sensor's first tick replays no history). ``alerts_on``
    (the shared alert rule) keeps the events that yield an alert; the others
    are still marked seen.
    """
    if cursor is None:
        # what the next read's overlap would re-read is history too: mark it seen
        recent = inbox.received_since(FAILED_PAYMENT_EVENT_TYPES, int(now_ms) - OVERLAP_MS, page_size * max_pages)
        return InboxRead([], {"after_ms": max([int(now_ms)] + [r.received_at_ms for r in recent]),
                              "seen": {r.event_id: r.received_at_ms for r in recent}})
    seen: dict[str, int] = {k: int(v) for k, v in (cursor.get("seen") or {}).items()}
    after_ms = int(cursor["after_ms"])
    since, after_id = after_ms - OVERLAP_MS, None
    if cursor.get("resume"):  # a backlog read in part by the last tick
        since, after_id = int(cursor["resume"][0]), cursor["resume"][1]
    rows, complete = [], True
    for page_number in range(max_pages):
        page = inbox.received_since(FAILED_PAYMENT_EVENT_TYPES, since, page_size, after_id=after_id)
        rows += page
        if len(page) < page_size:
            break
        since, after_id = page[-1].received_at_ms, page[-1].event_id
        complete = page_number + 1 < max_pages
    new = [r for r in rows if r.event_id not in seen and r.payload is not None]
    for row in new:
        seen[row.event_id] = row.received_at_ms
    newest = max([after_ms] + [r.received_at_ms for r in rows])
    if complete:
        seen = {i: t for i, t in seen.items() if t >= newest - OVERLAP_MS}
        next_cursor = {"after_ms": newest, "seen": seen}
    else:
        # a backlog: keep the window open (seen keeps what was handled) and continue next tick
        next_cursor = {"after_ms": after_ms, "seen": seen, "resume": [since, after_id]}
    events = [r.payload for r in new]
    alerting = [e for e in events if alerts_on is None or alerts_on(e)]
    return InboxRead(alerting, next_cursor, complete, len(events) - len(alerting))
