"""A realistic demo Stripe account: a year of a small SaaS business.

``generate_account`` simulates customers signing up over ``months`` months and
everything Stripe Billing then records about them, as API ``2026-10-28.endive``
objects plus the events Stripe would have sent along the way:

- a catalog of products, prices and tax rates: monthly, annual, quarterly and weekly
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
  metadata, customers identified by ``segment_user_id`` or ``user_id``;
- the billing setups of contract v2: an EU customer on a VAT-inclusive price
  (an inclusive TaxRate in ``default_tax_rates``; invoices with
  ``total_taxes`` and ``total_excluding_tax``), manual capture (an
  authorization captured in part, ``charge.captured``, and one that expires,
  ``charge.expired``), a USD price with a EUR ``currency_options`` entry used
  by a EUR subscription, a coupon restricted by ``applies_to.products``, an
  ``amount_off`` coupon with ``currency_options``, and scheduled
  cancellations (``cancel_at_period_end`` and ``cancel_at``) that are
  withdrawn.

The first customers follow a fixed script so every scenario exists in any
account with at least ``SCRIPTED_COUNT`` customers; the rest are drawn from
the seeded RNG. The output is deterministic for a given ``seed`` and ``now``.

Events carry the object as it was at that moment. Nested parts that never
change after they are built (price and plan objects embedded in subscription
items) are shared between snapshots to keep large accounts small: treat the
account as read-only and copy what you want to change.

This module wires the simulation's parts together (``simulation/``: the
catalogue, the customers and their scripts, the subscription lifecycle,
invoices and payments with dunning, refunds and disputes); every part draws
from one seeded RNG in a fixed order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .simulation.catalogue import Catalogue, price_amount
from .simulation.customers import Customers
from .simulation.invoices import Invoices
from .simulation.payments import Payments
from .simulation.periods import UTC
from .simulation.recording import AccountRecorder
from .simulation.refunds import Refunds
from .simulation.scripts import SCRIPTED_COUNT, random_script, scripted
from .simulation.subscription_changes import SubscriptionChanges
from .simulation.subscriptions import Subscriptions


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


def _simulate(*, customers: int, months: int, seed: int, now: int, events_since: int | None) -> DemoAccount:
    """Run the simulation: the catalogue first, then each customer in turn, all drawing from one RNG."""
    rec = AccountRecorder(seed=seed, now=now, months=months, events_since=events_since)
    catalogue = Catalogue(rec)
    refunds = Refunds(rec)
    changes = SubscriptionChanges(rec, catalogue)
    payments = Payments(rec, refunds)
    invoices = Invoices(rec, catalogue, payments, refunds, changes)
    subscriptions = Subscriptions(rec, catalogue, invoices, changes)
    people = Customers(rec, subscriptions, payments)

    catalogue.build()
    people.build_companies(customers)
    scripts = scripted(now)[:customers]
    for i in range(customers):
        script = scripts[i] if i < len(scripts) else random_script(rec.rng, rec.start, now)
        people.customer(i, script)
    catalogue.record_redemptions()
    rec.events.sort(key=lambda e: (e["created"], e["id"]))
    return DemoAccount(objects=rec.objects(), events=rec.events, now=now)


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
    when = int(now if now is not None else dt.datetime.now(UTC).timestamp())
    account = _simulate(customers=customers, months=months, seed=seed, now=when, events_since=events_since)
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
