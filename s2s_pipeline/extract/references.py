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
from s2s_pipeline.extract.results import SyncResult, rows_for
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
    # Subscriptions first (their coupons), prices before products.
    for object_type in ("subscription", "price", "coupon", "product"):
        missing = store.mirror.missing_references()[object_type]
        fetched = Rows()
        for done, object_id in enumerate(missing):
            reporter.update(MIRROR_TABLES[object_type].name, done, total=len(missing))
            obj, version = reader.retrieve(object_type, object_id)
            if obj is None:
                log.warning("Stripe %s %s is referenced but does not exist", object_type, object_id)
                continue
            fetched.extend(rows_for([obj], version, result.malformed))
            result.references_fetched += 1
        if object_type == "subscription":
            if fetched.parents:
                store.mirror.apply(fetched)
        elif fetched.parents.get(object_type):
            store.mirror.upsert_full(object_type, fetched.parents[object_type])
        if missing:
            reporter.update(MIRROR_TABLES[object_type].name, len(missing), total=len(missing), emit=False)
    reporter.finish()


def ensure_mirrored(reader: StripeReader, store: StateStore, object_type: str, object_id: str | None) -> bool:
    """Fetch an object the mirror does not have yet (e.g. the customer of a brand-new failed payment)."""
    if not object_id or store.mirror.versions(object_type, [object_id]):
        return False
    obj, version = reader.retrieve(object_type, object_id)
    if obj is None:
        return False
    store.mirror.apply(to_rows(obj, version))
    return True
