"""What one sync of the mirror did, and the objects it could not mirror.

Shared by the backfill, the change feed and reference filling: each adds its
counts to one ``SyncResult``, and an object Stripe sent that cannot be parsed
or stored is set aside (with its id and reason, in the quarantine) instead of
stopping the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from s2s_pipeline.store.mirror import ApplyStats
from s2s_pipeline.store.quarantine import QuarantineEntry
from s2s_pipeline.stripe.errors import MalformedStripeObject
from s2s_pipeline.stripe.normalize import Rows, to_rows


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
    #: Objects found bad and not yet written to the quarantine (``isolation.flush_set_aside`` writes them).
    set_aside: list[QuarantineEntry] = field(default_factory=list)
    #: "type id: reason" of every object this sync put in the quarantine.
    quarantined: list[str] = field(default_factory=list)
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
        if self.quarantined:
            out["objects_quarantined"] = len(self.quarantined)
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


def rows_for(objects: Iterable[dict], version_ts: int, malformed: list[str],
             api_version: str | None = None, set_aside: list[QuarantineEntry] | None = None,
             event_ids: tuple[str, ...] = ()) -> Rows:
    """Mirror rows for Stripe objects; an object that cannot be parsed is added to ``malformed`` instead
    (and, when given, to ``set_aside`` for the quarantine, with the ``event_ids`` that carried it).

    ``api_version``: the version event snapshots were rendered at (None: the pinned version).
    """
    rows = Rows()
    for obj in objects:
        try:
            rows.extend(to_rows(obj, version_ts, api_version))
        except MalformedStripeObject as exc:
            malformed.append(str(exc))
            if set_aside is not None:
                set_aside.append(QuarantineEntry(str(obj.get("object") or "object"), str(obj.get("id") or "<no id>"),
                                                 f"malformed: {exc}", obj, event_ids))
    return rows
