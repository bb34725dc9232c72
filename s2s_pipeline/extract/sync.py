"""Keeping the mirror in step with Stripe: backfills, the change feed, reference resolution.

Plain Python (no Dagster): the assets in ``s2s_pipeline.defs`` call these.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from s2s_pipeline.store.mirror import ApplyStats
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import EVENTS_RETENTION_SECONDS, LIST_SPECS, StripeReader, Window, split_window
from s2s_pipeline.stripe.errors import MalformedStripeObject
from s2s_pipeline.stripe.normalize import SUPPORTED_OBJECTS, Rows, scrub, to_rows

log = logging.getLogger(__name__)

#: Name of the change feed's cursor in the ``sync_cursors`` table.
EVENTS_CURSOR = "stripe_events"

#: Every object type the mirror holds, in listing order.
ALL_OBJECT_TYPES: tuple[str, ...] = tuple(LIST_SPECS)

#: Re-read this much before the cursor: Stripe does not guarantee event order,
#: so an event can become visible after a newer one. The ledger dedupes.
DEFAULT_OVERLAP_SECONDS = 600

#: Resync when the cursor is this close to falling out of the Events API window.
_RETENTION_MARGIN_SECONDS = 3600

#: Event types whose object no longer exists afterwards.
_DELETION_EVENTS = frozenset({"customer.deleted", "product.deleted", "price.deleted", "coupon.deleted",
                              "plan.deleted", "invoice.deleted"})


class PartialSyncError(RuntimeError):
    """Some Stripe objects could not be parsed; everything else was committed.

    The message lists the object ids and what was wrong, so they can be
    inspected in the Stripe dashboard.
    """


@dataclass
class SyncResult:
    """What one sync did, for asset metadata and logs."""

    mode: str
    stats: ApplyStats = field(default_factory=ApplyStats)
    listed: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    references_fetched: int = 0
    events_read: int = 0
    events_new: int = 0
    events_duplicate: int = 0
    events_applied: int = 0
    malformed: list[str] = field(default_factory=list)
    cursor: dict | None = None
    requests: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    note: str = ""

    def metadata(self) -> dict:
        out = {
            "mode": self.mode,
            "objects_listed": sum(self.listed.values()),
            "rows_applied": self.stats.total_applied,
            "stale_snapshots_ignored": sum(self.stats.stale.values()),
            "marked_deleted": self.deleted,
            "references_fetched": self.references_fetched,
            "stripe_requests": self.requests,
            "stripe_429s": self.rate_limited,
            "seconds": round(self.seconds, 3),
        }
        if self.listed:
            out["listed_by_type"] = dict(self.listed)
        if self.events_read or self.mode == "incremental":
            out.update(events_read=self.events_read, events_new=self.events_new,
                       events_duplicate=self.events_duplicate, events_applied=self.events_applied)
        if self.cursor is not None:
            out["cursor_created"] = self.cursor.get("created")
        if self.malformed:
            out["malformed_objects"] = len(self.malformed)
        if self.note:
            out["note"] = self.note
        return out

    def raise_if_malformed(self) -> None:
        if self.malformed:
            shown = "; ".join(self.malformed[:20])
            more = f" (+{len(self.malformed) - 20} more)" if len(self.malformed) > 20 else ""
            raise PartialSyncError(
                f"{len(self.malformed)} Stripe object(s) could not be parsed and were not mirrored "
                f"(everything else was committed): {shown}{more}"
            )


def _rows_for(objects: Iterable[dict], version_ts: int, malformed: list[str]) -> Rows:
    rows = Rows()
    for obj in objects:
        try:
            rows.extend(to_rows(obj, version_ts))
        except MalformedStripeObject as exc:
            malformed.append(str(exc))
    return rows


def _list_into_mirror(reader: StripeReader, store: StateStore, jobs: list[tuple[str, Window]],
                      result: SyncResult) -> dict[str, set[str]]:
    """List every (type, window) job into the mirror; returns ids seen per type."""
    seen: dict[str, set[str]] = {}
    for page in reader.fetch_many(jobs):
        result.listed[page.object_type] = result.listed.get(page.object_type, 0) + len(page.objects)
        seen.setdefault(page.object_type, set()).update(o.get("id") for o in page.objects)
        # One transaction per page: a crash loses at most the page in flight,
        # and re-running the window is safe (newest-wins upserts).
        result.stats.merge(store.mirror.apply(_rows_for(page.objects, page.fetched_at, result.malformed)))
    return seen


def resolve_references(reader: StripeReader, store: StateStore, result: SyncResult) -> None:
    """Fetch by id the prices, products and coupons mirrored rows point at but the mirror lacks."""
    # Subscriptions first (their coupons), prices before products.
    for object_type in ("subscription", "price", "coupon", "product"):
        missing = store.mirror.missing_references()[object_type]
        fetched = Rows()
        for object_id in missing:
            obj, version = reader.retrieve(object_type, object_id)
            if obj is None:
                log.warning("Stripe %s %s is referenced but does not exist", object_type, object_id)
                continue
            fetched.extend(_rows_for([obj], version, result.malformed))
            result.references_fetched += 1
        if object_type == "subscription":
            if fetched.parents:
                store.mirror.apply(fetched)
        elif fetched.parents.get(object_type):
            store.mirror.upsert_full(object_type, fetched.parents[object_type])


def backfill(reader: StripeReader, store: StateStore, object_types: Iterable[str], gte: int, lt: int,
             *, clock: Callable[[], float] = time.time) -> SyncResult:
    """Mirror every object of the given types created in [gte, lt).

    The range is split into windows listed concurrently. Re-running a range is
    safe: upserts are newest-wins, and customers mirrored for the range that
    Stripe no longer lists are flagged deleted.
    """
    started = clock()
    result = SyncResult(mode="backfill")
    object_types = list(object_types)
    days = max(1, (lt - gte + 86399) // 86400)
    pieces = min(days, 2 * reader.settings.concurrency)
    jobs = [(t, w) for t in object_types for w in split_window(gte, lt, pieces)]
    before = {t: store.mirror.live_ids(t, gte, lt) for t in object_types if t == "customer"}
    list_started = int(started)
    seen = _list_into_mirror(reader, store, jobs, result)
    for object_type, known in before.items():
        gone = known - seen.get(object_type, set())
        result.deleted += store.mirror.mark_deleted(object_type, gone, list_started)
    resolve_references(reader, store, result)
    result.requests, result.rate_limited = reader.request_count, reader.rate_limited_count
    result.seconds = clock() - started
    return result


def full_sync(reader: StripeReader, store: StateStore, result: SyncResult, now: int,
              object_types: Iterable[str] = ALL_OBJECT_TYPES) -> None:
    """List every object Stripe has (all types concurrently) and flag vanished customers."""
    object_types = list(object_types)
    jobs = [(t, Window(None, None)) for t in object_types]
    before = store.mirror.live_ids("customer", None, None)
    seen = _list_into_mirror(reader, store, jobs, result)
    if "customer" in object_types:
        result.deleted += store.mirror.mark_deleted("customer", before - seen.get("customer", set()), now)
    resolve_references(reader, store, result)


def _is_history(event: dict, cursor: dict) -> bool:
    """Whether an event happened before the first sync (it is never sent as a track call)."""
    created = int(event.get("created") or 0)
    baseline = int(cursor.get("baseline", 0))
    return created < baseline or (created == baseline and event["id"] in cursor.get("baseline_ids", ()))


def _ledger_row(event: dict, applied: bool, history: bool, now: int, detail: str | None = None) -> dict:
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


#: Fetches one object by (type, id) with the Stripe-clock time of the fetch.
Refetch = Callable[[str, str], "tuple[dict | None, int]"]


def _collapsed_discounts(event: dict) -> bool:
    """A subscription snapshot naming discounts by id only (event payloads are never expanded).

    Its coupons cannot be priced from the payload, so the subscription is
    fetched again (expanded) rather than losing its coupons from MRR.
    """
    obj = (event.get("data") or {}).get("object") or {}
    if obj.get("object") != "subscription":
        return False
    items = (obj.get("items") or {}).get("data") or []
    lists = [obj.get("discounts") or []] + [item.get("discounts") or [] for item in items]
    return any(isinstance(d, str) for ds in lists for d in ds)


def _pick_snapshots(store: StateStore, parsed: list[tuple[dict, Rows]], result: SyncResult,
                    refetch: Refetch) -> Rows:
    """Choose, per object, the snapshot the mirror should hold after these events.

    Stripe stamps events in whole seconds and often emits several for one
    object in the same second (invoice created, finalized, paid). When the
    newest snapshot is not unique, or ties with the stored version, the order
    cannot be told from the events, so the object is fetched again instead;
    so is a subscription whose discounts the payload names by id only.
    """
    groups: dict[tuple[str, str], list[tuple[dict, Rows]]] = {}
    for event, rows in parsed:
        ((table_type, (row, *_)),) = rows.parents.items()
        groups.setdefault((table_type, row["id"]), []).append((event, rows))
    stored: dict[tuple[str, str], int] = {}
    for table_type in {t for t, _ in groups}:
        ids = [i for t, i in groups if t == table_type]
        stored.update({(table_type, i): v for i, v in store.mirror.versions(table_type, ids).items()})
    chosen = Rows()
    for key, group in groups.items():
        newest = max(int(e["created"]) for e, _ in group)
        top = [(e, r) for e, r in group if int(e["created"]) == newest]
        result.stats.stale[key[0]] += len(group) - len(top)
        known = stored.get(key)
        deletion = next((r for e, r in top if e.get("type") in _DELETION_EVENTS), None)
        if known is not None and newest < known:
            result.stats.stale[key[0]] += len(top)
        elif deletion is not None:
            chosen.extend(deletion)  # nothing comes after a deletion
        elif len(top) == 1 and (known is None or newest > known) and not _collapsed_discounts(top[0][0]):
            chosen.extend(top[0][1])
        else:
            obj, version = refetch(*key)
            if obj is None:
                log.warning("Stripe %s %s changed but can no longer be retrieved", *key)
                continue
            chosen.extend(_rows_for([obj], version, result.malformed))
            result.references_fetched += 1
    return chosen


def apply_events(store: StateStore, events: list[dict], cursor: dict, now: int, result: SyncResult,
                 refetch: Refetch, *, advance_cursor: bool = True) -> dict:
    """Apply new events' snapshots newest-wins and ledger them, with the cursor, atomically.

    ``advance_cursor=False`` handles events out of band (the failed-payment
    alert job) without moving the change feed's position.
    """
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
    ledger = []
    for event in fresh:
        snapshot = _snapshot(event)
        detail = None
        if snapshot is not None:
            malformed: list[str] = []
            rows = _rows_for([snapshot], int(event["created"]), malformed)
            if malformed:
                detail = f"not mirrored: {malformed[0]}"
                result.malformed.append(f"event {event['id']}: {malformed[0]}")
            else:
                parsed.append((event, rows))
        applied = snapshot is not None and detail is None
        result.events_applied += applied
        ledger.append(_ledger_row(event, applied, _is_history(event, cursor), now, detail))
    rows = _pick_snapshots(store, parsed, result, refetch)
    newest = max([int(e["created"]) for e in events] + [int(cursor.get("created", 0))])
    new_cursor = {**cursor, "created": newest, "updated_at": now}
    result.stats.merge(store.commit_events(rows, ledger, (EVENTS_CURSOR, new_cursor) if advance_cursor else None))
    result.events_read = len(events)
    result.events_new = len(fresh)
    return new_cursor


def ensure_mirrored(reader: StripeReader, store: StateStore, object_type: str, object_id: str | None) -> bool:
    """Fetch an object the mirror does not have yet (e.g. the customer of a brand-new failed payment)."""
    if not object_id or store.mirror.versions(object_type, [object_id]):
        return False
    obj, version = reader.retrieve(object_type, object_id)
    if obj is None:
        return False
    store.mirror.apply(to_rows(obj, version))
    return True


def apply_single_event(reader: StripeReader, store: StateStore, event: dict, *,
                       clock: Callable[[], float] = time.time) -> SyncResult:
    """Mirror and ledger one event fetched out of band (the change feed will find it known)."""
    now = int(clock())
    result = SyncResult(mode="single_event")
    cursor = store.cursors.get(EVENTS_CURSOR) or {}
    apply_events(store, [event], cursor, now, result, reader.retrieve, advance_cursor=False)
    # A customer created since the last sync: mirror it too, so calls about it
    # use the identity its identify calls will use.
    customer = ((event.get("data") or {}).get("object") or {}).get("customer")
    ensure_mirrored(reader, store, "customer", customer.get("id") if isinstance(customer, dict) else customer)
    return result


def sync_changes(reader: StripeReader, store: StateStore, *, overlap_seconds: int = DEFAULT_OVERLAP_SECONDS,
                 clock: Callable[[], float] = time.time,
                 object_types: Iterable[str] = ALL_OBJECT_TYPES) -> SyncResult:
    """Bring the mirror up to date from Stripe's Events API.

    - No cursor yet: a full sync, and the cursor starts at the newest event
      (events from before it are history, never replayed as track calls).
    - Cursor older than the Events API's 30-day window: the events in between
      are gone, so every object is listed again (and the run says so).
    - Otherwise: events since the cursor (minus an overlap, deduped by id),
      applied only where newer than the mirror.
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
        full_sync(reader, store, result, now, object_types)
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
        full_sync(reader, store, result, now, object_types)
        # The events Stripe still keeps are ledgered as usual (their snapshots
        # are older than the fresh listing, so newest-wins skips them).
        events = reader.list_events(since=stripe_now - EVENTS_RETENTION_SECONDS + _RETENTION_MARGIN_SECONDS)
        moved = {**cursor, "created": max(int(cursor["created"]), stripe_now), "last_full_sync": now}
        result.cursor = apply_events(store, events, moved, now, result, reader.retrieve)
    else:
        result = SyncResult(mode="incremental")
        events = reader.list_events(since=max(0, int(cursor["created"]) - overlap_seconds))
        result.cursor = apply_events(store, events, cursor, now, result, reader.retrieve)
        resolve_references(reader, store, result)
    result.requests, result.rate_limited = reader.request_count, reader.rate_limited_count
    result.seconds = clock() - started
    return result
