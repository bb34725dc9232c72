"""The subscription lifecycle: creation (with or without a trial), then period after period until it ends or ``now``.

Each period may bring the customer's planned actions (plan or seat changes,
paused collection, cancellation) at a moment late enough that payment retries
are over, then the renewal and its invoice.
"""

from __future__ import annotations

from typing import Any

from .catalogue import FAMILIES, Catalogue
from .invoices import Invoices
from .periods import DAY, HOUR, Cycle
from .recording import AccountRecorder, SimulationPart
from .scripts import CustomerRun
from .subscription_changes import SubscriptionChanges


def _hits(planned: int, k: int, is_last: bool) -> bool:
    """Whether an action planned for period ``planned`` (-1: the current one) happens in period ``k``."""
    return planned == k or (planned == -1 and is_last)


class Subscriptions(SimulationPart):
    """Creates a customer's subscription and lives through its periods."""

    def __init__(self, rec: AccountRecorder, catalogue: Catalogue, invoices: Invoices, changes: SubscriptionChanges):
        super().__init__(rec)
        self.catalogue = catalogue
        self.invoices = invoices
        self.changes = changes

    def item(self, sub_id: str, price: dict, quantity: int | None, created: int, start: int, end: int) -> dict:
        """A subscription item for ``price`` billing ``start``..``end`` (metered items have no ``quantity``)."""
        embedded, plan = self.catalogue.embedded[price["id"]]
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

    def subscription(self, ctx: CustomerRun, t0: int) -> None:
        """Start the customer's subscription at ``t0`` and simulate it period by period until it ends or ``now``."""
        r = self.rng
        s = ctx.script
        cur = s.currency
        assert cur is not None and s.family is not None
        spec = FAMILIES[s.family]
        price = self.catalogue.price_for(s.family, cur)
        assert price is not None, f"no {s.family} price sells in {cur}"
        sub_id = self.rid("sub")
        trial_end = t0 + 14 * DAY if s.trial else None
        cycle = Cycle(trial_end or t0, spec["interval"], spec["count"])
        period_start = t0
        period_end = trial_end or cycle.boundary(1)
        k_next = 1 if trial_end is None else 0  # index of period_end in cycle once billing starts

        items = [self.item(sub_id, price, s.quantity, t0, period_start, period_end)]
        for add_on in s.add_ons:
            items.append(self.item(sub_id, self.catalogue.prices[(add_on, cur)], 1, t0, period_start, period_end))
        if s.metered and (("api_metered", cur) in self.catalogue.prices):
            items.append(self.item(sub_id, self.catalogue.prices[("api_metered", cur)], None, t0, period_start, period_end))
        discounts: list[dict] = []
        if s.coupon:
            if s.item_coupon:
                items[0]["discounts"] = [self.catalogue.redeem(ctx.cust["id"], s.coupon, sub_id, items[0]["id"], t0)]
            else:
                discounts = [self.catalogue.redeem(ctx.cust["id"], s.coupon, sub_id, None, t0)]
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
            "default_tax_rates": [self.catalogue.embedded_tax_rates[s.tax_rate]] if s.tax_rate else [],
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
        outcome = self.invoices.invoice_flow(ctx, inv_id, t0 + 1, "subscription_create", (t0, t0), None, "never")
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
                    self.changes.expire_discounts(ctx, mid)
                if s.change and _hits(s.change[1], k, is_last) and mid is not None:
                    self.changes.change_items(ctx, s.change[0], mid)
                if s.pause_collection_at is not None and s.pause_collection_at == k and mid is not None:
                    before = {"pause_collection": None}
                    sub["pause_collection"] = {"behavior": "void", "resumes_at": None}
                    self.emit("customer.subscription.updated", sub, mid + 7, before, api=True)
                if s.withdrawn_cancel and _hits(s.withdrawn_cancel[1], k, is_last) and mid is not None:
                    when = mid + 13
                    self.changes.schedule_cancellation(ctx, s.withdrawn_cancel[0], when, period_end)
                    # the customer changes their mind before the period ends
                    self.changes.withdraw_cancellation(ctx, max(when + 1, when + min(DAY, (min(period_end, self.now) - when) // 2)))
                if s.cancel and _hits(s.cancel[1], k, is_last) and mid is not None:
                    when = mid + 13
                    if s.cancel[0] == "immediate":
                        self.changes.cancel(ctx, when, when, "cancellation_requested", api=True)
                        return
                    self.changes.schedule_cancellation(ctx, s.cancel[0], when, period_end)
            self.changes.expire_discounts(ctx, min(period_end, self.now))
            if is_last:
                return
            t = period_end
            if sub["cancel_at_period_end"] or (sub["cancel_at"] is not None and sub["cancel_at"] <= t):
                self.changes.cancel(ctx, t, sub["canceled_at"], sub["cancellation_details"]["reason"], api=False)
                return
            k += 1
            k_next += 1
            new_start, new_end = t, cycle.boundary(k_next)
            old_items = self.snap(sub["items"])
            old_invoice = sub["latest_invoice"]
            was_trialing = sub["status"] == "trialing"
            if was_trialing and s.trial in ("cancel", "pause"):
                if s.trial == "cancel":
                    self.changes.cancel(ctx, t, t, None, api=False)
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
            outcome = self.invoices.invoice_flow(
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
