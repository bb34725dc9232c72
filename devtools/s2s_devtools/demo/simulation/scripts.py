"""What happens to each customer: the fixed script of scenarios every account contains, and random customers.

The first ``SCRIPTED_COUNT`` customers follow ``scripted`` so every business
scenario the traits and track events handle exists whatever the seed; the
rest are drawn by ``random_script``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .catalogue import family_for
from .periods import DAY, HOUR, add_months


@dataclass
class Script:
    """What happens to one customer (times are chosen by the simulation)."""

    currency: str | None = "usd"
    country: str | None = None  # the customer's country (default: one of the currency's)
    b2b: bool = False
    created: int | None = None
    family: str | None = "starter_month"
    quantity: int = 1
    add_ons: tuple[str, ...] = ()  # further licensed price families on the subscription, one unit each
    tax_rate: str | None = None  # a TAX_RATES key: the subscription's default_tax_rates
    metered: bool = False
    trial: str | None = None  # convert | cancel | pause
    coupon: str | None = None
    item_coupon: bool = False  # the coupon sits on the main item, not the subscription
    change: tuple[str, int] | None = None  # (upgrade|downgrade|seats_up|seats_down, period); -1 = current period
    # (immediate|period_end|cancel_at, period); -1 = current period. cancel_at
    # schedules the end with cancel_at alone (cancel_at_period_end stays false)
    cancel: tuple[str, int] | None = None
    withdrawn_cancel: tuple[str, int] | None = None  # (period_end|cancel_at, period): scheduled, then withdrawn
    fail: dict[int, str] = field(default_factory=dict)  # period -> recover|exhaust|pending; -1 = current period
    fail_rate: float = 0.0  # chance that a renewal payment fails (random customers)
    pause_collection_at: int | None = None
    one_off: tuple[str, ...] = ()  # statuses of invoice-less charges: succeeded|failed
    # invoice-less manual-capture payments: (amount authorized, amount
    # captured); None captured = the authorization expires uncaptured
    manual_captures: tuple[tuple[int, int | None], ...] = ()
    refund: dict[int, str] = field(default_factory=dict)  # n-th succeeded charge -> partial|full
    dispute: int | None = None  # n-th succeeded charge is disputed
    refund_rate: float = 0.0
    dispute_rate: float = 0.0
    id_key: str | None = "segment_user_id"  # segment_user_id | user_id | None


def scripted(now: int) -> list[Script]:
    """Customers that guarantee each scenario exists, whatever the seed."""

    def months(n: int, days: int = 0) -> int:
        return add_months(now - days * DAY, -n)

    def ago(days: float) -> int:
        return int(now - days * DAY)

    S = Script
    return [
        S(currency="usd", b2b=True, created=months(11, 3), family="pro_month", quantity=5, metered=True, coupon="FOREVER20"),
        S(currency="jpy", created=months(6, 2), family="starter_month", refund={1: "partial"}),
        S(currency="jpy", created=months(4, 5), family="pro_month", quantity=2, trial="convert", coupon="JPY500OFF", id_key="user_id"),
        S(currency="eur", created=ago(45), family="pro_month", quantity=3, coupon="LAUNCH50"),
        S(currency="gbp", created=months(8, 4), family="starter_month", coupon="LAUNCH50", id_key=None),
        S(currency="usd", created=ago(5), family="pro_month", trial="convert"),
        S(currency="usd", created=ago(60), family="starter_month", trial="cancel", id_key=None),
        S(currency="usd", created=ago(40), family="pro_month", trial="pause"),
        # the current period's renewal failed two days ago; retries are pending
        S(currency="usd", created=months(3, 2), family="starter_month", fail={-1: "pending"}),
        S(currency="eur", created=months(7, 6), family="pro_month", fail={2: "recover"}),
        S(currency="usd", created=months(6, 9), family="starter_month", fail={2: "exhaust"}, id_key=None),
        S(currency="usd", created=months(5, 8), family="pro_month", quantity=2, cancel=("period_end", -1)),
        S(currency="gbp", created=months(9, 1), family="pro_month", cancel=("immediate", 3)),
        S(currency="usd", created=months(10, 12), family="starter_month", cancel=("period_end", 2)),
        S(currency="usd", b2b=True, created=months(9, 3), family="team_month", quantity=12, metered=True),
        S(currency="usd", b2b=True, created=months(7, 11), family="enterprise_month", quantity=60, coupon="FOREVER20", item_coupon=True),
        S(currency="usd", created=months(6, 4), family="starter_month", change=("upgrade", 2)),
        S(currency="eur", created=months(8, 7), family="pro_month", quantity=4, change=("downgrade", 3)),
        S(currency="usd", b2b=True, created=months(5, 3), family="pro_month", quantity=3, change=("seats_up", 1)),
        S(currency="usd", created=months(5, 10), family="starter_month", dispute=1, refund={3: "full"}),
        S(currency="usd", created=ago(80), family=None, one_off=("succeeded", "failed")),
        S(currency=None, created=ago(100), family=None, id_key=None),
        S(currency="eur", created=months(3, 6), family="pro_month", quantity=2, coupon="FOREVER20", item_coupon=True),
        S(currency="usd", created=ago(70), family="starter_week"),
        S(currency="usd", created=months(7, 2), family="pro_quarter", quantity=2),
        S(currency="usd", created=months(4, 9), family="pro_month", pause_collection_at=2, id_key="user_id"),
        S(currency="usd", created=months(2, 3), family="starter_year", coupon="WELCOME10"),
        S(currency="gbp", b2b=True, created=ago(20), family="pro_year", quantity=3),
        # contract v2 scenarios (issue #10):
        # an EU customer on a VAT-inclusive price (19% inclusive tax rate)
        S(currency="eur", country="DE", created=months(4, 3), family="pro_month_gross", quantity=2, tax_rate="DE_VAT_INCL"),
        # manual capture: 100.00 authorized and 60.00 captured; a 50.00 authorization that expires
        S(currency="usd", created=ago(50), family=None, manual_captures=((10000, 6000), (5000, None))),
        # a EUR subscription on a USD price, billed at the price's EUR currency option
        S(currency="eur", created=months(3, 5), family="lite_month"),
        # a coupon restricted to the Pro product on a subscription that also has Priority Support
        S(currency="usd", b2b=True, created=ago(15), family="pro_month", quantity=2, add_ons=("support_month",), coupon="PRO50"),
        # cancellation at period end scheduled, then withdrawn
        S(currency="usd", created=months(5, 2), family="pro_month", withdrawn_cancel=("period_end", 2)),
        # cancel_at scheduled and withdrawn, then scheduled again and pending at now
        S(currency="usd", created=months(4, 6), family="starter_month", withdrawn_cancel=("cancel_at", 1), cancel=("cancel_at", -1)),
    ]



SCRIPTED_COUNT = len(scripted(10 * 365 * DAY))


def random_script(rng: random.Random, start: int, now: int) -> Script:
    """A customer drawn from the business's usual mix (signing up between ``start`` and ``now``)."""
    r = rng
    s = Script()
    s.created = r.randint(start, now - HOUR)
    s.currency = r.choices(["usd", "eur", "gbp", "jpy"], [62, 15, 11, 12])[0]
    s.b2b = r.random() < 0.3
    s.id_key = r.choices(["segment_user_id", "user_id", None], [55, 10, 35])[0]
    roll = r.random()
    if roll < 0.06:
        s.family, s.currency = None, None
        return s
    if roll < 0.10:
        s.family = None
        s.one_off = ("succeeded",) if r.random() < 0.8 else ("failed", "succeeded")
        s.refund_rate = 0.05
        return s
    fam = r.choices(
        ["starter_month", "starter_year", "starter_week", "pro_month", "pro_year", "pro_quarter", "team_month", "enterprise_month"],
        [30, 8, 2, 30, 8, 4, 8, 3 if s.b2b else 0],
    )[0]
    s.family = family_for(fam, s.currency)
    if s.family.startswith("pro"):
        s.quantity = r.randint(1, 12 if s.b2b else 4)
    elif s.family == "team_month":
        s.quantity = r.randint(3, 40)
    elif s.family == "enterprise_month":
        s.quantity = r.randint(30, 250)
    s.metered = s.family in ("pro_month", "team_month", "enterprise_month") and s.currency in ("usd", "eur") and r.random() < 0.15
    if r.random() < 0.3:
        s.trial = r.choices(["convert", "cancel", "pause"], [70, 20, 10])[0]
    if r.random() < 0.15:
        options = {"usd": ["FOREVER20", "LAUNCH50", "WELCOME10"], "jpy": ["FOREVER20", "LAUNCH50", "JPY500OFF"]}
        s.coupon = r.choice(options.get(s.currency, ["FOREVER20", "LAUNCH50"]))
        s.item_coupon = s.coupon != "WELCOME10" and r.random() < 0.2
    if r.random() < 0.2:
        s.change = (r.choice(["upgrade", "downgrade", "seats_up", "seats_down"]), r.randint(1, 6))
    if r.random() < 0.15:
        s.cancel = (r.choice(["immediate", "period_end"]), r.randint(1, 8))
    if s.family != "starter_week":
        s.fail_rate = 0.04
    if r.random() < 0.01:
        s.pause_collection_at = r.randint(1, 6)
    if r.random() < 0.05:
        s.one_off = ("succeeded",)
    s.refund_rate = 0.03
    s.dispute_rate = 0.002
    return s


@dataclass
class CustomerRun:
    """One customer while the simulation runs: who they are, their script, card and subscription."""

    cust: dict
    script: Script
    pm: str | None
    card: tuple
    succeeded: int
    sub: Any = None
    cycle: Any = None
    busy_until: int = 0  # time of the latest event about the subscription
