"""Progress of a listing into the mirror: objects listed per type and how much of its range is covered.

A first sync or a long backfill lists for many minutes; these lines (through
``core.progress``) let the person watching the run see it move.
"""

from __future__ import annotations

import bisect
from typing import Callable

from s2s_pipeline.core.progress import ProgressReporter, ProgressSink
from s2s_pipeline.store.schema import MIRROR_TABLES
from s2s_pipeline.stripe.client import Page, Window


class ListingProgress:
    """Objects listed per mirror table, with the share of each type's created range covered so far.

    Stripe lists a window newest first, so the oldest object seen in a window
    tells how far down it the listing has come; a window not started yet
    counts as not covered. An unbounded listing (a full sync) has no share,
    so what is left is "unknown".
    """

    def __init__(self, jobs: list[tuple[str, Window]], sink: ProgressSink | None,
                 clock: Callable[[], float]) -> None:
        self._reporter = ProgressReporter(sink, "listed", clock=clock)
        self._enabled = sink is not None
        self._windows: dict[str, list[Window]] = {}
        for object_type, window in jobs:
            self._windows.setdefault(object_type, []).append(window)
        for windows in self._windows.values():
            windows.sort(key=lambda w: (w.gte is not None, w.gte or 0))
        self._oldest_seen: dict[tuple[str, int], int] = {}

    def page(self, page: Page) -> None:
        """One page of a listing arrived (a line if one is due)."""
        if self._enabled:
            self._reporter.advance(MIRROR_TABLES[page.object_type].name, len(page.objects),
                                   fraction_done=self._covered(page))

    def finish(self) -> None:
        """The listing is over: one final line per type."""
        self._reporter.finish()

    def _covered(self, page: Page) -> float | None:
        windows = self._windows.get(page.object_type) or []
        if not windows or any(w.gte is None or w.lt is None for w in windows):
            return None
        created = [o["created"] for o in page.objects if isinstance(o.get("created"), int)]
        if created:
            oldest = min(created)
            i = bisect.bisect_right([w.gte for w in windows], oldest) - 1
            if i >= 0 and oldest < windows[i].lt:
                key = (page.object_type, i)
                self._oldest_seen[key] = min(self._oldest_seen.get(key, oldest), oldest)
        covered = sum(windows[i].lt - oldest for (t, i), oldest in self._oldest_seen.items()
                      if t == page.object_type)
        return covered / sum(w.lt - w.gte for w in windows)
