"""Calendar arithmetic of billing: months that keep their day, and billing periods from an anchor."""

from __future__ import annotations

import calendar
import datetime as dt

DAY = 86400
HOUR = 3600

UTC = dt.timezone.utc


def add_months(ts: int, n: int) -> int:
    """``ts`` moved by ``n`` calendar months, clamping the day to the target month (Jan 31 + 1 = Feb 28/29)."""
    d = dt.datetime.fromtimestamp(ts, UTC)
    y, m = divmod(d.month - 1 + n, 12)
    y += d.year
    m += 1
    day = min(d.day, calendar.monthrange(y, m)[1])
    return int(d.replace(year=y, month=m, day=day).timestamp())


class Cycle:
    """Billing period boundaries from an anchor, like Stripe's billing_cycle_anchor.

    Boundaries are computed from the anchor (not chained), so a 31st anchor
    bills on the last day of short months and returns to the 31st.
    """

    def __init__(self, anchor: int, interval: str, count: int):
        self.anchor = anchor
        self.interval = interval
        self.count = count

    def boundary(self, k: int) -> int:
        """The end of the ``k``-th period (``boundary(0)`` is the anchor)."""
        if self.interval == "day":
            return self.anchor + k * self.count * DAY
        if self.interval == "week":
            return self.anchor + k * self.count * 7 * DAY
        return add_months(self.anchor, k * self.count * (12 if self.interval == "year" else 1))
