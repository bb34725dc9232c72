"""The change feed: Stripe's Events API since the cursor, applied to the mirror and the event ledger.

Each event's object snapshot is applied only where it is newer than the
mirror's, and every event is ledgered once with the cursor, atomically. An
object the database refuses is set aside in the quarantine (its events
ledgered ``quarantined``) and the rest applied. A
cursor too old for the Events API's 30-day window makes it list everything
again instead (and say so). Plain Python (no Dagster).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from s2s_pipeline.core.bulk_work import bulk_work
from s2s_pipeline.core.ids import id_of
from s2s_pipeline.core.kill_points import kill_point
from s2s_pipeline.core.progress import ProgressSink
from s2s_pipeline.extract.backfill import ALL_OBJECT_TYPES, full_sync
from s2s_pipeline.extract.isolation import flush_set_aside, note_quarantined
from s2s_pipeline.extract.references import ensure_mirrored, resolve_references
from s2s_pipeline.extract.results import SyncResult, rows_for
from s2s_pipeline.store.quarantine import QuarantineEntry
from s2s_pipeline.store.refusals import UnstorableInput
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import EVENTS_RETENTION_SECONDS, StripeReader, sort_events
from s2s_pipeline.stripe.normalize import SUPPORTED_OBJECTS, Rows, scrub

log = logging.getLogger(__name__)

#: Name of the change feed's cursor in the ``sync_cursors`` table.
EVENTS_CURSOR = "stripe_events"

#: Re-read this much before the cursor: Stripe does not guarantee event order,
#: so an event can become visible after a newer one. The ledger dedupes.
DEFAULT_OVERLAP_SECONDS = 600

#: Resync when the cursor is this close to falling out of the Events API window.
_RETENTION_MARGIN_SECONDS = 3600

#: Event types whose object no longer exists afterwards.
_DELETION_EVENTS = frozenset({"customer.deleted", "product.deleted", "price.deleted", "coupon.deleted",
                              "plan.deleted", "invoice.deleted", "customer.discount.deleted"})


def is_history(event: dict, cursor: dict) -> bool:
    """Whether an event happened before the first sync (it is never sent as a track call)."""
    created = int(event.get("created") or 0)
    baseline = int(cursor.get("baseline", 0))
    return created < baseline or (created == baseline and event["id"] in cursor.get("baseline_ids", ()))


def _ledger_row(event: dict, applied: bool, history: bool, now: int, detail: str | None = None) -> dict:
    """The ledger row of an event; its payload is the event ``scrub`` made (a scrubbed event is kept as it is)."""
    obj = (event.get("data") or {}).get("object") or {}
    return {
        "id": event["id"],
        "type": event.get("type") or "",
        "created": int(event.get("created") or 0),
        "object_id": obj.get("id"),
        "object_type": obj.get("object"),
        "api_version": event.get("api_version"),
        "received_at": now,
        "applied": applied,
        # Events from before the first sync are history: never sent as track calls.
        "track_status": "historical" if history else "pending",
        "track_detail": detail,
        "payload": scrub(event),
    }


def _snapshot(event: dict) -> dict | None:
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict) or obj.get("object") not in SUPPORTED_OBJECTS:
        return None
    if event.get("type") in _DELETION_EVENTS:
        # The deletion event carries the object as it was; the mirror keeps it, flagged.
        obj = {**obj, "deleted": True}
    return obj


@dataclass
class Normalised:
    """One event made ready to apply: scrubbed, its snapshot turned into mirror rows (None: it has no
    snapshot the mirror keeps, or a malformed one), and what a malformed snapshot gives the run's
    report and the quarantine. Made without touching the store or the run's result, so events can be
    normalised as their pages arrive, before it is known which of them are new."""

    event: dict
    rows: Rows | None
    malformed: list[str] = field(default_factory=list)
    set_aside: list[QuarantineEntry] = field(default_factory=list)


def normalise(event: dict) -> Normalised:
    """``event`` scrubbed once (the ledger keeps it, the mirror's raw its object: the same scrubbed dicts)
    and its snapshot's mirror rows, rendered at the event's API version (which may predate the pinned one)."""
    event = scrub(event)
    snapshot = _snapshot(event)
    if snapshot is None:
        return Normalised(event, None)
    malformed: list[str] = []
    set_aside: list[QuarantineEntry] = []
    rows = rows_for([snapshot], int(event["created"]), malformed, event.get("api_version"),
                    set_aside=set_aside, event_ids=(event["id"],))
    return Normalised(event, None if malformed else rows, malformed, set_aside)


#: Fetches one object by (type, id) with the Stripe-clock time of the fetch.
Refetch = Callable[[str, str], "tuple[dict | None, int]"]


def _collapsed_discount_ids(event: dict) -> set[str]:
    """The discounts a subscription snapshot names by id only (event payloads are never expanded)."""
    obj = (event.get("data") or {}).get("object") or {}
    if obj.get("object") != "subscription":
        return set()
    items = (obj.get("items") or {}).get("data") or []
    lists = [obj.get("discounts") or []] + [item.get("discounts") or [] for item in items]
    return {d for ds in lists for d in ds if isinstance(d, str)}


def _with_mirrored_discounts(rows: Rows, collapsed: set[str], terms: dict[str, dict]) -> Rows | None:
    """``rows`` with the discounts the snapshot names by id given the coupon, start and end the mirror holds
    for them (a discount's terms never change); None when one of them is not mirrored with its coupon:
    its coupon cannot be priced from the payload, so the subscription is fetched again (expanded) rather
    than losing its coupon from MRR."""
    if not collapsed <= terms.keys():
        return None
    for parent, discounts in rows.discounts.items():
        rows.discounts[parent] = [{**row, **terms[row["id"]]} if row["id"] in collapsed else row for row in discounts]
    return rows


def _pick_snapshots(store: StateStore, parsed: list[tuple[dict, Rows]], result: SyncResult,
                    refetch: Refetch) -> dict[tuple[str, str], Rows | None]:
    """Choose, per object, the snapshot the mirror should hold after these events (None: none to apply).

    Stripe stamps events in whole seconds and often emits several for one
    object in the same second (invoice created, finalized, paid). When the
    newest snapshot is not unique, or ties with the stored version, the order
    cannot be told from the events, so the object is fetched again instead;
    so is a subscription whose discounts the payload names by id only, unless
    the mirror holds each of them with its coupon (one look-up for all the
    events: the usual subscription update, seats or status, keeps its discounts).
    """
    groups: dict[tuple[str, str], list[tuple[dict, Rows]]] = {}
    for event, rows in parsed:
        groups.setdefault(_object_key(event, rows), []).append((event, rows))
    stored: dict[tuple[str, str], int] = {}
    for table_type in {t for t, _ in groups}:
        ids = [i for t, i in groups if t == table_type]
        stored.update({(table_type, i): v for i, v in store.mirror.versions(table_type, ids).items()})
    named = set().union(*(_collapsed_discount_ids(event) for event, _ in parsed))
    terms = store.mirror.discount_terms(named) if named else {}
    chosen: dict[tuple[str, str], Rows | None] = {}
    for key, group in groups.items():
        chosen[key] = None
        newest = max(int(e["created"]) for e, _ in group)
        top = [(e, r) for e, r in group if int(e["created"]) == newest]
        result.stats.stale[key[0]] += len(group) - len(top)
        known = stored.get(key)
        deletion = next((r for e, r in top if e.get("type") in _DELETION_EVENTS), None)
        if known is not None and newest < known:
            result.stats.stale[key[0]] += len(top)
            continue
        if deletion is not None:
            chosen[key] = deletion  # nothing comes after a deletion
            continue
        if len(top) == 1 and (known is None or newest > known):
            event, rows = top[0]
            collapsed = _collapsed_discount_ids(event)
            if not collapsed:
                chosen[key] = rows
                continue
            if rows is not None:
                chosen[key] = _with_mirrored_discounts(rows, collapsed, terms)
                if chosen[key] is not None:
                    continue
        obj, version = refetch(*key)
        if obj is None:
            log.warning("Stripe %s %s changed but can no longer be retrieved", *key)
            continue
        chosen[key] = rows_for([obj], version, result.malformed, set_aside=result.set_aside,
                               event_ids=tuple(e["id"] for e, _ in group))
        result.references_fetched += 1
    return chosen


def _object_key(event: dict, rows: Rows | None) -> tuple[str, str]:
    """The Stripe object an event is about: the mirror row its snapshot gives, else its ``data.object``
    (a discount of ``customer.discount.*``), else the event itself."""
    if rows is not None and rows.parents:
        ((table_type, (row, *_)),) = rows.parents.items()
        return table_type, row["id"]
    obj = (event.get("data") or {}).get("object") or {}
    if isinstance(obj, dict) and obj.get("object") and obj.get("id"):
        return str(obj["object"]), str(obj["id"])
    return "event", event["id"]


@dataclass
class _ObjectChange:
    """What these events do to one Stripe object: the rows to apply and the ledger rows of its events.

    The unit the quarantine sets aside when the database refuses one of its values.
    """

    rows: Rows = field(default_factory=Rows)
    ledger: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)


def _quarantined_ledger_row(row: dict, reason: str) -> dict:
    # No payload: it holds the value the database refused. A retry fetches the event again.
    return {**row, "payload": None, "applied": False, "track_status": "quarantined",
            "track_detail": f"quarantined: {reason}"}


def _commit_isolating(store: StateStore, changes: dict[tuple[str, str], _ObjectChange], rows: Rows,
                      ledger: list[dict], cursor: tuple[str, dict] | None, result: SyncResult, now: int) -> None:
    """All events in one transaction; when the database refuses a value, one transaction per object,
    the refused objects quarantined (their events ledgered ``quarantined``), then the cursor."""
    try:
        result.stats.merge(store.commit_events(rows, ledger, cursor))
        return
    except UnstorableInput:
        log.warning("the database refused a value among %d events; applying them object by object", len(ledger))
    for (object_type, object_id), change in changes.items():
        try:
            result.stats.merge(store.commit_events(change.rows, change.ledger))
        except UnstorableInput as exc:
            newest = max(change.events, key=lambda e: int(e.get("created") or 0))
            entry = QuarantineEntry(object_type, object_id, str(exc), (newest.get("data") or {}).get("object"),
                                    tuple(e["id"] for e in change.events))
            store.set_aside_events([entry], [_quarantined_ledger_row(r, str(exc)) for r in change.ledger], now)
            result.events_applied -= sum(bool(r["applied"]) for r in change.ledger)
            note_quarantined(result, entry)
    if cursor is not None:
        store.cursors.set(*cursor)


def apply_events(store: StateStore, events: list[dict], cursor: dict, now: int, result: SyncResult,
                 refetch: Refetch, *, advance_cursor: bool = True,
                 normalised: dict[str, Normalised] | None = None) -> dict:
    """Apply new events' snapshots newest-wins and ledger them, with the cursor, atomically.

    An object whose values the database refuses (or that lacks a field the
    mirror needs) is set aside in the quarantine and the others applied; the
    cursor moves past it either way. ``advance_cursor=False`` handles events
    out of band (the failed-payment alert job) without moving the change
    feed's position. ``normalised``: events already normalised, by id (the
    others are normalised here).
    """
    normalised = normalised or {}
    known = store.ledger.known_ids(e["id"] for e in events)
    fresh: list[dict] = []
    seen_ids: set[str] = set()
    for event in events:
        if event["id"] in known or event["id"] in seen_ids:
            result.events_duplicate += 1
            continue
        seen_ids.add(event["id"])
        fresh.append(event)
    parsed: list[tuple[dict, Rows]] = []
    changes: dict[tuple[str, str], _ObjectChange] = {}
    ledger = []
    for raw in fresh:
        ready = normalised.get(raw["id"]) or normalise(raw)
        event, rows, detail = ready.event, ready.rows, None
        result.set_aside.extend(ready.set_aside)
        if ready.malformed:
            detail = f"not mirrored: {ready.malformed[0]}"
            result.malformed.append(f"event {event['id']}: {ready.malformed[0]}")
        elif rows is not None:
            parsed.append((event, rows))
        applied = rows is not None
        result.events_applied += applied
        row = _ledger_row(event, applied, is_history(event, cursor), now, detail)
        ledger.append(row)
        change = changes.setdefault(_object_key(event, rows), _ObjectChange())
        change.ledger.append(row)
        change.events.append(event)
    # customer.discount.* carry a Discount: it changes the discounts table only
    # (no versioned parent row); events come oldest first, so the newest wins.
    discount_events = [(e, r) for e, r in parsed if not r.parents]
    parsed = [(e, r) for e, r in parsed if r.parents]
    rows = Rows()
    for key, chosen in _pick_snapshots(store, parsed, result, refetch).items():
        if chosen is not None:
            changes[key].rows.extend(chosen)
            rows.extend(chosen)
    for event, discount_rows in sorted(discount_events, key=lambda pair: int(pair[0]["created"])):
        rows.standalone_discounts.update(discount_rows.standalone_discounts)
        changes[_object_key(event, None)].rows.standalone_discounts.update(discount_rows.standalone_discounts)
    newest = max([int(e["created"]) for e in events] + [int(cursor.get("created", 0))])
    new_cursor = {**cursor, "created": newest, "updated_at": now}
    _commit_isolating(store, changes, rows, ledger, (EVENTS_CURSOR, new_cursor) if advance_cursor else None,
                      result, now)
    flush_set_aside(store, result, now)
    result.events_read = len(events)
    result.events_new = len(fresh)
    return new_cursor


def _listed_and_normalised(reader: StripeReader, since: int) -> tuple[list[dict], dict[str, Normalised]]:
    """The events created at or after ``since``, oldest first (as ``list_events`` gives them), and each
    one normalised as its page arrived: the next page is fetched and paced meanwhile, so normalising
    the events overlaps the listing's wait at Stripe's rate limit instead of following it."""
    events: list[dict] = []
    normalised: dict[str, Normalised] = {}
    for page in reader.event_pages(since, ahead=True):
        events.extend(page)
        for event in page:
            normalised[event["id"]] = normalise(event)
    return sort_events(events), normalised


def apply_single_event(reader: StripeReader, store: StateStore, event: dict, *,
                       clock: Callable[[], float] = time.time) -> SyncResult:
    """Mirror and ledger one event fetched out of band (the change feed will find it known)."""
    now = int(clock())
    result = SyncResult(mode="single_event")
    cursor = store.cursors.get(EVENTS_CURSOR) or {}
    apply_events(store, [event], cursor, now, result, reader.retrieve, advance_cursor=False)
    # A customer created since the last sync: mirror it too, so calls about it
    # use the identity its identify calls will use.
    customer = id_of(((event.get("data") or {}).get("object") or {}).get("customer"))
    ensure_mirrored(reader, store, "customer", customer)
    return result


@bulk_work
def sync_changes(reader: StripeReader, store: StateStore, *, overlap_seconds: int = DEFAULT_OVERLAP_SECONDS,
                 clock: Callable[[], float] = time.time,
                 object_types: Iterable[str] = ALL_OBJECT_TYPES,
                 progress: ProgressSink | None = None) -> SyncResult:
    """Bring the mirror up to date from Stripe's Events API.

    - No cursor yet: a full sync, and the cursor starts at the newest event
      (events from before it are history, never replayed as track calls).
    - Cursor older than the Events API's 30-day window: the events in between
      are gone, so every object is listed again (and the run says so).
    - Otherwise: events since the cursor (minus an overlap, deduped by id),
      applied only where newer than the mirror.

    ``progress`` (e.g. the run log) receives throttled lines while objects are
    listed or looked up, with counts per type, timed on ``clock``.
    """
    started = clock()
    now = int(started)
    cursor = store.cursors.get(EVENTS_CURSOR)
    # Stripe's "now" on the events' own clock: the newest event (Stripe's Date
    # header when there is none). Cursor ages are measured on it, so a server
    # whose clock differs from ours (or a simulated one) is read correctly.
    newest, date_now = reader.newest_events()
    stripe_now = max(int(e["created"]) for e in newest) if newest else date_now
    if cursor is None:
        result = SyncResult(mode="initial_full_sync")
        # The cursor starts at the newest event, taken before listing: changes
        # made while we list appear as later events and are applied
        # (newest-wins) next run. Everything up to it is history.
        full_sync(reader, store, result, now, object_types, progress=progress, clock=clock)
        kill_point("change_feed.listed")  # crash tests: everything listed into the mirror, no cursor yet
        result.cursor = {"created": stripe_now, "baseline": stripe_now,
                         "baseline_ids": sorted(e["id"] for e in newest),
                         "last_full_sync": now, "updated_at": now}
        store.cursors.set(EVENTS_CURSOR, result.cursor)
    elif stripe_now - int(cursor["created"]) > EVENTS_RETENTION_SECONDS - _RETENTION_MARGIN_SECONDS:
        result = SyncResult(mode="resync_cursor_expired")
        age_days = (stripe_now - int(cursor["created"])) / 86400
        result.note = (f"event cursor was {age_days:.1f} days old, beyond Stripe's 30-day Events window: "
                       "re-listed every object; events older than 30 days are gone and cannot be sent as track calls")
        log.warning(result.note)
        full_sync(reader, store, result, now, object_types, progress=progress, clock=clock)
        # The events Stripe still keeps are ledgered as usual (their snapshots
        # are older than the fresh listing, so newest-wins skips them).
        events = reader.list_events(since=stripe_now - EVENTS_RETENTION_SECONDS + _RETENTION_MARGIN_SECONDS)
        moved = {**cursor, "created": max(int(cursor["created"]), stripe_now), "last_full_sync": now}
        result.cursor = apply_events(store, events, moved, now, result, reader.retrieve)
    else:
        result = SyncResult(mode="incremental")
        events, normalised = _listed_and_normalised(reader, since=max(0, int(cursor["created"]) - overlap_seconds))
        result.cursor = apply_events(store, events, cursor, now, result, reader.retrieve, normalised=normalised)
        resolve_references(reader, store, result, progress=progress, clock=clock)
        flush_set_aside(store, result, now)
    result.requests, result.rate_limited = reader.request_count, reader.rate_limited_count
    result.seconds = clock() - started
    return result
