"""``ChangedObjects.customers_crossing_time``: the customers whose clock-dependent traits may have moved
between two runs without any Stripe change, on both backends.

``payment_frequency_days`` looks at the payments of the last 365 days, so a charge created in
``[since - 365 d, until - 365 d]`` left the window between the runs; one created in ``[since, until]``
entered it (and a change would have been recorded for it anyway). A discount starting or ending in
``[since, until]`` moves MRR under ``all_in_effect``.
"""

from __future__ import annotations

import pytest

from s2s_pipeline.store import schema
from s2s_pipeline.store.state_store import StateStore

DAY = 86_400
YEAR = 365 * DAY
SINCE = 1_790_000_000  # the last run
UNTIL = SINCE + DAY  # this run


@pytest.fixture
def store(state_url):
    store = StateStore.from_url(state_url)
    yield store
    store.dispose()


def _charge(charge_id: str, customer: str | None, created: int) -> dict:
    return {"id": charge_id, "customer": customer, "created": created, "version_ts": created, "deleted": False}


def test_customers_whose_payments_left_or_entered_the_window_or_whose_discounts_started_or_ended(store):
    with store.engine.begin() as conn:
        conn.execute(schema.charges.insert(), [
            _charge("ch_left", "cus_left", SINCE - YEAR + 3600),  # left the 365-day window during the day
            _charge("ch_left_edge", "cus_left_edge", UNTIL - YEAR),  # on the bound: inclusive
            _charge("ch_new", "cus_new", SINCE + 60),  # entered it (made during the day)
            _charge("ch_left_before", "cus_old", SINCE - YEAR - 1),  # had left before the last run
            _charge("ch_still_in", "cus_in", SINCE - 10 * DAY),  # still inside, nothing moved
            _charge("ch_guest", None, SINCE - YEAR + 60),  # no customer: nobody's trait
        ])
        conn.execute(schema.discounts.insert(), [
            {"id": "di_start", "customer": "cus_disc_start", "start": SINCE + 100, "end": None},
            {"id": "di_end", "customer": "cus_disc_end", "start": SINCE - YEAR, "end": UNTIL - 1},
            {"id": "di_later", "customer": "cus_disc_later", "start": SINCE - DAY, "end": UNTIL + DAY},
        ])
    crossing = store.changed_objects.customers_crossing_time(SINCE, UNTIL)
    assert crossing == {"cus_left", "cus_left_edge", "cus_new", "cus_disc_start", "cus_disc_end"}
    assert store.changed_objects.customers_crossing_time(UNTIL, UNTIL) == set()  # no time passed
