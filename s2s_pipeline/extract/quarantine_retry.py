"""Retrying the quarantine: each held object fetched again from Stripe by id, released when it stores.

Run when the cause is fixed (the object corrected in Stripe, a column widened
by a release): ``stripe_change_feed`` with run config ``retry_quarantined:
true``. An object that stores is mirrored and taken out of the quarantine,
and the change-feed events that carried it are fetched again so their track
calls are made like any other event's. An object Stripe no longer has is
released too (there is nothing left to mirror). One that still fails stays,
with the new reason and one more attempt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from s2s_pipeline.extract.change_feed import EVENTS_CURSOR, is_history
from s2s_pipeline.extract.results import rows_for
from s2s_pipeline.store.refusals import UnstorableInput
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import LIST_SPECS, StripeReader
from s2s_pipeline.stripe.normalize import Rows, scrub

log = logging.getLogger(__name__)


@dataclass
class RetryOutcome:
    """What a retry did, per object key ``(type, id)``."""

    released: list[tuple[str, str]] = field(default_factory=list)
    gone: list[tuple[str, str]] = field(default_factory=list)
    still_quarantined: list[tuple[str, str]] = field(default_factory=list)

    def metadata(self) -> dict:
        return {"quarantine_released": len(self.released), "quarantine_gone_from_stripe": len(self.gone),
                "quarantine_still_held": len(self.still_quarantined)}


def retry_quarantined(reader: StripeReader, store: StateStore, *,
                      clock: Callable[[], float] = time.time) -> RetryOutcome:
    """Fetch every quarantined object again and store it where it now can be (see the module doc)."""
    now = int(clock())
    outcome = RetryOutcome()
    cursor = store.cursors.get(EVENTS_CURSOR) or {}
    for held in store.quarantine.entries():
        key = held.key
        if held.object_type not in LIST_SPECS:
            # Not a mirrored type (an event whose own payload was refused): its events are all there is.
            obj, version = None, now
        else:
            obj, version = reader.retrieve(held.object_type, held.object_id)
        events = []
        for event_id in held.event_ids:
            event = reader.get(f"/v1/events/{event_id}")
            status = "skipped" if event is None else "historical" if is_history(event, cursor) else "pending"
            events.append((event_id, None if event is None else scrub(event), status))
        if obj is None and held.object_type in LIST_SPECS:
            store.release_quarantined(*key, Rows(), events)
            outcome.gone.append(key)
            log.warning("quarantined Stripe %s %s no longer exists at Stripe; released", *key)
            continue
        malformed: list[str] = []
        rows = rows_for([obj], version, malformed) if obj is not None else Rows()
        if malformed:
            store.quarantine.record_attempt(*key, f"malformed: {malformed[0]}", now)
            outcome.still_quarantined.append(key)
            continue
        try:
            store.release_quarantined(*key, rows, events)
        except UnstorableInput as exc:
            store.quarantine.record_attempt(*key, str(exc), now)
            outcome.still_quarantined.append(key)
            log.warning("quarantined Stripe %s %s still cannot be stored: %s", *key, exc)
            continue
        outcome.released.append(key)
        log.info("quarantined Stripe %s %s stored on retry; released", *key)
    return outcome
