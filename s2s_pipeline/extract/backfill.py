"""Listing Stripe objects into the mirror: a backfill over created windows, or everything at once.

Plain Python (no Dagster): the assets in ``s2s_pipeline.defs`` call these.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from s2s_pipeline.core.bulk_work import bulk_work
from s2s_pipeline.core.progress import ProgressSink
from s2s_pipeline.extract.listing_progress import ListingProgress
from s2s_pipeline.extract.references import resolve_references
from s2s_pipeline.extract.isolation import apply_objects, flush_set_aside
from s2s_pipeline.extract.results import SyncResult
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import LIST_SPECS, StripeReader, Window, split_window

#: Every object type the mirror holds, in listing order.
ALL_OBJECT_TYPES: tuple[str, ...] = tuple(LIST_SPECS)


def list_into_mirror(reader: StripeReader, store: StateStore, jobs: list[tuple[str, Window]],
                     result: SyncResult, *, progress: ProgressSink | None = None,
                     clock: Callable[[], float] = time.monotonic) -> dict[str, set[str]]:
    """List every (type, window) job into the mirror; returns ids seen per type.

    ``progress`` receives throttled lines: objects listed per type, the rate,
    and an estimate of what is left.
    """
    listing = ListingProgress(jobs, progress, clock)
    seen: dict[str, set[str]] = {}
    for page in reader.fetch_many(jobs):
        result.listed[page.object_type] = result.listed.get(page.object_type, 0) + len(page.objects)
        seen.setdefault(page.object_type, set()).update(o.get("id") for o in page.objects)
        # One transaction per page: a crash loses at most the page in flight,
        # and re-running the window is safe (newest-wins upserts). An object the
        # database refuses is set aside, the rest of the page stored.
        result.stats.merge(apply_objects(store, page.objects, page.fetched_at, result))
        listing.page(page)
    listing.finish()
    return seen


@bulk_work
def backfill(reader: StripeReader, store: StateStore, object_types: Iterable[str], gte: int, lt: int,
             *, clock: Callable[[], float] = time.time, progress: ProgressSink | None = None) -> SyncResult:
    """Mirror every object of the given types created in [gte, lt).

    The range is split into windows listed concurrently. Re-running a range is
    safe: upserts are newest-wins, and customers mirrored for the range that
    Stripe no longer lists are flagged deleted. ``progress`` (e.g. the run
    log) receives throttled lines with counts per type, timed on ``clock``.
    """
    started = clock()
    result = SyncResult(mode="backfill")
    object_types = list(object_types)
    days = max(1, (lt - gte + 86399) // 86400)
    pieces = min(days, 2 * reader.settings.concurrency)
    jobs = [(t, w) for t in object_types for w in split_window(gte, lt, pieces)]
    before = {t: store.mirror.live_ids(t, gte, lt) for t in object_types if t == "customer"}
    list_started = int(started)
    seen = list_into_mirror(reader, store, jobs, result, progress=progress, clock=clock)
    for object_type, known in before.items():
        gone = known - seen.get(object_type, set())
        result.deleted += store.mirror.mark_deleted(object_type, gone, list_started)
    resolve_references(reader, store, result, progress=progress, clock=clock)
    flush_set_aside(store, result, list_started)
    result.requests, result.rate_limited = reader.request_count, reader.rate_limited_count
    result.seconds = clock() - started
    return result


def full_sync(reader: StripeReader, store: StateStore, result: SyncResult, now: int,
              object_types: Iterable[str] = ALL_OBJECT_TYPES, *, progress: ProgressSink | None = None,
              clock: Callable[[], float] = time.monotonic) -> None:
    """List every object Stripe has (all types concurrently) and flag vanished customers."""
    object_types = list(object_types)
    jobs = [(t, Window(None, None)) for t in object_types]
    before = store.mirror.live_ids("customer", None, None)
    seen = list_into_mirror(reader, store, jobs, result, progress=progress, clock=clock)
    if "customer" in object_types:
        result.deleted += store.mirror.mark_deleted("customer", before - seen.get("customer", set()), now)
    resolve_references(reader, store, result, progress=progress, clock=clock)
    flush_set_aside(store, result, now)
