"""Writing Stripe objects so that one bad object never stops the others.

A page (or batch) is written in one transaction, the fast path. When the
database refuses a value of it, each object is written in its own transaction
instead and the refused ones go to the quarantine with the reason; the rest
is mirrored. Logs name Stripe ids only, never the refused values.
"""

from __future__ import annotations

import logging
from typing import Iterable

from s2s_pipeline.extract.results import SyncResult, rows_for
from s2s_pipeline.store.mirror import ApplyStats
from s2s_pipeline.store.quarantine import QuarantineEntry
from s2s_pipeline.store.refusals import UnstorableInput
from s2s_pipeline.store.state_store import StateStore

log = logging.getLogger(__name__)


def note_quarantined(result: SyncResult, entry: QuarantineEntry) -> None:
    """Count and log one object set aside (type, id, event ids and the reason, which quotes no value)."""
    events = f" (events {', '.join(entry.event_ids)})" if entry.event_ids else ""
    log.warning("Stripe %s %s%s set aside in the quarantine: %s", entry.object_type, entry.object_id, events,
                entry.reason)
    result.quarantined.append(f"{entry.object_type} {entry.object_id}: {entry.reason}")


def flush_set_aside(store: StateStore, result: SyncResult, now: int) -> None:
    """Write the objects found malformed so far to the quarantine."""
    entries, result.set_aside = result.set_aside, []
    if entries:
        store.quarantine.set_aside(entries, now)
        for entry in entries:
            note_quarantined(result, entry)


def apply_objects(store: StateStore, objects: list[dict], version_ts: int, result: SyncResult) -> ApplyStats:
    """Mirror listed objects in one transaction; when one is refused, one transaction per object.

    Malformed objects join ``result.set_aside``; refused ones too, with the database's reason.
    """
    rows = rows_for(objects, version_ts, result.malformed, set_aside=result.set_aside)
    try:
        return store.mirror.apply(rows)
    except UnstorableInput:
        pass
    stats = ApplyStats()
    for obj in objects:
        one = rows_for([obj], version_ts, [])  # malformed ones were noted above (and give no rows)
        if not one.parents:
            continue
        try:
            stats.merge(store.mirror.apply(one))
        except UnstorableInput as exc:
            result.set_aside.append(QuarantineEntry(str(obj.get("object")), str(obj.get("id")), str(exc), obj))
    return stats


def upsert_each(store: StateStore, object_type: str, objects: Iterable[tuple[dict, dict]], result: SyncResult) -> None:
    """``mirror.upsert_full`` of (object, row) pairs; when one is refused, one transaction per object."""
    pairs = list(objects)
    try:
        store.mirror.upsert_full(object_type, [row for _, row in pairs])
        return
    except UnstorableInput:
        pass
    for obj, row in pairs:
        try:
            store.mirror.upsert_full(object_type, [row])
        except UnstorableInput as exc:
            result.set_aside.append(QuarantineEntry(object_type, str(obj.get("id")), str(exc), obj))
