"""The business's customers: people and B2B companies in four currencies, their cards, and what each goes on to buy."""

from __future__ import annotations

import string

from s2s_devtools.fakes.stripe.api import random_alnum

from .payments import Payments
from .periods import DAY
from .recording import AccountRecorder, SimulationPart
from .scripts import CustomerRun, Script
from .subscriptions import Subscriptions


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


class Customers(SimulationPart):
    """Signs customers up (with the ``customer.created`` event) and sets their script in motion."""

    def __init__(self, rec: AccountRecorder, subscriptions: Subscriptions, payments: Payments):
        super().__init__(rec)
        self.subscriptions = subscriptions
        self.payments = payments
        self.companies: list[tuple[str, str]] = []

    def build_companies(self, n_customers: int) -> None:
        """The companies B2B customers belong to (about one per eight customers)."""
        n_companies = max(4, n_customers // 8)
        for i in range(n_companies):
            name = _COMPANIES[i % len(_COMPANIES)]
            if i >= len(_COMPANIES):
                name = f"{name} {i // len(_COMPANIES) + 1}"
            self.companies.append(("comp_" + "".join(self.rng.choices(string.digits + string.ascii_uppercase, k=8)), name))

    def customer(self, index: int, s: Script) -> None:
        """Sign up customer number ``index`` and play their script: a subscription and/or one-off purchases."""
        r = self.rng
        created = max(self.start, min(s.created if s.created is not None else self.now - DAY, self.now - 60))
        money = s.currency or r.choices(["usd", "eur", "gbp", "jpy"], [62, 15, 11, 12])[0]
        if money == "jpy":
            first, last = r.choice(_JP_FIRST), r.choice(_JP_LAST)
        else:
            first, last = r.choice(_FIRST), r.choice(_LAST)
        places = [p for p in _COUNTRIES[money] if s.country in (None, p[0])]
        country, city, state, postal = r.choice(places)
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
        pm = self.rid("pm") if has_card or s.one_off or s.manual_captures else None
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
        ctx = CustomerRun(
            cust=cust,
            script=s,
            pm=pm,
            card=(brand, f"{r.randint(0, 9999):04d}", r.randint(1, 12), r.randint(2027, 2031), country, random_alnum(r, 16)),
            succeeded=0,
        )
        t = created + r.randint(60, 900)
        if s.family is not None and t < self.now - 600:
            self.subscriptions.subscription(ctx, t)
        for j, status in enumerate(s.one_off):
            when = t + (j + 1) * r.randint(DAY, 20 * DAY)
            if when < self.now - 60:
                self.payments.one_off_charge(ctx, when, status)
        for j, (authorized, captured) in enumerate(s.manual_captures):
            when = t + (j + 1) * r.randint(DAY, 10 * DAY)
            if when < self.now - 60:
                self.payments.manual_capture(ctx, when, authorized, captured)
