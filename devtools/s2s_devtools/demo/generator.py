"""A realistic demo Stripe account: a year of a small SaaS business.

``generate_account`` simulates customers signing up over ``months`` months and
everything Stripe Billing then records about them, as API ``2026-10-28.endive``
objects plus the events Stripe would have sent along the way:

- a catalog of products and prices: monthly, annual, quarterly and weekly
  per-seat prices in USD, EUR, GBP and JPY (JPY has no minor unit: 3000 is
  ¥3000), a graduated and a volume tiered price, and metered usage prices
  (billed in arrears, excluded from MRR);
- coupons (forever, repeating with ``duration_in_months``, once) applied as
  subscription-level or item-level discounts whose ``source.coupon`` is the
  full coupon;
- trials that convert, lapse into ``canceled`` or ``paused``, or are running;
- upgrades, downgrades and seat changes (``customer.subscription.updated``
  with ``previous_attributes``), immediate cancellations and
  ``cancel_at_period_end`` ones, paused collection;
- a monthly (or annual, …) invoice, PaymentIntent, InvoicePayment and charge
  per paid period; failed payments with Smart-Retries-like attempts that
  recover, stay ``past_due`` or end the subscription;
- partial and full refunds, disputes, one-off (invoice-less) charges that
  succeed or fail, B2B customers with ``company_id``/``company_name``
  metadata, customers identified by ``segment_user_id`` or ``user_id``.

The first customers follow a fixed script so every scenario exists in any
account with at least ``len(SCRIPTED)`` customers; the rest are drawn from
the seeded RNG. The output is deterministic for a given ``seed`` and ``now``.

Events carry the object as it was at that moment. Nested parts that never
change after they are built (price and plan objects embedded in subscription
items) are shared between snapshots to keep large accounts small: treat the
account as read-only and copy what you want to change.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
import string
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from s2s_devtools.fakes.stripe import API_VERSION, random_alnum, sortable_event_id

DAY = 86400
HOUR = 3600
ZERO_DECIMAL = frozenset({"jpy"})

_UTC = dt.timezone.utc


@dataclass
class DemoAccount:
    """A generated Stripe account: current objects and the events that built it.

    ``objects`` hold every object in its current state (subscriptions with
    items, prices with tiers, invoices with payments: fully expanded, as the
    stand-in stores them). ``events`` are in time order, oldest first.
    """

    objects: list[dict]
    events: list[dict]
    now: int = 0
    seed: int = 0

    def of_type(self, object_type: str) -> list[dict]:
        """Objects whose ``object`` is ``object_type`` (e.g. ``"charge"``)."""
        return [o for o in self.objects if o.get("object") == object_type]

    def by_id(self) -> dict[str, dict]:
        return {o["id"]: o for o in self.objects}


# ------------------------------------------------------------------ catalog

# product key -> (name, description)
PRODUCTS: dict[str, tuple[str, str]] = {
    "starter": ("Starter", "Everything a small team needs to get going"),
    "pro": ("Pro", "Advanced workflows, billed per seat"),
    "team": ("Team", "Per-seat pricing that gets cheaper as the team grows"),
    "enterprise": ("Enterprise", "Volume pricing for large organisations"),
    "api": ("API Calls", "Metered API usage, billed monthly in arrears"),
    "support": ("Priority Support", "24/7 support add-on"),
}

# price family -> product, nickname, interval, interval_count, amounts per
# currency (minor units; JPY in yen). Families without a currency fall back
# to one that exists for the customer (see _family_for).
FAMILIES: dict[str, dict[str, Any]] = {
    "starter_month": dict(
        product="starter",
        nickname="Starter Monthly",
        interval="month",
        count=1,
        amounts={"usd": 1900, "eur": 1900, "gbp": 1500, "jpy": 3000},
    ),
    "starter_year": dict(
        product="starter",
        nickname="Starter Annual",
        interval="year",
        count=1,
        amounts={"usd": 19000, "eur": 19000, "gbp": 15000, "jpy": 30000},
    ),
    "starter_week": dict(product="starter", nickname="Starter Weekly", interval="week", count=1, amounts={"usd": 600}),
    "pro_month": dict(
        product="pro",
        nickname="Pro Monthly",
        interval="month",
        count=1,
        amounts={"usd": 4900, "eur": 4500, "gbp": 3900, "jpy": 6500},
    ),
    "pro_year": dict(
        product="pro",
        nickname="Pro Annual",
        interval="year",
        count=1,
        amounts={"usd": 49000, "eur": 45000, "gbp": 39000, "jpy": 65000},
    ),
    # no nickname: the plan trait falls back to the product name
    "pro_quarter": dict(product="pro", nickname=None, interval="month", count=3, amounts={"usd": 13500}),
    "team_month": dict(
        product="team",
        nickname="Team Monthly",
        interval="month",
        count=1,
        tiers_mode="graduated",
        tiers={
            "usd": [
                {"up_to": 5, "unit_amount": 2500, "flat_amount": 1000},
                {"up_to": 20, "unit_amount": 2000, "flat_amount": None},
                {"up_to": None, "unit_amount": 1500, "flat_amount": None},
            ]
        },
    ),
    "enterprise_month": dict(
        product="enterprise",
        nickname="Enterprise Monthly",
        interval="month",
        count=1,
        tiers_mode="volume",
        tiers={
            "usd": [
                {"up_to": 50, "unit_amount": 3000, "flat_amount": None},
                {"up_to": 200, "unit_amount": 2500, "flat_amount": None},
                {"up_to": None, "unit_amount": 2000, "flat_amount": 5000},
            ]
        },
    ),
    # metered: USD priced per 1,000 calls (transform_quantity), EUR per call
    # with a fractional minor-unit price (unit_amount_decimal)
    "api_metered": dict(
        product="api",
        nickname="API Calls",
        interval="month",
        count=1,
        usage_type="metered",
        amounts={"usd": 200, "eur": "0.18"},
        transform={"usd": {"divide_by": 1000, "round": "up"}},
    ),
    "support_month": dict(
        product="support",
        nickname="Priority Support Monthly",
        interval="month",
        count=1,
        amounts={"usd": 9900},
        recent=True,
    ),
}

# coupon id -> fields
COUPONS: dict[str, dict[str, Any]] = {
    "FOREVER20": dict(name="20% off forever", percent_off=20.0, duration="forever"),
    "LAUNCH50": dict(name="Launch: 50% off for 3 months", percent_off=50.0, duration="repeating", duration_in_months=3),
    "WELCOME10": dict(name="$10 off your first invoice", amount_off=1000, currency="usd", duration="once"),
    "JPY500OFF": dict(name="¥500 off every month", amount_off=500, currency="jpy", duration="forever"),
}

_UPGRADES = {"starter_month": "pro_month", "starter_year": "pro_year"}
_DOWNGRADES = {v: k for k, v in _UPGRADES.items()}

_COUNTRIES = {
    "usd": [("US", "San Francisco", "CA", "94107"), ("US", "New York", "NY", "10001"), ("US", "Austin", "TX", "73301")],
    "eur": [("DE", "Berlin", None, "10115"), ("FR", "Paris", None, "75001"), ("NL", "Amsterdam", None, "1012")],
    "gbp": [("GB", "London", None, "EC1A 1BB"), ("GB", "Manchester", None, "M1 1AE")],
    "jpy": [("JP", "Tokyo", None, "100-0001"), ("JP", "Osaka", None, "530-0001")],
}
_LOCALES = {"usd": "en-US", "eur": "de-DE", "gbp": "en-GB", "jpy": "ja-JP"}
_FIRST = [
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Tim",
    "Radia", "Guido", "Hedy", "Edsger", "Katherine", "Donald", "Sophie", "Lukas", "Amelie", "Oliver",
]  # fmt: skip
_LAST = [
    "Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen",
    "Berners-Lee", "Perlman", "van Rossum", "Lamarr", "Dijkstra", "Johnson", "Knuth", "Wilson", "Muller",
]  # fmt: skip
_JP_FIRST = ["Haruto", "Yui", "Sota", "Hina", "Ren", "Aoi", "Yuto", "Sakura"]
_JP_LAST = ["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura"]
_COMPANIES = [
    "Acme Corp", "Globex", "Initech", "Umbrella Labs", "Hooli", "Pied Piper", "Vandelay Industries",
    "Soylent", "Stark Industries", "Wayne Enterprises", "Cyberdyne", "Tyrell", "Wonka Industries",
    "Oscorp", "Aperture Science", "Black Mesa", "Massive Dynamic", "Monarch Solutions",
]  # fmt: skip
_BRANDS = {
    "usd": [("visa", 55), ("mastercard", 28), ("amex", 17)],
    "eur": [("visa", 55), ("mastercard", 45)],
    "gbp": [("visa", 60), ("mastercard", 35), ("amex", 5)],
    "jpy": [("visa", 40), ("jcb", 40), ("mastercard", 20)],
}
_DECLINES = [
    ("card_declined", "Your card was declined.", "generic_decline"),
    ("card_declined", "Your card has insufficient funds.", "insufficient_funds"),
    ("expired_card", "Your card has expired.", "expired_card"),
    ("incorrect_cvc", "Your card's security code is incorrect.", "incorrect_cvc"),
]
# Smart Retries-like schedule: days after the previous failed attempt.
RETRY_DAYS = (3, 5, 7)


# ------------------------------------------------------------------ scripts


@dataclass
class _Script:
    """What happens to one customer (times are chosen by the simulation)."""

    currency: str | None = "usd"
    b2b: bool = False
    created: int | None = None
    family: str | None = "starter_month"
    quantity: int = 1
    metered: bool = False
    trial: str | None = None  # convert | cancel | pause
    coupon: str | None = None
    item_coupon: bool = False  # the coupon sits on the main item, not the subscription
    change: tuple[str, int] | None = None  # (upgrade|downgrade|seats_up|seats_down, period); -1 = current period
    cancel: tuple[str, int] | None = None  # (immediate|period_end, period); -1 = current period
    fail: dict[int, str] = field(default_factory=dict)  # period -> recover|exhaust|pending; -1 = current period
    fail_rate: float = 0.0  # chance that a renewal payment fails (random customers)
    pause_collection_at: int | None = None
    one_off: tuple[str, ...] = ()  # statuses of invoice-less charges: succeeded|failed
    refund: dict[int, str] = field(default_factory=dict)  # n-th succeeded charge -> partial|full
    dispute: int | None = None  # n-th succeeded charge is disputed
    refund_rate: float = 0.0
    dispute_rate: float = 0.0
    id_key: str | None = "segment_user_id"  # segment_user_id | user_id | None


def _scripted(now: int) -> list[_Script]:
    """Customers that guarantee each scenario exists, whatever the seed."""

    def months(n: int, days: int = 0) -> int:
        return _add_months(now - days * DAY, -n)

    def ago(days: float) -> int:
        return int(now - days * DAY)

    S = _Script
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
    ]




# ------------------------------------------------------------------ time helpers


def _add_months(ts: int, n: int) -> int:
    d = dt.datetime.fromtimestamp(ts, _UTC)
    y, m = divmod(d.month - 1 + n, 12)
    y += d.year
    m += 1
    day = min(d.day, calendar.monthrange(y, m)[1])
    return int(d.replace(year=y, month=m, day=day).timestamp())


class _Cycle:
    """Billing period boundaries from an anchor, like Stripe's billing_cycle_anchor.

    Boundaries are computed from the anchor (not chained), so a 31st anchor
    bills on the last day of short months and returns to the 31st.
    """

    def __init__(self, anchor: int, interval: str, count: int):
        self.anchor = anchor
        self.interval = interval
        self.count = count
        self._d = dt.datetime.fromtimestamp(anchor, _UTC)

    def boundary(self, k: int) -> int:
        if self.interval == "day":
            return self.anchor + k * self.count * DAY
        if self.interval == "week":
            return self.anchor + k * self.count * 7 * DAY
        months = k * self.count * (12 if self.interval == "year" else 1)
        d = self._d
        y, m = divmod(d.month - 1 + months, 12)
        y += d.year
        m += 1
        day = min(d.day, calendar.monthrange(y, m)[1])
        return int(d.replace(year=y, month=m, day=day).timestamp())


def _percent(amount: int, pct: float) -> int:
    return int((Decimal(amount) * Decimal(str(pct)) / 100).quantize(Decimal(1), ROUND_HALF_UP))


def _copy(o: Any, shared: set[int]) -> Any:
    """Deep copy of JSON-like data, sharing the dicts listed in ``shared``."""
    t = type(o)
    if t is dict:
        if id(o) in shared:
            return o
        return {k: _copy(v, shared) for k, v in o.items()}
    if t is list:
        return [_copy(v, shared) for v in o]
    return o


# ------------------------------------------------------------------ the simulation


class _Sim:
    def __init__(self, *, customers: int, months: int, seed: int, now: int, events_since: int | None):
        self.rng = random.Random(seed)
        self.n_customers = customers
        self.months = months
        self.now = now
        self.start = _add_months(now, -months)
        self.events_since = events_since
        self.events: list[dict] = []
        self.evt_seq = 0
        self.shared: set[int] = set()
        self.out: dict[str, list[dict]] = {
            k: []
            for k in (
                "product",
                "price",
                "coupon",
                "customer",
                "subscription",
                "invoice",
                "invoice_payment",
                "payment_intent",
                "charge",
                "refund",
                "dispute",
            )
        }
        self.prices: dict[tuple[str, str], dict] = {}  # (family, currency) -> price object
        self.embedded: dict[str, tuple[dict, dict]] = {}  # price id -> (price, plan) shared in items
        self.product_names: dict[str, str] = {}
        self.coupons: dict[str, dict] = {}
        self.coupon_uses: dict[str, int] = {}
        self.companies: list[tuple[str, str]] = []

    # ---------------------------------------------------------- ids, events

    def rid(self, prefix: str, n: int = 24, lead: str = "1") -> str:
        return f"{prefix}_{lead}{random_alnum(self.rng, n - len(lead))}"

    def short_id(self, prefix: str) -> str:
        return f"{prefix}_{random_alnum(self.rng, 14)}"

    def request(self) -> dict:
        """The API request that caused an event (null for Stripe's own automation)."""
        key = "%032x" % self.rng.getrandbits(128)
        return {
            "id": "req_" + random_alnum(self.rng, 14),
            "idempotency_key": f"{key[:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:]}",
        }

    def emit(self, type_: str, obj: dict, created: int, previous: dict | None = None, api: bool = False) -> None:
        self.evt_seq += 1
        event_id = sortable_event_id(created, self.evt_seq, self.rng)
        request = self.request() if api else {"id": None, "idempotency_key": None}
        if self.events_since is not None and created < self.events_since:
            return
        data: dict[str, Any] = {"object": _copy(obj, self.shared)}
        if previous is not None:
            data["previous_attributes"] = _copy(previous, self.shared)
        self.events.append(
            {
                "id": event_id,
                "object": "event",
                "api_version": API_VERSION,
                "created": created,
                "data": data,
                "livemode": False,
                "pending_webhooks": 0,
                "request": request,
                "type": type_,
            }
        )

    def snap(self, obj: Any) -> Any:
        return _copy(obj, self.shared)

    # ---------------------------------------------------------- catalog

    def build_catalog(self) -> None:
        t0 = self.start - 14 * DAY
        products: dict[str, dict] = {}
        for i, (key, (name, desc)) in enumerate(PRODUCTS.items()):
            recent = any(f.get("recent") and f["product"] == key for f in FAMILIES.values())
            created = self.now - 20 * DAY if recent else t0 + i * 60
            prod = {
                "id": self.short_id("prod"),
                "object": "product",
                "active": True,
                "created": created,
                "default_price": None,
                "description": desc,
                "images": [],
                "livemode": False,
                "marketing_features": [],
                "metadata": {"catalog_key": key},
                "name": name,
                "package_dimensions": None,
                "shippable": None,
                "statement_descriptor": None,
                "tax_code": None,
                "type": "service",
                "unit_label": "seat" if key in ("pro", "team", "enterprise") else None,
                "updated": created,
                "url": None,
            }
            products[key] = prod
            self.product_names[prod["id"]] = name
            self.out["product"].append(prod)

        for fam, spec in FAMILIES.items():
            currencies = list(spec.get("amounts") or spec.get("tiers"))
            prod = products[spec["product"]]
            for cur in currencies:
                created = prod["created"] + 30 + len(self.prices)
                price = self._price(fam, spec, cur, prod["id"], created)
                self.prices[(fam, cur)] = price
                self.out["price"].append(price)
                if prod["default_price"] is None:
                    prod["default_price"] = price["id"]
                self.emit("price.created", price, created, api=True)
                embedded = self.snap(price)
                plan = self._plan(price)
                self.embedded[price["id"]] = (embedded, plan)
                self.shared.add(id(embedded))
                self.shared.add(id(plan))
        for prod in products.values():
            # created with default_price_data: the product and its default
            # price exist together
            self.emit("product.created", prod, prod["created"], api=True)

        for i, (cid, spec) in enumerate(COUPONS.items()):
            created = t0 + 3600 + i * 60
            coupon = {
                "id": cid,
                "object": "coupon",
                "amount_off": spec.get("amount_off"),
                "created": created,
                "currency": spec.get("currency"),
                "duration": spec["duration"],
                "duration_in_months": spec.get("duration_in_months"),
                "livemode": False,
                "max_redemptions": None,
                "metadata": {},
                "name": spec["name"],
                "percent_off": spec.get("percent_off"),
                "redeem_by": None,
                "times_redeemed": 0,
                "valid": True,
            }
            self.coupons[cid] = coupon
            self.coupon_uses[cid] = 0
            self.out["coupon"].append(coupon)
            self.emit("coupon.created", coupon, created, api=True)

        n_companies = max(4, self.n_customers // 8)
        for i in range(n_companies):
            name = _COMPANIES[i % len(_COMPANIES)]
            if i >= len(_COMPANIES):
                name = f"{name} {i // len(_COMPANIES) + 1}"
            self.companies.append(("comp_" + "".join(self.rng.choices(string.digits + string.ascii_uppercase, k=8)), name))

    def _price(self, fam: str, spec: dict, cur: str, product_id: str, created: int) -> dict:
        tiers = (spec.get("tiers") or {}).get(cur)
        amount = (spec.get("amounts") or {}).get(cur)
        usage = spec.get("usage_type", "licensed")
        transform = (spec.get("transform") or {}).get(cur)
        unit_amount: int | None
        if tiers is not None:
            unit_amount, unit_dec = None, None
        elif isinstance(amount, str):
            unit_amount, unit_dec = None, amount
        else:
            unit_amount, unit_dec = amount, str(amount)
        price = {
            "id": self.rid("price"),
            "object": "price",
            "active": True,
            "billing_scheme": "tiered" if tiers else "per_unit",
            "created": created,
            "currency": cur,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": f"{fam}_{cur}",
            "metadata": {},
            "nickname": spec["nickname"],
            "product": product_id,
            "recurring": {
                "interval": spec["interval"],
                "interval_count": spec["count"],
                "meter": self.short_id("mtr") if usage == "metered" else None,
                "trial_period_days": None,
                "usage_type": usage,
            },
            "tax_behavior": "exclusive",
            "tiers_mode": spec.get("tiers_mode"),
            "transform_quantity": dict(transform) if transform else None,
            "type": "recurring",
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_dec,
        }
        if tiers:
            price["tiers"] = [
                {
                    "flat_amount": t["flat_amount"],
                    "flat_amount_decimal": None if t["flat_amount"] is None else str(t["flat_amount"]),
                    "unit_amount": t["unit_amount"],
                    "unit_amount_decimal": str(t["unit_amount"]),
                    "up_to": t["up_to"],
                }
                for t in tiers
            ]
        return price

    @staticmethod
    def _plan(price: dict) -> dict:
        """The legacy ``plan`` mirror Stripe still puts on subscription items."""
        rec = price["recurring"]
        plan = {
            "id": price["id"],
            "object": "plan",
            "active": True,
            "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": price["billing_scheme"],
            "created": price["created"],
            "currency": price["currency"],
            "interval": rec["interval"],
            "interval_count": rec["interval_count"],
            "livemode": False,
            "metadata": {},
            "meter": rec["meter"],
            "nickname": price["nickname"],
            "product": price["product"],
            "tiers_mode": price["tiers_mode"],
            "transform_usage": price["transform_quantity"],
            "trial_period_days": None,
            "usage_type": rec["usage_type"],
        }
        if "tiers" in price:
            plan["tiers"] = price["tiers"]
        return plan

    # ---------------------------------------------------------- scripts

    def random_script(self) -> _Script:
        r = self.rng
        s = _Script()
        s.created = r.randint(self.start, self.now - HOUR)
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
        s.family = _family_for(fam, s.currency)
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

    # ---------------------------------------------------------- customers

    def customer(self, index: int, s: _Script) -> None:
        r = self.rng
        created = max(self.start, min(s.created if s.created is not None else self.now - DAY, self.now - 60))
        money = s.currency or r.choices(["usd", "eur", "gbp", "jpy"], [62, 15, 11, 12])[0]
        if money == "jpy":
            first, last = r.choice(_JP_FIRST), r.choice(_JP_LAST)
        else:
            first, last = r.choice(_FIRST), r.choice(_LAST)
        country, city, state, postal = r.choice(_COUNTRIES[money])
        cus_id = self.short_id("cus")
        email = f"{first}.{last}.{index}@example.com".lower().replace(" ", "")
        metadata: dict[str, str] = {}
        if s.id_key == "segment_user_id":
            metadata["segment_user_id"] = f"user_{index:06d}"
        elif s.id_key == "user_id":
            metadata["user_id"] = f"u-{index:06d}"
        if s.b2b:
            company_id, company_name = self.companies[r.randrange(len(self.companies))]
            metadata["company_id"] = company_id
            metadata["company_name"] = company_name
        address = {
            "city": city,
            "country": country,
            "line1": f"{r.randint(1, 999)} Market Street",
            "line2": None,
            "postal_code": postal,
            "state": state,
        }
        has_card = s.currency is not None and s.trial != "cancel" and s.trial != "pause"
        pm = self.rid("pm") if has_card or s.one_off else None
        cust = {
            "id": cus_id,
            "object": "customer",
            "address": address,
            "balance": 0,
            "created": created,
            "currency": s.currency,
            "customer_account": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": email,
            "invoice_prefix": "".join(r.choices(string.ascii_uppercase + string.digits, k=8)),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": pm if has_card else None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": metadata,
            "name": f"{first} {last}",
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [_LOCALES[money]],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self.out["customer"].append(cust)
        self.emit("customer.created", cust, created, api=True)

        brands = _BRANDS[money]
        brand = r.choices([b for b, _ in brands], [w for _, w in brands])[0]
        ctx = _Ctx(
            cust=cust,
            script=s,
            pm=pm,
            card=(brand, f"{r.randint(0, 9999):04d}", r.randint(1, 12), r.randint(2027, 2031), country, random_alnum(r, 16)),
            succeeded=0,
        )
        t = created + r.randint(60, 900)
        if s.family is not None and t < self.now - 600:
            self.subscription(ctx, t)
        for j, status in enumerate(s.one_off):
            when = t + (j + 1) * r.randint(DAY, 20 * DAY)
            if when < self.now - 60:
                self.one_off_charge(ctx, when, status)

    # ---------------------------------------------------------- subscriptions

    def item(self, sub_id: str, price: dict, quantity: int | None, created: int, start: int, end: int) -> dict:
        embedded, plan = self.embedded[price["id"]]
        item: dict[str, Any] = {
            "id": self.short_id("si"),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": created,
            "current_period_end": end,
            "current_period_start": start,
            "discounts": [],
            "metadata": {},
            "plan": plan,
            "price": embedded,
            "subscription": sub_id,
            "tax_rates": [],
        }
        if quantity is not None:  # metered items carry no quantity
            item["quantity"] = quantity
        return item

    def discount(self, ctx: _Ctx, coupon_id: str, sub_id: str, item_id: str | None, start: int) -> dict:
        coupon = self.coupons[coupon_id]
        self.coupon_uses[coupon_id] += 1
        end = _add_months(start, coupon["duration_in_months"]) if coupon["duration"] == "repeating" else None
        return {
            "id": self.rid("di"),
            "object": "discount",
            "checkout_session": None,
            "customer": ctx.cust["id"],
            "customer_account": None,
            "end": end,
            "invoice": None,
            "invoice_item": None,
            "promotion_code": None,
            "source": {"type": "coupon", "coupon": self.snap(coupon)},
            "start": start,
            "subscription": sub_id,
            "subscription_item": item_id,
        }

    def subscription(self, ctx: _Ctx, t0: int) -> None:
        r = self.rng
        s = ctx.script
        cur = s.currency
        assert cur is not None and s.family is not None
        spec = FAMILIES[s.family]
        price = self.prices[(s.family, cur)]
        sub_id = self.rid("sub")
        trial_end = t0 + 14 * DAY if s.trial else None
        cycle = _Cycle(trial_end or t0, spec["interval"], spec["count"])
        period_start = t0
        period_end = trial_end or cycle.boundary(1)
        k_next = 1 if trial_end is None else 0  # index of period_end in cycle once billing starts

        items = [self.item(sub_id, price, s.quantity, t0, period_start, period_end)]
        if s.metered and (("api_metered", cur) in self.prices):
            items.append(self.item(sub_id, self.prices[("api_metered", cur)], None, t0, period_start, period_end))
        discounts: list[dict] = []
        if s.coupon:
            if s.item_coupon:
                items[0]["discounts"] = [self.discount(ctx, s.coupon, sub_id, items[0]["id"], t0)]
            else:
                discounts = [self.discount(ctx, s.coupon, sub_id, None, t0)]
        sub: dict[str, Any] = {
            "id": sub_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": trial_end or t0,
            "billing_cycle_anchor_config": None,
            "billing_mode": {"type": "flexible", "flexible": {"proration_discounts": "included"}, "updated_at": t0},
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": t0,
            "currency": cur,
            "customer": ctx.cust["id"],
            "customer_account": None,
            "days_until_due": None,
            "default_payment_method": ctx.pm,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": discounts,
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": {},
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": t0,
            "status": "trialing" if trial_end else "active",
            "test_clock": None,
            "transfer_data": None,
            "trial_end": trial_end,
            "trial_settings": {
                "end_behavior": {"missing_payment_method": {"cancel": "cancel", "pause": "pause"}.get(s.trial or "", "create_invoice")}
            },
            "trial_start": t0 if trial_end else None,
        }
        self.out["subscription"].append(sub)
        ctx.sub = sub
        ctx.cycle = cycle
        inv_id = self.rid("in")
        sub["latest_invoice"] = inv_id
        self.emit("customer.subscription.created", sub, t0, api=True)
        outcome = self.invoice_flow(ctx, inv_id, t0 + 1, "subscription_create", (t0, t0), None, "never")
        if outcome != "paid":
            return

        k = 0  # index of the current period (0 = the first one)
        while True:
            is_last = period_end > self.now
            if sub["status"] in ("active", "past_due"):
                mid = self._mid(period_start, period_end, is_last)
                if mid is not None:
                    mid = max(mid, ctx.busy_until + 60)
                    if mid >= min(period_end, self.now):
                        mid = None
                if mid is not None:
                    self.expire_discounts(ctx, mid)
                if s.change and _hits(s.change[1], k, is_last) and mid is not None:
                    self.change_items(ctx, s.change[0], mid)
                if s.pause_collection_at is not None and s.pause_collection_at == k and mid is not None:
                    before = {"pause_collection": None}
                    sub["pause_collection"] = {"behavior": "void", "resumes_at": None}
                    self.emit("customer.subscription.updated", sub, mid + 7, before, api=True)
                if s.cancel and _hits(s.cancel[1], k, is_last) and mid is not None:
                    when = mid + 13
                    if s.cancel[0] == "immediate":
                        self.cancel(ctx, when, when, "cancellation_requested", api=True)
                        return
                    before = {
                        "cancel_at": None,
                        "cancel_at_period_end": False,
                        "canceled_at": None,
                        "cancellation_details": self.snap(sub["cancellation_details"]),
                    }
                    sub["cancel_at"] = period_end
                    sub["cancel_at_period_end"] = True
                    sub["canceled_at"] = when
                    sub["cancellation_details"] = {
                        "comment": None,
                        "feedback": r.choice(["too_expensive", "switched_service", "unused", "missing_features"]),
                        "reason": "cancellation_requested",
                    }
                    self.emit("customer.subscription.updated", sub, when, before, api=True)
            self.expire_discounts(ctx, min(period_end, self.now))
            if is_last:
                return
            t = period_end
            if sub["cancel_at_period_end"]:
                self.cancel(ctx, t, sub["canceled_at"], sub["cancellation_details"]["reason"], api=False)
                return
            k += 1
            k_next += 1
            new_start, new_end = t, cycle.boundary(k_next)
            old_items = self.snap(sub["items"])
            old_invoice = sub["latest_invoice"]
            was_trialing = sub["status"] == "trialing"
            if was_trialing and s.trial in ("cancel", "pause"):
                if s.trial == "cancel":
                    self.cancel(ctx, t, t, None, api=False)
                else:
                    sub["status"] = "paused"
                    self.emit("customer.subscription.updated", sub, t, {"status": "trialing"})
                return
            for it in sub["items"]["data"]:
                it["current_period_start"] = new_start
                it["current_period_end"] = new_end
            paused = sub["pause_collection"] is not None
            # no invoice while collection is paused, nor if it is not due yet
            inv_id = None if paused or t + 1 > self.now else self.rid("in")
            previous: dict[str, Any] = {"items": old_items}
            if inv_id is not None:
                sub["latest_invoice"] = inv_id
                previous["latest_invoice"] = old_invoice
            if was_trialing:
                sub["status"] = "active"
                previous["status"] = "trialing"
            self.emit("customer.subscription.updated", sub, t, previous)
            period_start, period_end = new_start, new_end
            if inv_id is None:
                continue  # (with collection paused Stripe voids these invoices; we skip them)
            usage_period = (old_items["data"][0]["current_period_start"], t)
            plan_fail = s.fail.get(k) or (s.fail.get(-1) if period_end > self.now else None)
            if plan_fail is None and s.fail_rate and r.random() < s.fail_rate:
                plan_fail = r.choices(["recover", "exhaust"], [75, 25])[0]
            outcome = self.invoice_flow(
                ctx, inv_id, t + 1, "subscription_cycle", (period_start, period_end), usage_period, plan_fail or "never"
            )
            if outcome == "exhausted":
                return

    def _mid(self, start: int, end: int, is_last: bool) -> int | None:
        """When a customer acts during a period: late enough that payment retries are over."""
        if is_last:
            if self.now - start < 2 * HOUR:
                return None
            return start + (self.now - start) // 2 if self.now - start < 4 * DAY else max(start + 3 * DAY, self.now - 2 * DAY)
        return start + int((end - start) * self.rng.uniform(0.55, 0.9))

    def change_items(self, ctx: _Ctx, kind: str, when: int) -> None:
        sub = ctx.sub
        main = sub["items"]["data"][0]
        family = main["price"]["lookup_key"].rsplit("_", 1)[0]
        cur = sub["currency"]
        old_items = self.snap(sub["items"])
        if kind == "upgrade" and (_UPGRADES.get(family), cur) in self.prices:
            new_price = self.prices[(_UPGRADES[family], cur)]
        elif kind == "downgrade" and (_DOWNGRADES.get(family), cur) in self.prices:
            new_price = self.prices[(_DOWNGRADES[family], cur)]
            main["quantity"] = 1
        else:
            new_price = None
            q = main.get("quantity") or 1
            if kind in ("seats_down", "downgrade"):
                if q == 1:
                    return  # nothing to take away
                main["quantity"] = max(1, q - self.rng.randint(1, max(1, q // 2)))
            else:
                main["quantity"] = q + self.rng.randint(1, 5)
        if new_price is not None:
            embedded, plan = self.embedded[new_price["id"]]
            main["price"], main["plan"] = embedded, plan
        self.emit("customer.subscription.updated", sub, when, {"items": old_items}, api=True)

    def cancel(self, ctx: _Ctx, when: int, canceled_at: int | None, reason: str | None, api: bool) -> None:
        sub = ctx.sub
        sub["status"] = "canceled"
        sub["ended_at"] = when
        sub["canceled_at"] = canceled_at if canceled_at is not None else when
        details = dict(sub["cancellation_details"])
        if reason and details.get("reason") is None:
            details["reason"] = reason
            if reason == "cancellation_requested" and details.get("feedback") is None:
                details["feedback"] = self.rng.choice(["too_expensive", "unused", "other"])
        sub["cancellation_details"] = details
        self.emit("customer.subscription.deleted", sub, when, api=api)

    def expire_discounts(self, ctx: _Ctx, until: int) -> None:
        """Repeating discounts end (Stripe removes them at ``end``)."""
        sub = ctx.sub
        ended = [d for d in sub["discounts"] if d["end"] is not None and d["end"] <= until]
        if ended:
            before = {"discounts": [d["id"] for d in sub["discounts"]]}
            sub["discounts"] = [d for d in sub["discounts"] if d not in ended]
            self.emit("customer.subscription.updated", sub, max(d["end"] for d in ended), before)
        for it in sub["items"]["data"]:
            ended = [d for d in it["discounts"] if d["end"] is not None and d["end"] <= until]
            if ended:
                before = {"items": self.snap(sub["items"])}
                it["discounts"] = [d for d in it["discounts"] if d not in ended]
                self.emit("customer.subscription.updated", sub, max(d["end"] for d in ended), before)

    def drop_once_discounts(self, ctx: _Ctx, when: int) -> None:
        sub = ctx.sub
        if any(d["source"]["coupon"]["duration"] == "once" for d in sub["discounts"]):
            before = {"discounts": [d["id"] for d in sub["discounts"]]}
            sub["discounts"] = [d for d in sub["discounts"] if d["source"]["coupon"]["duration"] != "once"]
            self.emit("customer.subscription.updated", sub, when, before)

    # ---------------------------------------------------------- invoices and payments

    def lines(
        self, ctx: _Ctx, inv_id: str, period: tuple[int, int], usage_period: tuple[int, int] | None
    ) -> tuple[list[dict], list[dict], int, int]:
        """Invoice lines for the subscription's items; returns (lines, discount amounts, subtotal, discount total)."""
        sub = ctx.sub
        cur = sub["currency"]
        lines: list[dict] = []
        totals: dict[str, int] = {}
        subtotal = 0
        for it in sub["items"]["data"]:
            price = it["price"]
            metered = price["recurring"]["usage_type"] == "metered"
            if metered:
                if usage_period is None:
                    continue  # usage is billed in arrears: nothing on the first invoice
                qty = self.rng.randint(5_000, 400_000)
                line_period = usage_period
            else:
                qty = it.get("quantity") or 1
                line_period = period
            amount = price_amount(price, qty)
            line_discounts = []
            for d in it["discounts"]:
                off = _discount_off(d["source"]["coupon"], amount, cur)
                if off:
                    line_discounts.append({"amount": off, "discount": d["id"]})
                    totals[d["id"]] = totals.get(d["id"], 0) + off
            subtotal += amount
            lines.append(
                {
                    "id": self.rid("il"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": cur,
                    "description": f"{qty} × {price['nickname'] or self.product_names[price['product']]}",
                    "discount_amounts": line_discounts,
                    "discountable": True,
                    "discounts": [d["discount"] for d in line_discounts],
                    "invoice": inv_id,
                    "livemode": False,
                    "metadata": {},
                    "parent": {
                        "type": "subscription_item_details",
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": sub["id"],
                            "subscription_item": it["id"],
                        },
                    },
                    "period": {"end": line_period[1], "start": line_period[0]},
                    "pretax_credit_amounts": [],
                    "pricing": {
                        "type": "price_details",
                        "price_details": {"price": price["id"], "product": price["product"]},
                        "unit_amount_decimal": price["unit_amount_decimal"],
                    },
                    "quantity": qty,
                    "subtotal": amount,
                    "taxes": [],
                }
            )
        remaining = subtotal - sum(totals.values())
        for d in sub["discounts"]:
            off = min(remaining, _discount_off(d["source"]["coupon"], remaining, cur))
            if off:
                totals[d["id"]] = totals.get(d["id"], 0) + off
                remaining -= off
        discount_amounts = [{"amount": v, "discount": k} for k, v in totals.items()]
        return lines, discount_amounts, subtotal, subtotal - remaining

    def invoice_flow(
        self,
        ctx: _Ctx,
        inv_id: str,
        t: int,
        reason: str,
        period: tuple[int, int],
        usage_period: tuple[int, int] | None,
        plan_fail: str,
    ) -> str:
        """Create, finalize and collect one subscription invoice.

        Returns ``paid``, ``pending`` (still being retried at ``now``) or
        ``exhausted`` (retries used up; the subscription was canceled).
        """
        r = self.rng
        sub, cust = ctx.sub, ctx.cust
        cur = sub["currency"]
        trial_invoice = reason == "subscription_create" and sub["status"] == "trialing"
        if trial_invoice:
            lines, discount_amounts, subtotal, off = [], [], 0, 0
            # the $0 trial invoice still has a line for the trial period
            lines_src, _, _, _ = self.lines(ctx, inv_id, (sub["trial_start"], sub["trial_end"]), None)
            for line in lines_src:
                line.update(amount=0, subtotal=0, description=f"Trial period for {line['description'].split(' × ')[1]}")
            lines = lines_src
        else:
            lines, discount_amounts, subtotal, off = self.lines(ctx, inv_id, period, usage_period)
        total = subtotal - off
        seq = cust["next_invoice_sequence"]
        cust["next_invoice_sequence"] = seq + 1
        prev_period = usage_period or (t - 1, t - 1)
        sub_discount_ids = [d["id"] for d in sub["discounts"]]
        inv: dict[str, Any] = {
            "id": inv_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Demo SaaS Inc.",
            "account_tax_ids": None,
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": total,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None, "status": None},
            "automatically_finalizes_at": t + HOUR,
            "billing_reason": reason,
            "collection_method": "charge_automatically",
            "created": t,
            "currency": cur,
            "custom_fields": None,
            "customer": cust["id"],
            "customer_account": None,
            "customer_address": cust["address"] and dict(cust["address"]),
            "customer_email": cust["email"],
            "customer_name": cust["name"],
            "customer_phone": None,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": sub_discount_ids,
            "due_date": None,
            "effective_at": None,
            "ending_balance": None,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{inv_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None,
            "number": None,
            "on_behalf_of": None,
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": sub["id"]},
            },
            "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
            "payments": {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": f"/v1/invoices/{inv_id}/payments"},
            "period_end": prev_period[1],
            "period_start": prev_period[0],
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "draft",
            "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None, "voided_at": None},
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": discount_amounts,
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": t,
        }
        self.out["invoice"].append(inv)
        self.emit("invoice.created", inv, t)
        immediate = reason == "subscription_create"
        t_fin = t + 1 if immediate else t + HOUR
        if t_fin > self.now:
            return "pending"  # still a draft: Stripe finalizes about an hour after creation
        inv["status"] = "open"
        inv["number"] = f"{cust['invoice_prefix']}-{seq:04d}"
        inv["effective_at"] = t_fin
        inv["status_transitions"] = dict(inv["status_transitions"], finalized_at=t_fin)
        inv["hosted_invoice_url"] = f"https://invoice.stripe.com/i/acct_demo/test_{inv_id[3:]}"
        inv["invoice_pdf"] = f"https://pay.stripe.com/invoice/acct_demo/test_{inv_id[3:]}/pdf"
        inv["automatically_finalizes_at"] = None
        inv["ending_balance"] = 0
        if total == 0:
            self.emit("invoice.finalized", inv, t_fin)
            self._mark_paid(inv, t_fin + 1)
            self.emit("invoice.paid", inv, t_fin + 1)
            return "paid"

        pi = self.payment_intent(ctx, total, t_fin, "Subscription creation" if immediate else "Subscription update")
        inpay = {
            "id": self.rid("inpay"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": total,
            "created": t_fin,
            "currency": cur,
            "invoice": inv_id,
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
        self.out["invoice_payment"].append(inpay)
        inv["payments"] = dict(inv["payments"], data=[self.snap(inpay)], total_count=1)
        self.emit("invoice.finalized", inv, t_fin)

        # payment attempts: the first right after finalization, then retries
        attempt_times = [t_fin + (1 if immediate else HOUR)]
        for days in RETRY_DAYS:
            attempt_times.append(attempt_times[-1] + days * DAY)
        succeed_at = {"never": 1, "recover": r.randint(2, len(attempt_times))}.get(plan_fail)
        for n, when in enumerate(attempt_times, start=1):
            if when > self.now:
                return "pending"
            ok = succeed_at is not None and n >= succeed_at
            charge = self.charge(ctx, pi, total, when, ok, pi["description"])
            ctx.busy_until = when + 4
            inv["attempt_count"] = n
            inv["attempted"] = True
            if ok:
                self._mark_paid(inv, when + 1)
                inv["amount_paid"] = total
                inv["amount_remaining"] = 0
                inpay.update(amount_paid=total, status="paid", status_transitions={"canceled_at": None, "paid_at": when + 1})
                inv["payments"] = dict(inv["payments"], data=[self.snap(inpay)])
                self.emit("charge.succeeded", charge, when)
                self.emit("invoice.paid", inv, when + 1)
                if sub["status"] == "past_due":
                    sub["status"] = "active"
                    self.emit("customer.subscription.updated", sub, when + 2, {"status": "past_due"})
                if cust["delinquent"]:
                    cust["delinquent"] = False
                    self.emit("customer.updated", cust, when + 3, {"delinquent": True})
                self.drop_once_discounts(ctx, when + 4)
                self.after_success(ctx, charge, when)
                return "paid"
            last = n == len(attempt_times)
            inv["next_payment_attempt"] = None if last else attempt_times[n]
            inv["payments"] = dict(inv["payments"], data=[self.snap(inpay)])
            self.emit("charge.failed", charge, when)
            self.emit("invoice.payment_failed", inv, when + 1)
            if sub["status"] == "active":
                sub["status"] = "past_due"
                self.emit("customer.subscription.updated", sub, when + 2, {"status": "active"})
            if not cust["delinquent"]:
                cust["delinquent"] = True
                self.emit("customer.updated", cust, when + 3, {"delinquent": False})
            if last:
                # retries exhausted: the default setting cancels the subscription
                # and leaves the invoice open (past due)
                self.cancel(ctx, when + 60, when + 60, "payment_failed", api=False)
                return "exhausted"
        return "pending"  # pragma: no cover - loop always returns

    @staticmethod
    def _mark_paid(inv: dict, when: int) -> None:
        inv["status"] = "paid"
        inv["next_payment_attempt"] = None
        inv["status_transitions"] = dict(inv["status_transitions"], paid_at=when)

    def payment_intent(self, ctx: _Ctx, amount: int, created: int, description: str) -> dict:
        pi_id = self.rid("pi")
        pi = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{pi_id}_secret_{random_alnum(self.rng, 25)}",
            "confirmation_method": "automatic",
            "created": created,
            "currency": ctx.sub["currency"] if ctx.sub else ctx.cust["currency"],
            "customer": ctx.cust["id"],
            "customer_account": None,
            "description": description,
            "excluded_payment_method_types": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": ctx.pm,
            "payment_method_configuration_details": None,
            "payment_method_options": {
                "card": {"installments": None, "mandate_options": None, "network": None, "request_three_d_secure": "automatic"}
            },
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": "off_session",
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
        self.out["payment_intent"].append(pi)
        return pi

    def charge(self, ctx: _Ctx, pi: dict, amount: int, when: int, ok: bool, description: str) -> dict:
        r = self.rng
        cust = ctx.cust
        brand, last4, exp_m, exp_y, country, fingerprint = ctx.card
        decline = None if ok else r.choice(_DECLINES)
        ch_id = self.rid("ch", lead="3")
        charge = {
            "id": ch_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if ok else 0,
            "amount_refunded": 0,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": self.rid("txn", lead="3") if ok else None,
            "billing_details": {
                "address": dict(cust["address"]),
                "email": cust["email"],
                "name": cust["name"],
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "DEMO SAAS",
            "captured": ok,
            "created": when,
            "currency": pi["currency"],
            "customer": cust["id"],
            "description": description,
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": decline[0] if decline else None,
            "failure_message": decline[1] if decline else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None if ok else "try_again_later",
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network" if ok else "declined_by_network",
                "reason": None if ok else decline[2],  # type: ignore[index]
                "risk_level": "normal",
                "risk_score": r.randint(5, 60),
                "seller_message": "Payment complete." if ok else "The bank did not return any further details with this decline.",
                "type": "authorized" if ok else "issuer_declined",
            },
            "paid": ok,
            "payment_intent": pi["id"],
            "payment_method": ctx.pm,
            "payment_method_details": {
                "type": "card",
                "card": {
                    "amount_authorized": amount if ok else None,
                    "authorization_code": f"{r.randint(0, 999999):06d}" if ok else None,
                    "brand": brand,
                    "checks": {"address_line1_check": None, "address_postal_code_check": "pass", "cvc_check": "pass"},
                    "country": country,
                    "exp_month": exp_m,
                    "exp_year": exp_y,
                    "extended_authorization": {"status": "disabled"},
                    "fingerprint": fingerprint,
                    "funding": "credit",
                    "incremental_authorization": {"status": "unavailable"},
                    "installments": None,
                    "last4": last4,
                    "mandate": None,
                    "multicapture": {"status": "unavailable"},
                    "network": brand,
                    "network_token": {"used": False},
                    "network_transaction_id": "".join(r.choices(string.digits, k=15)),
                    "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                    "regulated_status": "unregulated",
                    "three_d_secure": None,
                    "wallet": None,
                },
            },
            "radar_options": {},
            "receipt_email": cust["email"] if ok else None,
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/test_{ch_id[3:]}",
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": f"/v1/charges/{ch_id}/refunds"},
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "succeeded" if ok else "failed",
            "transfer_data": None,
            "transfer_group": None,
        }
        self.out["charge"].append(charge)
        pi["latest_charge"] = ch_id
        if ok:
            pi["status"] = "succeeded"
            pi["amount_received"] = amount
            pi["last_payment_error"] = None
        else:
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = {
                "type": "card_error",
                "charge": ch_id,
                "code": decline[0],  # type: ignore[index]
                "decline_code": decline[2],  # type: ignore[index]
                "doc_url": f"https://docs.stripe.com/error-codes/{decline[0].replace('_', '-')}",  # type: ignore[index]
                "message": decline[1],  # type: ignore[index]
                "payment_method": {"id": ctx.pm, "object": "payment_method", "type": "card"},
            }
        return charge

    def one_off_charge(self, ctx: _Ctx, when: int, status: str) -> None:
        """A purchase outside any invoice (e.g. an onboarding package)."""
        cur = ctx.cust["currency"] or "usd"
        amount = {"jpy": 30000, "gbp": 20000, "eur": 22000}.get(cur, 25000)
        saved, ctx.sub = ctx.sub, None
        pi = self.payment_intent(ctx, amount, when, "Onboarding package")
        ctx.sub = saved
        ok = status == "succeeded"
        charge = self.charge(ctx, pi, amount, when + 1, ok, "Onboarding package")
        self.emit("charge.succeeded" if ok else "charge.failed", charge, when + 1, api=True)
        if ok:
            self.after_success(ctx, charge, when + 1)

    def after_success(self, ctx: _Ctx, charge: dict, when: int) -> None:
        """Refunds and disputes that later hit a succeeded charge."""
        r = self.rng
        s = ctx.script
        n = ctx.succeeded
        ctx.succeeded += 1
        kind = s.refund.get(n)
        if kind is None and s.refund_rate and r.random() < s.refund_rate:
            kind = "partial" if r.random() < 0.5 else "full"
        if kind:
            at = when + r.randint(DAY, 10 * DAY)
            if at < self.now:
                self.refund(charge, at, kind)
                return
        if s.dispute == n or (s.dispute_rate and r.random() < s.dispute_rate):
            at = when + r.randint(5 * DAY, 40 * DAY)
            self.dispute(charge, max(when + 60, min(at, self.now - HOUR)))

    def refund(self, charge: dict, when: int, kind: str) -> None:
        amount = charge["amount"] if kind == "full" else max(1, charge["amount"] // 2)
        refund = {
            "id": self.rid("re", lead="3"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": self.rid("txn", lead="3"),
            "charge": charge["id"],
            "created": when,
            "currency": charge["currency"],
            "destination_details": {
                "type": "card",
                "card": {
                    "reference": "".join(self.rng.choices(string.digits, k=23)),
                    "reference_status": "available",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
            },
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "payment_method": charge["payment_method"],
            "reason": "requested_by_customer" if kind == "partial" else self.rng.choice(["requested_by_customer", "duplicate"]),
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.out["refund"].append(refund)
        before: dict[str, Any] = {"amount_refunded": charge["amount_refunded"]}
        charge["amount_refunded"] += amount
        if charge["amount_refunded"] >= charge["amount_captured"]:
            before["refunded"] = charge["refunded"]
            charge["refunded"] = True
        refunds = charge["refunds"]
        charge["refunds"] = dict(refunds, data=[*refunds["data"], self.snap(refund)], total_count=refunds["total_count"] + 1)
        self.emit("refund.created", refund, when, api=True)
        self.emit("charge.refunded", charge, when, before, api=True)

    def dispute(self, charge: dict, when: int) -> None:
        card = charge["payment_method_details"]["card"]
        dispute = {
            "id": self.rid("dp"),
            "object": "dispute",
            "amount": charge["amount"],
            "balance_transactions": [],
            "charge": charge["id"],
            "created": when,
            "currency": charge["currency"],
            "enhanced_eligibility_types": [],
            "evidence": dict.fromkeys(_EVIDENCE_FIELDS) | {"enhanced_evidence": {}},
            "evidence_details": {
                "due_by": when + 14 * DAY,
                "enhanced_eligibility": {},
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "network_reason_code": "10.4",
            "payment_intent": charge["payment_intent"],
            "payment_method_details": {
                "type": "card",
                "card": {"brand": card["brand"], "case_type": "chargeback", "network_reason_code": "10.4"},
            },
            "reason": "fraudulent",
            "status": "needs_response",
        }
        self.out["dispute"].append(dispute)
        charge["disputed"] = True
        self.emit("charge.dispute.created", dispute, when)

    # ---------------------------------------------------------- run

    def run(self) -> DemoAccount:
        self.build_catalog()
        scripts = _scripted(self.now)[: self.n_customers]
        for i in range(self.n_customers):
            script = scripts[i] if i < len(scripts) else self.random_script()
            self.customer(i, script)
        for cid, uses in self.coupon_uses.items():
            self.coupons[cid]["times_redeemed"] = uses
        objects: list[dict] = []
        for kind in self.out.values():
            objects.extend(kind)
        self.events.sort(key=lambda e: (e["created"], e["id"]))
        return DemoAccount(objects=objects, events=self.events, now=self.now)


@dataclass
class _Ctx:
    cust: dict
    script: _Script
    pm: str | None
    card: tuple
    succeeded: int
    sub: Any = None
    cycle: Any = None
    busy_until: int = 0  # time of the latest event about the subscription


_EVIDENCE_FIELDS = (
    "access_activity_log billing_address cancellation_policy cancellation_policy_disclosure "
    "cancellation_rebuttal customer_communication customer_email_address customer_name "
    "customer_purchase_ip customer_signature duplicate_charge_documentation "
    "duplicate_charge_explanation duplicate_charge_id product_description receipt refund_policy "
    "refund_policy_disclosure refund_refusal_explanation service_date service_documentation "
    "shipping_address shipping_carrier shipping_date shipping_documentation "
    "shipping_tracking_number uncategorized_file uncategorized_text"
).split()


SCRIPTED_COUNT = len(_scripted(10 * 365 * DAY))


def _hits(planned: int, k: int, is_last: bool) -> bool:
    return planned == k or (planned == -1 and is_last)


def _family_for(family: str, currency: str) -> str:
    """The family a customer in ``currency`` can buy (some prices are USD-only)."""
    spec = FAMILIES[family]
    if currency in (spec.get("amounts") or spec.get("tiers") or {}):
        return family
    return "starter_month" if family.startswith("starter") else "pro_month"


def _discount_off(coupon: dict, amount: int, currency: str) -> int:
    if coupon.get("percent_off"):
        return _percent(amount, coupon["percent_off"])
    if coupon.get("amount_off") and coupon.get("currency") == currency:
        return min(amount, coupon["amount_off"])
    return 0


def price_amount(price: dict, quantity: int) -> int:
    """What a price charges for ``quantity`` in one period, in minor units.

    Applies ``transform_quantity`` (divide, then round) and tiers the way
    Stripe does: volume prices every unit at the tier the quantity falls in,
    graduated prices each unit at its own tier, and flat amounts are added.
    """
    q = quantity
    tq = price.get("transform_quantity")
    if tq:
        whole, rest = divmod(q, tq["divide_by"])
        q = whole + (1 if rest and tq["round"] == "up" else 0)
    tiers = price.get("tiers")
    if price.get("billing_scheme") == "tiered" and tiers:
        if price.get("tiers_mode") == "volume":
            for tier in tiers:
                if tier["up_to"] is None or q <= tier["up_to"]:
                    return q * (tier["unit_amount"] or 0) + (tier["flat_amount"] or 0)
        total, lower = 0, 0
        for tier in tiers:
            upper = tier["up_to"]
            units = (q if upper is None else min(q, upper)) - lower
            if units <= 0:
                break
            total += units * (tier["unit_amount"] or 0) + (tier["flat_amount"] or 0)
            if upper is None:
                break
            lower = upper
        return total
    unit = Decimal(price.get("unit_amount_decimal") or price.get("unit_amount") or 0)
    return int((unit * q).quantize(Decimal(1), ROUND_HALF_UP))


def generate_account(
    *,
    customers: int = 300,
    months: int = 12,
    seed: int = 7,
    now: int | None = None,
    events_since: int | None = None,
) -> DemoAccount:
    """Simulate ``customers`` customers signing up over the last ``months`` months.

    ``now`` (Unix seconds; default: the current time) is the moment the
    account is observed: nothing happens after it and running states
    (trials, pending retries) are as of then. ``events_since`` drops events
    older than that time (all objects are kept), to save memory in large
    benchmarks; Stripe's Events API only serves 30 days anyway.
    """
    if customers < 0:
        raise ValueError("customers must be >= 0")
    if months < 1:
        raise ValueError("months must be >= 1")
    when = int(now if now is not None else dt.datetime.now(_UTC).timestamp())
    account = _Sim(customers=customers, months=months, seed=seed, now=when, events_since=events_since).run()
    account.seed = seed
    return account


def seed_standin(standin: Any, account: DemoAccount, *, copy: bool = False) -> None:
    """Load the account's objects and events into a ``StripeStandIn``.

    Sets the stand-in's clock to the account's ``now`` when it has none, so
    the 30-day event window is the account's last 30 days.

    By default the stand-in keeps the account's dicts without copying them
    (seconds and gigabytes saved on large accounts; the stand-in itself never
    mutates what it stores). Don't edit the account's objects afterwards
    without ``emit``-ing them, or pass ``copy=True``.
    """
    if standin.now is None:
        standin.now = account.now
    standin.load(account.objects, copy=copy)
    standin.load_events(account.events, copy=copy)


__all__ = ["DemoAccount", "SCRIPTED_COUNT", "generate_account", "price_amount", "seed_standin"]
