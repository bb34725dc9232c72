"""Live progress of a long step, as short lines in the run log.

A first sync of a large Stripe account or a big Segment delivery takes many
minutes; a person watching the run in the UI should see it move and get an
idea of what is left. A ``ProgressReporter`` turns counts into lines such as

    stripe_charges: 12,400 listed, 190/s, about 3,100 left (~16s)
    identify: 4,000 of 10,000 acknowledged

at most one line per kind of object every ``every_seconds`` (wall clock),
plus one final line per kind. Lines carry counts and object kinds only: the
callers never pass emails, names or ids, so none can reach the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

#: Where progress lines go (a Dagster run's ``context.log.info``); None reports nothing.
ProgressSink = Callable[[str], None]

#: At most one line per kind this often: enough to see a step move, few enough to read.
DEFAULT_EVERY_SECONDS = 10.0


@dataclass
class _Tally:
    """The latest count of one kind, and when and at what count it was first seen (for its rate)."""

    first_seen: float
    first_count: int
    last_line: float
    last_seen: float
    count: int = 0
    total: int | None = None
    fraction_done: float | None = None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _rate(per_second: float) -> str:
    return f"{per_second:,.1f}/s" if per_second < 10 else f"{per_second:,.0f}/s"


class ProgressReporter:
    """Counts per kind of object (a Stripe object type, a Segment call type), reported throttled.

    ``verb`` says what the count means ("listed", "acknowledged"). A count
    with a ``total`` reads "4,000 of 10,000 acknowledged"; one without reads
    as a rate, with an estimate of what is left when the caller knows which
    share of the work is done (``fraction_done``), and "left: unknown" when
    it does not. Used from one thread.
    """

    def __init__(self, sink: ProgressSink | None, verb: str, *, every_seconds: float = DEFAULT_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._verb = verb
        self._every = every_seconds
        self._clock = clock
        self._tallies: dict[str, _Tally] = {}

    def advance(self, kind: str, n: int, *, fraction_done: float | None = None) -> None:
        """``n`` more of ``kind`` done (e.g. one page of objects listed)."""
        if self._sink is None:
            return
        tally = self._tallies.get(kind)
        self.update(kind, (tally.count if tally else 0) + n, fraction_done=fraction_done)

    def update(self, kind: str, count: int, *, total: int | None = None,
               fraction_done: float | None = None, emit: bool = True) -> None:
        """``count`` of ``kind`` done so far (of ``total``, when known); a line if one is due.

        ``emit=False`` records the count for the final line without a line now.
        """
        if self._sink is None:
            return
        now = self._clock()
        tally = self._tallies.get(kind)
        if tally is None:
            # The rate is measured from the first sight of a kind, so a kind
            # that waited for a free worker is not reported as slow.
            tally = self._tallies[kind] = _Tally(first_seen=now, first_count=count, last_line=now, last_seen=now)
        tally.count, tally.total, tally.fraction_done, tally.last_seen = count, total, fraction_done, now
        if emit and now - tally.last_line >= self._every:
            tally.last_line = now
            self._sink(self._line(kind, tally, now))

    def finish(self) -> None:
        """One final line per kind seen, whether or not a line was due."""
        if self._sink is None:
            return
        for kind, tally in self._tallies.items():
            self._sink(self._final_line(kind, tally))

    def _line(self, kind: str, tally: _Tally, now: float) -> str:
        if tally.total is not None:
            return f"{kind}: {tally.count:,} of {tally.total:,} {self._verb}"
        elapsed = now - tally.first_seen
        per_second = (tally.count - tally.first_count) / elapsed if elapsed > 0 else 0.0
        line = f"{kind}: {tally.count:,} {self._verb}, {_rate(per_second)}"
        fraction = tally.fraction_done
        if fraction is None or fraction <= 0:
            return f"{line}, left: unknown"
        # Assumes the rest goes as the done share did (objects evenly spread over it).
        left = round(tally.count * (1 - min(fraction, 1.0)) / min(fraction, 1.0))
        if per_second <= 0:
            return f"{line}, about {left:,} left"
        return f"{line}, about {left:,} left (~{_duration(left / per_second)})"

    def _final_line(self, kind: str, tally: _Tally) -> str:
        if tally.total is not None:
            return f"{kind}: {tally.count:,} of {tally.total:,} {self._verb}, done"
        # Timed to the kind's last count, not to the end of the whole step.
        return f"{kind}: {tally.count:,} {self._verb} in {_duration(tally.last_seen - tally.first_seen)}, done"
