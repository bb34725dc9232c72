"""Filling the mirror's gaps by id: prices, products and coupons that mirrored rows point at.

A subscription listed today can use a price archived years ago, or a coupon
that no list returns any more; the traits need them all, so each missing one
is retrieved by id.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from s2s_pipeline.core.progress import ProgressReporter, ProgressSink
from s2s_pipeline.extract.isolation import upsert_each
from s2s_pipeline.extract.results import SyncResult, rows_for
from s2s_pipeline.store.mirror import REFERENCE_TYPES
from s2s_pipeline.store.quarantine import QuarantineEntry
from s2s_pipeline.store.refusals import UnstorableInput
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.store.schema import MIRROR_TABLES
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.normalize import Rows, to_rows

log = logging.getLogger(__name__)


def resolve_references(reader: StripeReader, store: StateStore, result: SyncResult, *,
                       progress: ProgressSink | None = None, clock: Callable[[], float] = time.monotonic) -> None:
    """Fetch by id the prices, products and coupons mirrored rows point at but the mirror lacks.

    ``progress`` receives throttled lines: how many of the missing objects of each type were looked up.
    """
    reporter = ProgressReporter(progress, "looked up by id", clock=clock)
    # Subscriptions first (their coupons), prices before products (REFERENCE_TYPES' order); each type
    # is looked for after the previous ones were stored, so what they point at is found too.
    for object_type in REFERENCE_TYPES:
        missing = store.mirror.missing_references([object_type])[object_type]
        fetched: list[tuple[dict, Rows]] = []
        for done, object_id in enumerate(missing):
            reporter.update(MIRROR_TABLES[object_type].name, done, total=len(missing))
            obj, version = reader.retrieve(object_type, object_id)
            if obj is None:
                log.warning("Stripe %s %s is referenced but does not exist", object_type, object_id)
                continue
            rows = rows_for([obj], version, result.malformed, set_aside=result.set_aside)
            if rows.parents:
                fetched.append((obj, rows))
            result.references_fetched += 1
        _store_fetched(store, object_type, fetched, result)
        if missing:
            reporter.update(MIRROR_TABLES[object_type].name, len(missing), total=len(missing), emit=False)
    reporter.finish()


def _store_fetched(store: StateStore, object_type: str, fetched: list[tuple[dict, Rows]],
                   result: SyncResult) -> None:
    """Subscriptions newest-wins with their items; catalogue objects as complete snapshots.

    One transaction for all; when the database refuses a value, one per object and the refused ones
    set aside (``isolation``).
    """
    if not fetched:
        return
    if object_type != "subscription":
        upsert_each(store, object_type, ((obj, rows.parents[object_type][0]) for obj, rows in fetched), result)
        return
    merged = Rows()
    for _, rows in fetched:
        merged.extend(rows)
    try:
        store.mirror.apply(merged)
        return
    except UnstorableInput:
        pass
    for obj, rows in fetched:
        try:
            store.mirror.apply(rows)
        except UnstorableInput as exc:
            result.set_aside.append(QuarantineEntry(object_type, str(obj.get("id")), str(exc), obj))


def ensure_mirrored(reader: StripeReader, store: StateStore, object_type: str, object_id: str | None) -> bool:
    """Fetch an object the mirror does not have yet (e.g. the customer of a brand-new failed payment)."""
    if not object_id or store.mirror.versions(object_type, [object_id]):
        return False
    obj, version = reader.retrieve(object_type, object_id)
    if obj is None:
        return False
    store.mirror.apply(to_rows(obj, version))
    return True
