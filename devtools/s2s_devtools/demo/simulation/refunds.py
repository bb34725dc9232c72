"""Refunds and disputes: what later happens to some succeeded charges."""

from __future__ import annotations

import string
from typing import Any

from .periods import DAY, HOUR
from .recording import SimulationPart
from .scripts import CustomerRun


EVIDENCE_FIELDS = (
    "access_activity_log billing_address cancellation_policy cancellation_policy_disclosure "
    "cancellation_rebuttal customer_communication customer_email_address customer_name "
    "customer_purchase_ip customer_signature duplicate_charge_documentation "
    "duplicate_charge_explanation duplicate_charge_id product_description receipt refund_policy "
    "refund_policy_disclosure refund_refusal_explanation service_date service_documentation "
    "shipping_address shipping_carrier shipping_date shipping_documentation "
    "shipping_tracking_number uncategorized_file uncategorized_text"
).split()


class Refunds(SimulationPart):
    """Refunds (partial and full) and disputes of charges, scripted or at the random customers' rates."""

    def after_success(self, ctx: CustomerRun, charge: dict, when: int) -> None:
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
        """Refund a charge at ``when``, in part (half) or in ``full`` (of the money captured)."""
        captured = charge["amount_captured"]
        amount = captured if kind == "full" else max(1, captured // 2)
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
        """The cardholder disputes a charge as fraudulent; it awaits the business's response."""
        card = charge["payment_method_details"]["card"]
        dispute = {
            "id": self.rid("dp"),
            "object": "dispute",
            "amount": charge["amount_captured"],
            "balance_transactions": [],
            "charge": charge["id"],
            "created": when,
            "currency": charge["currency"],
            "enhanced_eligibility_types": [],
            "evidence": dict.fromkeys(EVIDENCE_FIELDS) | {"enhanced_evidence": {}},
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
