"""Polling Stripe for failed payments, for the failed-payment sensor (plain Python).

The cursor is JSON: ``created`` (newest event time handled), ``seen`` (ids of
events near it, with their times, so an overlap re-read never requests a run
twice), and while a backlog is being worked through, ``resume`` (where the
listing stopped) and ``since``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collections.abc import Callable

import stripe

from s2s_pipeline.core.alert_rule import FAILED_PAYMENT_EVENT_TYPES
from s2s_pipeline.stripe.client import StripeReader

#: Re-read this far behind the cursor: Stripe does not guarantee event order.
OVERLAP_SECONDS = 300


@dataclass
class Poll:
    """New failed-payment events (oldest first) and the cursor to store."""

    events: list[dict]
    cursor: dict
    complete: bool  # False when the page cap stopped the listing (the next tick continues)
    not_alerting: int = 0  # new failures that ``alerts_on`` turned down (e.g. an invoice's declined charge)


def _page_at(reader: StripeReader, params: dict[str, Any]) -> tuple[dict, int]:
    """One page of events and Stripe's clock, filtered to the requested types here too.

    Real Stripe filters by ``types[]``; a server that refuses the parameter gets
    the unfiltered list, and one that silently ignores it is filtered here.
    """
    wanted = set(params.get("types") or ())
    try:
        body, at = reader.get_at("/v1/events", params)
    except stripe.InvalidRequestError as exc:
        if not wanted or getattr(exc, "param", None) not in (None, "types", "types[]"):
            raise
        body, at = reader.get_at("/v1/events", {k: v for k, v in params.items() if k != "types"})
    body = body or {"data": [], "has_more": False}
    if wanted:
        data = body.get("data") or []
        body = {**body, "data": [e for e in data if e.get("type") in wanted],
                # paging continues after the last event listed, matching or not
                "_last_id": data[-1].get("id") if data else None}
    return body, at


def _page(reader: StripeReader, params: dict[str, Any]) -> dict:
    return _page_at(reader, params)[0]


def _next_after(body: dict, page: list[dict]) -> str | None:
    return body.get("_last_id") or (page[-1]["id"] if page else None)


def _first_cursor(reader: StripeReader, types: list[str], now: int, max_pages: int, page_size: int) -> dict:
    """Start at the newest failed payment, with every failure the overlap window would re-read marked seen.

    Later ticks re-read ``OVERLAP_SECONDS`` behind the cursor; history events
    in that window must not be mistaken for new ones.
    """
    body, stripe_now = _page_at(reader, {"types": types, "limit": 1})
    first = body.get("data") or []
    if first:
        start = int(first[0]["created"])  # the newest failed payment
    else:
        # No failure yet: the newest event of any kind (the events' own clock),
        # else Stripe's Date header.
        any_event = (reader.get("/v1/events", {"limit": 1}) or {}).get("data") or []
        start = int(any_event[0]["created"]) if any_event else stripe_now
    params: dict[str, Any] = {"types": types, "created": {"gte": start - OVERLAP_SECONDS}, "limit": page_size}
    seen: dict[str, int] = {e["id"]: int(e["created"]) for e in first}
    for _ in range(max_pages):
        body = _page(reader, params)
        page = body.get("data") or []
        seen.update({e["id"]: int(e["created"]) for e in page})
        after = _next_after(body, page)
        if not body.get("has_more") or not after:
            break
        params["starting_after"] = after
    return {"created": start, "seen": seen}


def poll_failed_payments(reader: StripeReader, cursor: dict | None, *, now: int, max_pages: int = 5,
                         page_size: int = 100, alerts_on: Callable[[dict], bool] | None = None) -> Poll:
    """One sensor tick's worth of new failed-payment events.

    First tick (no cursor): no events; the cursor starts at the newest failed
    payment (history is not replayed). Later ticks list events since
    ``created - OVERLAP_SECONDS``, at most ``max_pages`` pages; a longer
    backlog is continued from where it stopped on the next tick.
    ``alerts_on`` (``core.alert_rule.is_failed_payment_alert`` with a lookup)
    keeps only the events that yield an alert; the others are still marked
    seen, so they are never considered again.
    """
    types = list(FAILED_PAYMENT_EVENT_TYPES)
    if cursor is None:
        return Poll([], _first_cursor(reader, types, now, max_pages, page_size), True)

    seen: dict[str, int] = dict(cursor.get("seen") or {})
    since = int(cursor.get("since", int(cursor["created"]) - OVERLAP_SECONDS))
    params: dict[str, Any] = {"types": types, "created": {"gte": since}, "limit": page_size}
    if cursor.get("resume"):
        params["starting_after"] = cursor["resume"]
    fetched: list[dict] = []
    has_more = False
    for _ in range(max_pages):
        body = _page(reader, params)
        page = body.get("data") or []
        fetched += page
        after = _next_after(body, page)
        has_more = bool(body.get("has_more")) and after is not None
        if not has_more:
            break
        params["starting_after"] = after
    new = [e for e in fetched if e["id"] not in seen]
    new.sort(key=lambda e: (int(e["created"]), e["id"]))
    for event in new:
        seen[event["id"]] = int(event["created"])
    alerting = [e for e in new if alerts_on is None or alerts_on(e)]
    if has_more:
        next_cursor = {"created": int(cursor["created"]), "since": since, "resume": params["starting_after"],
                       "seen": seen}
        return Poll(alerting, next_cursor, False, len(new) - len(alerting))
    # Events seen on earlier pages of a backlog count too: they were newer than this page.
    newest = max([int(cursor["created"])] + [int(e["created"]) for e in fetched] + list(seen.values()))
    # Forget ids that an overlap re-read can no longer return.
    seen = {i: t for i, t in seen.items() if t >= newest - OVERLAP_SECONDS}
    return Poll(alerting, {"created": newest, "seen": seen}, True, len(new) - len(alerting))
