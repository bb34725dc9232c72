"""Stripe objects in the pinned API's shapes (2026-10-28.endive, stripe-python 16.1.0) for trait tests.

Only fields the API returns by default are present: ``charge.refunds`` is
includable (returned only when expanded) and is left out. Money in minor units.
"""

from __future__ import annotations

import itertools

_seq = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_seq):06d}"


def charge(customer: str, amount: int, created: int, *, amount_captured: int | None = None,
           amount_refunded: int = 0, captured: bool = True, status: str = "succeeded", currency: str = "usd",
           disputed: bool = False, id: str | None = None, brand: str = "visa") -> dict:
    """A Charge. Defaults: captured in full. ``captured=False`` is an authorization (nothing captured)."""
    if amount_captured is None:
        amount_captured = amount if captured and status == "succeeded" else 0
    return {
        "id": id or _id("ch"), "object": "charge", "amount": amount, "amount_captured": amount_captured,
        "amount_refunded": amount_refunded, "captured": captured, "paid": status == "succeeded",
        "refunded": amount_refunded == amount, "status": status, "currency": currency, "customer": customer,
        "created": created, "disputed": disputed, "livemode": False, "payment_intent": _id("pi"),
        "failure_code": None, "failure_message": None, "metadata": {},
        "payment_method_details": {"type": "card", "card": {"brand": brand, "last4": "4242", "exp_month": 1,
                                                             "exp_year": 2030, "capture_before": created + 7 * 86400}},
    }


def refund(ch: dict, amount: int, created: int, *, reason: str | None = "requested_by_customer",
           status: str = "succeeded") -> dict:
    """A Refund of ``ch``."""
    return {"id": _id("re"), "object": "refund", "amount": amount, "charge": ch["id"],
            "payment_intent": ch["payment_intent"], "currency": ch["currency"], "created": created,
            "reason": reason, "status": status, "metadata": {}, "balance_transaction": None}


def dispute(ch: dict, amount: int, created: int, *, status: str, reason: str = "fraudulent") -> dict:
    """A Dispute of ``ch`` (Disputes carry no ``customer``: it is the charge's)."""
    return {"id": _id("dp"), "object": "dispute", "amount": amount, "charge": ch["id"],
            "payment_intent": ch["payment_intent"], "currency": ch["currency"], "created": created,
            "status": status, "reason": reason, "is_charge_refundable": False, "balance_transactions": [],
            "livemode": False, "metadata": {}}


def invoice(customer: str, subscription: str | None, created: int, *, amount_paid: int, status: str = "paid",
            paid_at: int | None = None, billing_reason: str = "subscription_cycle", currency: str = "usd") -> dict:
    """An Invoice; its subscription sits under ``parent.subscription_details`` since 2025-03-31.basil."""
    parent = None
    if subscription is not None:
        parent = {"type": "subscription_details", "quote_details": None,
                  "subscription_details": {"subscription": subscription, "metadata": {}}}
    paid = status == "paid"
    return {"id": _id("in"), "object": "invoice", "customer": customer, "parent": parent, "status": status,
            "currency": currency, "amount_due": amount_paid, "amount_paid": amount_paid, "amount_remaining": 0,
            "total": amount_paid, "total_excluding_tax": amount_paid, "subtotal": amount_paid,
            "attempt_count": 1 if paid else 0, "attempted": paid, "billing_reason": billing_reason,
            "collection_method": "charge_automatically", "next_payment_attempt": None, "created": created,
            "period_start": created, "period_end": created, "livemode": False,
            "status_transitions": {"finalized_at": created, "paid_at": (paid_at or created) if paid else None,
                                   "marked_uncollectible_at": None, "voided_at": None}}
