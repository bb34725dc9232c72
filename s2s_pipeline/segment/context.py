"""What the event mapping may ask about Stripe: answered from the mirror, and the API where the mirror cannot."""

from __future__ import annotations

import logging
from functools import lru_cache

import stripe

from s2s_pipeline.core.ids import id_of
from s2s_pipeline.segment.event_mrr import subscription_figures
from s2s_pipeline.store.mirror_reads import MirrorReads
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.mrr import TAX_EVIDENCE_STATUSES

log = logging.getLogger(__name__)


class MirrorContext:
    """``events.MappingContext`` over the mirror (and, when given, the Stripe API)."""

    def __init__(self, mirror: MirrorReads, reader: StripeReader | None, config: TraitsConfig, now: int) -> None:
        self.mirror = mirror
        self.reader = reader
        self.config = config
        self.now = now
        self._row = lru_cache(maxsize=4096)(mirror.object_row)
        # One pass maps many events of one customer / subscription: read each once (as tuples: not shared dicts).
        self._customer_discounts = lru_cache(maxsize=4096)(lambda c: tuple(mirror.customer_level_discounts(c)))
        self._invoices = lru_cache(maxsize=4096)(
            lambda s: tuple(mirror.invoices_of_subscription(s, TAX_EVIDENCE_STATUSES)))

    # -- mirror ---------------------------------------------------------------------------

    def price(self, price_id: str) -> dict | None:
        return self._row("price", price_id)

    def product_name(self, product_id: str) -> str | None:
        row = self._row("product", product_id)
        return row["name"] if row else None

    def coupon(self, coupon_id: str) -> dict | None:
        return self._row("coupon", coupon_id)

    def discount(self, discount_id: str) -> dict | None:
        return self._row("discount", discount_id)

    def customer_discounts(self, customer_id: str) -> list[dict]:
        return [dict(row) for row in self._customer_discounts(customer_id)]

    def subscription_invoices(self, subscription_id: str) -> list[dict]:
        return [dict(row) for row in self._invoices(subscription_id)]

    def stored_subscription_mrr(self, subscription_id: str):
        row = self._row("subscription", subscription_id)
        if not row or not row.get("raw"):
            return None
        figures = subscription_figures(row["raw"], self, self.config, self.now)
        return figures.mrr_minor, figures.currency, figures.plan

    def refunds_of_charge(self, charge_id: str) -> list[dict]:
        return self.mirror.refunds_of_charge(charge_id)

    def customer_of_charge(self, charge_id: str) -> str | None:
        row = self._row("charge", charge_id)
        return row["customer"] if row else None

    def charge(self, charge_id: str) -> dict | None:
        return self._row("charge", charge_id)

    # -- Stripe API (invoice payments are not mirrored) -----------------------------------

    def _enrichment(self, path: str, params: dict | None = None) -> dict | None:
        """A look-up that only adds detail to a call already decided (the failure code of a Payment Failed):
        on a Stripe error the call goes out without it. Never used to decide WHETHER a call is made."""
        if self.reader is None:
            return None
        try:
            return self.reader.get(path, params)
        except (stripe.StripeError, ConnectionError) as exc:
            log.warning("Stripe look-up %s failed (%s); the event is mapped without it", path, type(exc).__name__)
            return None

    def invoice_payment_error(self, invoice: dict) -> dict | None:
        """The failed attempt's error: the invoice payment's PaymentIntent ``last_payment_error``, else its charge.

        Tries, in order: the invoice's payments (expanded), the invoice
        payments list, and older API shapes (``invoice.payment_intent`` /
        ``invoice.charge``); charges come from the mirror or the API.
        """
        intents: list = []
        charges: list = [invoice.get("charge")]
        full = self._enrichment(f"/v1/invoices/{invoice['id']}", {"expand": ["payments.data.payment.payment_intent"]})
        payments = ((full or {}).get("payments") or {}).get("data") or []
        if not payments:
            listed = self._enrichment("/v1/invoice_payments", {"invoice": invoice["id"], "limit": 10})
            payments = [p for p in (listed or {}).get("data") or [] if p.get("invoice") == invoice["id"]]
        for payment in payments:
            target = payment.get("payment") or {}
            intents.append(target.get("payment_intent"))
            charges.append(target.get("charge"))
        intents += [invoice.get("payment_intent"), (full or {}).get("payment_intent")]
        for target in intents:
            if not target:
                continue
            intent = target if isinstance(target, dict) else self._enrichment(f"/v1/payment_intents/{target}")
            error = (intent or {}).get("last_payment_error")
            if error:
                return {"code": error.get("code") or error.get("decline_code"), "message": error.get("message")}
            charges.append((intent or {}).get("latest_charge"))
        for charge_ref in charges:
            charge_id = id_of(charge_ref)
            if not charge_id:
                continue
            charge = self._row("charge", charge_id) or self._enrichment(f"/v1/charges/{charge_id}")
            if charge and charge.get("failure_code"):
                return {"code": charge["failure_code"], "message": charge.get("failure_message")}
        return None

    def charge_belongs_to_invoice(self, charge: dict) -> bool:
        """Charges of the pinned API have no ``invoice``: ask which invoice payment used its PaymentIntent.

        This decides whether the charge's ``charge.failed`` is sent (an invoice's is reported by its
        ``invoice.payment_failed``), so a Stripe error is raised, never guessed around: the event's
        mapping fails and is retried by the next run. The mirror answers only when there is no
        ``/v1/invoice_payments`` to ask (404: a Stripe-compatible server without it, or no API at all);
        the mirror cannot see an invoice created since the last sync, so a guess could send twice.
        """
        intent = id_of(charge.get("payment_intent"))
        if not intent:
            return False  # a bare charge (no PaymentIntent) never pays an invoice
        found = None
        if self.reader is not None:
            # raises on a Stripe error (after the reader's retries); None only for a 404
            found = self.reader.get("/v1/invoice_payments",
                                    {"payment": {"type": "payment_intent", "payment_intent": intent}, "limit": 100})
        if found is not None:
            # A server that ignored the filter lists other payments: match them here.
            return any(id_of((p.get("payment") or {}).get("payment_intent")) == intent for p in found.get("data") or [])
        return self._unpaid_invoice_matches(charge)

    def _unpaid_invoice_matches(self, charge: dict) -> bool:
        """When Stripe cannot say: does the customer have an unpaid invoice this charge was an attempt at?

        Same customer and currency, the amount still due equal to the charge,
        created no later than the charge.
        """
        customer = id_of(charge.get("customer"))
        if not customer:
            return False
        # A minute of slack: the invoice and its first attempt are often stamped apart.
        return self.mirror.has_unpaid_invoice_for(customer, charge.get("currency"), charge.get("amount"),
                                                  created_by=int(charge.get("created") or self.now) + 60)
