"""Subscription invoices: lines, discounts, tax, finalization and collection with Smart-Retries-like dunning.

Tax comes from manual tax rates (an item's ``tax_rates``, else the
subscription's ``default_tax_rates``): an inclusive rate's tax is part of the
line amount, an exclusive one's is added to the total; either way
``total_excluding_tax`` is the total without tax and ``total_taxes`` lists it.

A failed renewal is retried on ``RETRY_DAYS``; the subscription goes
``past_due`` and the customer delinquent until a retry succeeds, and the
subscription is canceled when the retries run out (Stripe's default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catalogue import Catalogue, coupon_applies_to, discount_off, in_currency, price_amount, tax_in
from .periods import DAY, HOUR
from .payments import Payments
from .recording import AccountRecorder, SimulationPart
from .refunds import Refunds
from .scripts import CustomerRun
from .subscription_changes import SubscriptionChanges

# Smart Retries-like schedule: days after the previous failed attempt.
RETRY_DAYS = (3, 5, 7)


@dataclass
class Billed:
    """What an invoice bills: its lines and the money in them (minor units)."""

    lines: list[dict] = field(default_factory=list)
    discount_amounts: list[dict] = field(default_factory=list)  # per discount, over the invoice
    subtotal: int = 0  # sum of the line amounts (tax included for inclusive tax rates)
    discounted: int = 0  # what discounts took off
    inclusive_tax: int = 0
    exclusive_tax: int = 0
    total_taxes: list[dict] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.subtotal - self.discounted + self.exclusive_tax


def _allocate(amount: int, weights: list[int]) -> list[int]:
    """``amount`` split over ``weights`` proportionally (floors; the remainder to the last share)."""
    whole = sum(weights)
    if not whole:
        return [0] * len(weights)
    shares = [amount * w // whole for w in weights]
    shares[-1] += amount - sum(shares)
    return shares


def _tax_entry(amount: int, taxable: int, rate: dict) -> dict:
    return {
        "amount": amount,
        "tax_behavior": "inclusive" if rate["inclusive"] else "exclusive",
        "tax_rate_details": {"tax_rate": rate["id"]},
        "taxability_reason": "standard_rated",
        "taxable_amount": taxable,
        "type": "tax_rate_details",
    }


class Invoices(SimulationPart):
    """Bills a subscription's period and collects it, including failed payments and their recovery."""

    def __init__(
        self, rec: AccountRecorder, catalogue: Catalogue, payments: Payments, refunds: Refunds, changes: SubscriptionChanges
    ):
        super().__init__(rec)
        self.catalogue = catalogue
        self.payments = payments
        self.refunds = refunds
        self.changes = changes

    def lines(
        self, ctx: CustomerRun, inv_id: str, period: tuple[int, int], usage_period: tuple[int, int] | None
    ) -> Billed:
        """Invoice lines for the subscription's items, with their discounts and tax."""
        sub = ctx.sub
        cur = sub["currency"]
        billed = Billed()
        totals: dict[str, int] = {}
        items: list[dict] = []
        nets: list[int] = []  # each line's amount after discounts, the base of its tax
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
            amount = price_amount(price, qty, cur)
            line_discounts = []
            for d in it["discounts"]:
                coupon = d["source"]["coupon"]
                off = discount_off(coupon, amount, cur) if coupon_applies_to(coupon, price["product"]) else 0
                if off:
                    line_discounts.append({"amount": off, "discount": d["id"]})
                    totals[d["id"]] = totals.get(d["id"], 0) + off
            billed.subtotal += amount
            items.append(it)
            nets.append(amount - sum(x["amount"] for x in line_discounts))
            billed.lines.append(
                {
                    "id": self.rid("il"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": cur,
                    "description": f"{qty} × {price['nickname'] or self.catalogue.product_names[price['product']]}",
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
                        "unit_amount_decimal": in_currency(price, cur)["unit_amount_decimal"],
                    },
                    "quantity": qty,
                    "subtotal": amount,
                    "taxes": [],
                }
            )
        # subscription-level discounts: over the lines of the products they apply to
        for d in sub["discounts"]:
            coupon = d["source"]["coupon"]
            eligible = [i for i, it in enumerate(items) if coupon_applies_to(coupon, it["price"]["product"])]
            base = sum(nets[i] for i in eligible)
            off = min(base, discount_off(coupon, base, cur))
            if off:
                totals[d["id"]] = totals.get(d["id"], 0) + off
                for i, share in zip(eligible, _allocate(off, [nets[i] for i in eligible])):
                    nets[i] -= share
        billed.discount_amounts = [{"amount": v, "discount": k} for k, v in totals.items()]
        billed.discounted = sum(totals.values())
        self._tax(billed, items, nets, sub)
        return billed

    @staticmethod
    def _tax(billed: Billed, items: list[dict], nets: list[int], sub: dict) -> None:
        """Tax each line at its item's tax rates, else the subscription's default ones, and add it up."""
        by_rate: dict[str, dict] = {}
        for line, it, net in zip(billed.lines, items, nets):
            for rate in it.get("tax_rates") or sub.get("default_tax_rates") or []:
                tax = tax_in(net, rate)
                taxable = net - tax if rate["inclusive"] else net
                line["taxes"].append(_tax_entry(tax, taxable, rate))
                if rate["inclusive"]:
                    billed.inclusive_tax += tax
                else:
                    billed.exclusive_tax += tax
                entry = by_rate.setdefault(rate["id"], _tax_entry(0, 0, rate))
                entry["amount"] += tax
                entry["taxable_amount"] += taxable
        billed.total_taxes = list(by_rate.values())

    def invoice_flow(
        self,
        ctx: CustomerRun,
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
            # the $0 trial invoice still has a line for the trial period
            trial_lines = self.lines(ctx, inv_id, (sub["trial_start"], sub["trial_end"]), None).lines
            for line in trial_lines:
                line.update(
                    amount=0,
                    subtotal=0,
                    description=f"Trial period for {line['description'].split(' × ')[1]}",
                    taxes=[],
                )
            billed = Billed(lines=trial_lines)
        else:
            billed = self.lines(ctx, inv_id, period, usage_period)
        lines, discount_amounts, subtotal, total = billed.lines, billed.discount_amounts, billed.subtotal, billed.total
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
            "default_tax_rates": [self.snap(rate) for rate in sub["default_tax_rates"]],
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
            "subtotal_excluding_tax": subtotal - billed.inclusive_tax,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": discount_amounts,
            "total_excluding_tax": total - billed.inclusive_tax - billed.exclusive_tax,
            "total_pretax_credit_amounts": [],
            "total_taxes": billed.total_taxes,
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

        pi = self.payments.payment_intent(ctx, total, t_fin, "Subscription creation" if immediate else "Subscription update")
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
            charge = self.payments.charge(ctx, pi, total, when, ok, pi["description"])
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
                self._set_standing(ctx, when, failing=False)
                self.changes.drop_once_discounts(ctx, when + 4)
                self.refunds.after_success(ctx, charge, when)
                return "paid"
            last = n == len(attempt_times)
            inv["next_payment_attempt"] = None if last else attempt_times[n]
            inv["payments"] = dict(inv["payments"], data=[self.snap(inpay)])
            self.emit("charge.failed", charge, when)
            self.emit("invoice.payment_failed", inv, when + 1)
            self._set_standing(ctx, when, failing=True)
            if last:
                # retries exhausted: the default setting cancels the subscription
                # and leaves the invoice open (past due)
                self.changes.cancel(ctx, when + 60, when + 60, "payment_failed", api=False)
                return "exhausted"
        return "pending"  # pragma: no cover - loop always returns

    def _set_standing(self, ctx: CustomerRun, when: int, *, failing: bool) -> None:
        """After a payment attempt at ``when``: a failure makes an active subscription ``past_due`` and the
        customer delinquent; a success puts both back in good standing."""
        sub, cust = ctx.sub, ctx.cust
        before, after = ("active", "past_due") if failing else ("past_due", "active")
        if sub["status"] == before:
            sub["status"] = after
            self.emit("customer.subscription.updated", sub, when + 2, {"status": before})
        if cust["delinquent"] != failing:
            cust["delinquent"] = failing
            self.emit("customer.updated", cust, when + 3, {"delinquent": not failing})

    @staticmethod
    def _mark_paid(inv: dict, when: int) -> None:
        """The invoice is paid at ``when``: no more attempts."""
        inv["status"] = "paid"
        inv["next_payment_attempt"] = None
        inv["status_transitions"] = dict(inv["status_transitions"], paid_at=when)
