"""Live progress of listings against the Stripe stand-in: counts per type, rate, what is left."""

import re

from s2s_pipeline.core.progress import DEFAULT_EVERY_SECONDS
from s2s_pipeline.extract.backfill import backfill
from s2s_pipeline.extract.change_feed import sync_changes

DAY = 86400
START = 1_760_000_000


class TickingClock:
    """A clock that moves ``step`` seconds each time it is read (no sleeping)."""

    def __init__(self, now: float, step: float) -> None:
        self.now, self.step = now, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def charge(i: int, created: int) -> dict:
    return {"id": f"ch_{i:05d}", "object": "charge", "amount": 1000, "amount_captured": 1000,
            "amount_refunded": 0, "captured": True, "paid": True, "refunded": False, "status": "succeeded",
            "currency": "usd", "customer": "cus_1", "created": created, "livemode": False}


def customer(i: int) -> dict:
    return {"id": f"cus_{i:05d}", "object": "customer", "email": f"person{i}@example.com", "name": "Zelda Quux",
            "currency": "usd", "created": START + i, "metadata": {}, "livemode": False, "delinquent": False}


def test_given_a_ten_day_backfill_when_listed_then_progress_lines_count_rate_and_estimate_what_is_left(
        standin, make_reader, state_store):
    # 1,000 charges spread evenly over 10 days: 10 pages of 100, listed newest first per window.
    standin.load(charge(i, START + i * 864) for i in range(1000))
    lines: list[str] = []
    # Each page reads the clock once: a line is due about every third page.
    clock = TickingClock(START, step=DEFAULT_EVERY_SECONDS / 2.5)
    result = backfill(make_reader(concurrency=1), state_store, ["charge"], START, START + 10 * DAY,
                      clock=clock, progress=lines.append)

    assert result.listed["charge"] == 1000
    *live, final = lines
    assert final.startswith("stripe_charges: 1,000 listed in ") and final.endswith(", done")
    assert len(live) >= 2
    pattern = re.compile(r"stripe_charges: ([\d,]+) listed, ([\d,.]+)/s, about ([\d,]+) left \(~\d+s\)")
    counts = []
    for line in live:
        match = pattern.fullmatch(line)
        assert match, line
        listed, left = int(match[1].replace(",", "")), int(match[3].replace(",", ""))
        # Objects are evenly spread, so the share of the window covered predicts what is left.
        assert abs(left - (1000 - listed)) <= 0.05 * 1000, line
        counts.append(listed)
    assert counts == sorted(counts) and counts[0] < 1000


def test_given_a_first_sync_when_listed_then_lines_carry_counts_and_types_only(standin, make_reader, state_store):
    standin.load(customer(i) for i in range(450))
    lines: list[str] = []
    sync_changes(make_reader(concurrency=4), state_store, clock=TickingClock(START, step=4), progress=lines.append)

    customer_lines = [line for line in lines if line.startswith("stripe_customers: ")]
    assert customer_lines[-1].startswith("stripe_customers: 450 listed in ")
    # A listing of everything has no known end: what is left is unknown.
    assert any(re.fullmatch(r"stripe_customers: [\d,]+ listed, [\d,.]+/s, left: unknown", line)
               for line in customer_lines), customer_lines
    text = "\n".join(lines)
    assert "@" not in text and "Zelda" not in text and "cus_" not in text


def test_without_progress_a_backfill_reports_nothing_and_lists_everything(standin, make_reader, state_store):
    standin.load(charge(i, START + i * 864) for i in range(250))
    result = backfill(make_reader(), state_store, ["charge"], START, START + 10 * DAY)
    assert result.listed["charge"] == 250


def test_given_references_missing_from_the_window_when_looked_up_then_progress_counts_them(
        standin, make_reader, state_store):
    product = {"id": "prod_1", "object": "product", "name": "Pro", "active": True, "created": 5}
    price = {"id": "price_m", "object": "price", "currency": "usd", "unit_amount": 10000, "billing_scheme": "per_unit",
             "recurring": {"interval": "month", "interval_count": 1}, "product": "prod_1", "created": 5}
    subscription = {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active", "created": 100,
                    "currency": "usd", "discounts": [],
                    "items": {"data": [{"id": "si_1", "quantity": 1, "current_period_end": 2_000_000_000,
                                        "discounts": [], "price": dict(price)}]}}
    standin.load([product, price, subscription])
    lines: list[str] = []
    # The product was created before the window: only a lookup by id finds it.
    result = backfill(make_reader(), state_store, ["subscription"], 50, 1000, clock=TickingClock(START, 1),
                      progress=lines.append)
    assert result.references_fetched == 1
    assert "stripe_products: 1 of 1 looked up by id, done" in lines
