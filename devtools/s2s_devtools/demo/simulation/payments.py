"""Card payments: PaymentIntents and their charges (approved or declined), one-off purchases outside invoices,
and manual-capture payments (authorized, then captured in part or left to expire).

Manual capture follows API 2025-03-31.basil and later: a partial capture or an
expired authorization creates no Refund and leaves ``amount_refunded`` alone
(Stripe changelog 2025-03-31.basil, "Partially capturing or cancelling payments
no longer creates a Refund"); Stripe sends ``charge.captured`` and
``charge.expired`` for them.
"""

from __future__ import annotations

import string

from s2s_devtools.fakes.stripe.api import random_alnum

from .periods import DAY
from .recording import AccountRecorder, SimulationPart
from .refunds import Refunds
from .scripts import CustomerRun


DECLINES = [
    ("card_declined", "Your card was declined.", "generic_decline"),
    ("card_declined", "Your card has insufficient funds.", "insufficient_funds"),
    ("expired_card", "Your card has expired.", "expired_card"),
    ("incorrect_cvc", "Your card's security code is incorrect.", "incorrect_cvc"),
]


class Payments(SimulationPart):
    """Creates PaymentIntents and charges; a succeeded charge may later be refunded or disputed."""

    def __init__(self, rec: AccountRecorder, refunds: Refunds):
        super().__init__(rec)
        self.refunds = refunds

    def payment_intent(self, ctx: CustomerRun, amount: int, created: int, description: str) -> dict:
        """A PaymentIntent for ``amount`` on the customer's card, awaiting its first charge."""
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

    def charge(self, ctx: CustomerRun, pi: dict, amount: int, when: int, ok: bool, description: str) -> dict:
        """One attempt to collect ``pi``: an approved (``ok``) or declined card charge; updates the PaymentIntent."""
        r = self.rng
        cust = ctx.cust
        brand, last4, exp_m, exp_y, country, fingerprint = ctx.card
        decline = None if ok else r.choice(DECLINES)
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

    def one_off_charge(self, ctx: CustomerRun, when: int, status: str) -> None:
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
            self.refunds.after_success(ctx, charge, when + 1)

    def manual_capture(self, ctx: CustomerRun, when: int, authorized: int, captured: int | None) -> None:
        """An invoice-less card payment authorized for ``authorized`` at ``when`` and captured two days later for
        ``captured`` (at most the authorization), or, when ``captured`` is None, left to expire after 7 days.

        At authorization the charge is ``succeeded`` and ``paid`` but not ``captured`` (``amount_captured`` 0) and
        Stripe sends ``charge.succeeded``. A capture sets ``captured``/``amount_captured`` and sends
        ``charge.captured``; the uncaptured remainder is released, not refunded. An expiry sends
        ``charge.expired`` and cancels the PaymentIntent (``cancellation_reason`` ``expired``); the charge keeps
        ``captured`` false, ``amount_captured`` 0, ``amount_refunded`` 0 and ``refunded`` false.
        """
        saved, ctx.sub = ctx.sub, None
        pi = self.payment_intent(ctx, authorized, when, "Implementation services")
        ctx.sub = saved
        pi["capture_method"] = "manual"
        at = when + 1
        charge = self.charge(ctx, pi, authorized, at, True, "Implementation services")
        # authorized, not captured: no money has moved yet
        expires = at + 7 * DAY  # Stripe's default window for card authorizations
        charge.update(amount_captured=0, balance_transaction=None, captured=False)
        charge["payment_method_details"]["card"]["capture_before"] = expires
        pi.update(amount_capturable=authorized, amount_received=0, status="requires_capture")
        self.emit("charge.succeeded", charge, at, api=True)
        if captured is not None:
            captured_at = at + 2 * DAY
            if captured_at >= self.now:
                return
            assert 0 < captured <= authorized
            charge.update(amount_captured=captured, balance_transaction=self.rid("txn", lead="3"), captured=True)
            pi.update(amount_capturable=0, amount_received=captured, status="succeeded")
            self.emit("charge.captured", charge, captured_at, api=True)
            self.refunds.after_success(ctx, charge, captured_at)
        elif expires < self.now:
            pi.update(amount_capturable=0, canceled_at=expires, cancellation_reason="expired", status="canceled")
            self.emit("charge.expired", charge, expires)
