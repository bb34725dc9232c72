"""The demo business's catalogue: products, prices (flat, tiered, metered, four currencies), coupons and tax rates.

Also what a price charges for a quantity (in the subscription's currency,
for multi-currency prices), what a coupon takes off and how much of an
amount is tax, which invoices and the traits all depend on.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .periods import DAY, add_months
from .recording import AccountRecorder, SimulationPart

# product key -> (name, description)
PRODUCTS: dict[str, tuple[str, str]] = {
    "starter": ("Starter", "Everything a small team needs to get going"),
    "pro": ("Pro", "Advanced workflows, billed per seat"),
    "team": ("Team", "Per-seat pricing that gets cheaper as the team grows"),
    "enterprise": ("Enterprise", "Volume pricing for large organisations"),
    "api": ("API Calls", "Metered API usage, billed monthly in arrears"),
    "support": ("Priority Support", "24/7 support add-on"),
    "lite": ("Lite", "The essentials, one price list in several currencies"),
}

# price family -> product, nickname, interval, interval_count, amounts per
# currency (minor units; JPY in yen). Families without a currency fall back
# to one that exists for the customer (see family_for). ``tax_behavior``
# defaults to exclusive; ``currency_options`` are further currencies of the
# one (multi-currency) price, Stripe's ``price.currency_options``.
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
    # EU pricing with VAT included: 53.55 = 45.00 net + 19% VAT (the
    # subscription carries the inclusive DE_VAT tax rate)
    "pro_month_gross": dict(
        product="pro",
        nickname="Pro Monthly (VAT incl.)",
        interval="month",
        count=1,
        amounts={"eur": 5355},
        tax_behavior="inclusive",
    ),
    # one USD price that also sells in EUR at its own amount (not converted)
    "lite_month": dict(
        product="lite",
        nickname="Lite Monthly",
        interval="month",
        count=1,
        amounts={"usd": 1000},
        currency_options={"eur": 900},
    ),
}

# coupon id -> fields
COUPONS: dict[str, dict[str, Any]] = {
    "FOREVER20": dict(name="20% off forever", percent_off=20.0, duration="forever"),
    "LAUNCH50": dict(name="Launch: 50% off for 3 months", percent_off=50.0, duration="repeating", duration_in_months=3),
    "WELCOME10": dict(
        name="$10 off your first invoice",
        amount_off=1000,
        currency="usd",
        duration="once",
        currency_options={"eur": 900, "gbp": 800},
    ),
    "JPY500OFF": dict(name="¥500 off every month", amount_off=500, currency="jpy", duration="forever"),
    # restricted by applies_to.products to the Pro product: other items of
    # the subscription pay full price
    "PRO50": dict(name="50% off Pro seats", percent_off=50.0, duration="forever", applies_to=("pro",)),
}

# tax rate key -> TaxRate fields (manual tax rates, not Stripe Tax)
TAX_RATES: dict[str, dict[str, Any]] = {
    "DE_VAT_INCL": dict(
        display_name="VAT",
        description="VAT Germany (included in prices)",
        country="DE",
        jurisdiction="DE",
        percentage=19.0,
        inclusive=True,
        tax_type="vat",
    ),
}

UPGRADES = {"starter_month": "pro_month", "starter_year": "pro_year"}
DOWNGRADES = {v: k for k, v in UPGRADES.items()}


def family_for(family: str, currency: str) -> str:
    """The family a customer in ``currency`` can buy (some prices are USD-only)."""
    spec = FAMILIES[family]
    if currency in (spec.get("amounts") or spec.get("tiers") or {}):
        return family
    return "starter_month" if family.startswith("starter") else "pro_month"


def percent_of(amount: int, pct: float) -> int:
    """``pct`` percent of ``amount`` minor units, rounded half up."""
    return int((Decimal(amount) * Decimal(str(pct)) / 100).quantize(Decimal(1), ROUND_HALF_UP))


def coupon_applies_to(coupon: dict, product_id: str) -> bool:
    """Whether ``coupon`` discounts an item of ``product_id`` (``applies_to.products`` restricts it)."""
    applies_to = coupon.get("applies_to")
    return not applies_to or product_id in applies_to["products"]


def discount_off(coupon: dict, amount: int, currency: str) -> int:
    """What ``coupon`` takes off ``amount`` in ``currency``.

    An amount-off coupon applies in its own currency or one of its
    ``currency_options``, and not at all in any other currency.
    """
    if coupon.get("percent_off"):
        return percent_of(amount, coupon["percent_off"])
    if coupon.get("amount_off"):
        if coupon.get("currency") == currency:
            return min(amount, coupon["amount_off"])
        option = (coupon.get("currency_options") or {}).get(currency)
        if option:
            return min(amount, option["amount_off"])
    return 0


def tax_in(amount: int, rate: dict) -> int:
    """The tax on ``amount`` at a TaxRate, rounded half up.

    For an inclusive rate the tax is the part of ``amount`` that is tax
    (``amount × p / (100 + p)``); for an exclusive one it comes on top
    (``amount × p / 100``).
    """
    pct = Decimal(str(rate["percentage"]))
    base = 100 + pct if rate["inclusive"] else Decimal(100)
    return int((Decimal(amount) * pct / base).quantize(Decimal(1), ROUND_HALF_UP))


def in_currency(price: dict, currency: str) -> dict:
    """The price's terms in ``currency``: its own, or its ``currency_options`` entry for that currency."""
    if price["currency"] == currency:
        return price
    option = (price.get("currency_options") or {}).get(currency)
    if option is None:
        raise ValueError(f"price {price['id']} is not sold in {currency}")
    return {**price, **option, "currency": currency}


def price_amount(price: dict, quantity: int, currency: str | None = None) -> int:
    """What a price charges for ``quantity`` in one period, in minor units of ``currency`` (default: the price's).

    Applies ``transform_quantity`` (divide, then round) and tiers the way
    Stripe does: volume prices every unit at the tier the quantity falls in,
    graduated prices each unit at its own tier, and flat amounts are added.
    A multi-currency price charges its ``currency_options`` entry.
    """
    if currency is not None:
        price = in_currency(price, currency)
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


class Catalogue(SimulationPart):
    """The account's products, prices, coupons and tax rates, and the coupons' redemptions."""

    def __init__(self, rec: AccountRecorder):
        super().__init__(rec)
        self.prices: dict[tuple[str, str], dict] = {}  # (family, currency) -> price object
        self.embedded: dict[str, tuple[dict, dict]] = {}  # price id -> (price, plan) shared in items
        self.product_names: dict[str, str] = {}
        self.product_ids: dict[str, str] = {}  # product key -> id
        self.coupons: dict[str, dict] = {}
        self.coupon_uses: dict[str, int] = {}
        self.tax_rates: dict[str, dict] = {}  # tax rate key -> TaxRate object
        self.embedded_tax_rates: dict[str, dict] = {}  # tax rate key -> the copy shared where it is applied

    def price_for(self, family: str, currency: str) -> dict | None:
        """The family's price a ``currency`` subscription uses: one in that currency, or one with a currency option for it."""
        price = self.prices.get((family, currency))
        if price is not None:
            return price
        for (fam, _), candidate in self.prices.items():
            if fam == family and currency in (candidate.get("currency_options") or {}):
                return candidate
        return None

    def build(self) -> None:
        """Create every product, price, coupon and tax rate (with their events), two weeks before the first customer."""
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
            self.product_ids[key] = prod["id"]
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
                self.rec.shared.add(id(embedded))
                self.rec.shared.add(id(plan))
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
            # includable fields (returned only when expanded): present only
            # on the coupons that have them
            if spec.get("applies_to"):
                coupon["applies_to"] = {"products": [self.product_ids[k] for k in spec["applies_to"]]}
            if spec.get("currency_options"):
                coupon["currency_options"] = {cur: {"amount_off": off} for cur, off in spec["currency_options"].items()}
            self.coupons[cid] = coupon
            self.coupon_uses[cid] = 0
            self.out["coupon"].append(coupon)
            self.emit("coupon.created", coupon, created, api=True)

        for i, (key, spec) in enumerate(TAX_RATES.items()):
            created = t0 + 7200 + i * 60
            rate = {
                "id": self.rid("txr"),
                "object": "tax_rate",
                "active": True,
                "country": spec["country"],
                "created": created,
                "description": spec["description"],
                "display_name": spec["display_name"],
                "effective_percentage": None,
                "flat_amount": None,
                "inclusive": spec["inclusive"],
                "jurisdiction": spec["jurisdiction"],
                "jurisdiction_level": "country",
                "livemode": False,
                "metadata": {},
                "percentage": spec["percentage"],
                "rate_type": "percentage",
                "state": None,
                "tax_type": spec["tax_type"],
            }
            self.tax_rates[key] = rate
            embedded = self.snap(rate)  # in subscriptions and invoices, never changed: shared
            self.rec.shared.add(id(embedded))
            self.embedded_tax_rates[key] = embedded
            self.out["tax_rate"].append(rate)
            self.emit("tax_rate.created", rate, created, api=True)

    def _price(self, fam: str, spec: dict, cur: str, product_id: str, created: int) -> dict:
        """The recurring price of family ``fam`` in currency ``cur``."""
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
            "tax_behavior": spec.get("tax_behavior", "exclusive"),
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
        if spec.get("currency_options"):
            # an includable field; when expanded it lists the price's own
            # currency too
            options = {cur: {"unit_amount": unit_amount, "unit_amount_decimal": unit_dec}}
            options.update({c: {"unit_amount": a, "unit_amount_decimal": str(a)} for c, a in spec["currency_options"].items()})
            price["currency_options"] = {
                c: {"custom_unit_amount": None, "tax_behavior": price["tax_behavior"], **o} for c, o in options.items()
            }
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

    def redeem(self, customer_id: str, coupon_id: str, sub_id: str, item_id: str | None, start: int) -> dict:
        """A discount applying ``coupon_id`` to a subscription (or one of its items) from ``start``."""
        coupon = self.coupons[coupon_id]
        self.coupon_uses[coupon_id] += 1
        end = add_months(start, coupon["duration_in_months"]) if coupon["duration"] == "repeating" else None
        return {
            "id": self.rid("di"),
            "object": "discount",
            "checkout_session": None,
            "customer": customer_id,
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

    def record_redemptions(self) -> None:
        """Set each coupon's ``times_redeemed`` to the discounts handed out."""
        for cid, uses in self.coupon_uses.items():
            self.coupons[cid]["times_redeemed"] = uses
