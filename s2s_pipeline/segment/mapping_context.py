"""What the event mapping may ask its caller: the mirror and the Stripe API.

A Stripe event's payload does not say everything a track call needs (the
tiers and ``currency_options`` of a price, the coupon behind a discount named
by id and its ``applies_to``, the customer's own discounts, the invoices that
show Stripe Tax's share, the failed attempt of an invoice, the refunds of a
charge and whether it captured money). The
mapping asks for those through this protocol; ``segment.context.MirrorContext``
answers from the mirror and the API, and tests answer from plain dicts.
"""

from __future__ import annotations

from typing import Protocol


class MappingContext(Protocol):
    """What the mapping may ask the caller (the mirror / the Stripe API)."""

    def price(self, price_id: str) -> dict | None:
        """Mirror price row (``store.schema`` columns), with the includable ``tiers`` and ``currency_options``."""

    def product_name(self, product_id: str) -> str | None:
        """Name of a product."""

    def coupon(self, coupon_id: str) -> dict | None:
        """Mirror coupon row (``percent_off``, ``amount_off``, ``currency``, ``duration``, the includable
        ``applies_to_products`` and ``currency_options``; a deleted coupon keeps its terms)."""

    def discount(self, discount_id: str) -> dict | None:
        """Mirror discount row (``coupon``, ``start``, ``end``) of a discount the payload names only by id.

        Optional: a context without this method leaves collapsed discounts
        unpriced (and "before" states with them fall back to the stored MRR).
        It should also know discounts this very event removed.
        """

    def customer_discounts(self, customer_id: str) -> list[dict]:
        """Mirror discount rows on the customer itself (``subscription`` and ``subscription_item`` null).

        Optional: Stripe applies them to every subscription of the customer
        without a discount of its own, and so does the ``mrr`` trait; a
        context without this method leaves them out of event MRR.
        """

    def subscription_invoices(self, subscription_id: str) -> list[dict]:
        """Mirror invoice rows of the subscription that can show Stripe Tax's share (``paid`` or ``open``).

        Optional: with Stripe Tax and a tax-inclusive price, the ``mrr`` trait
        takes the share that is not tax from the newest of them; a context
        without this method leaves the amount as it is.
        """

    def stored_subscription_mrr(self, subscription_id: str) -> tuple[int, str | None, str | None] | None:
        """(MRR minor units, currency, plan) of the mirror's subscription BEFORE this event, or None."""

    def invoice_payment_error(self, invoice: dict) -> dict | None:
        """``{"code", "message"}`` of the invoice's failed attempt, None if unknown."""

    def charge_belongs_to_invoice(self, charge: dict) -> bool:
        """Whether a charge pays an invoice (current API charges have no ``invoice`` field)."""

    def refunds_of_charge(self, charge_id: str) -> list[dict]:
        """Mirror refund rows of the charge (``id``, ``amount``, ``currency``, ``reason``, ``created``, ``status``)."""

    def customer_of_charge(self, charge_id: str) -> str | None:
        """The Stripe customer id of a charge (for refunds and disputes), None if unknown."""

    def charge(self, charge_id: str) -> dict | None:
        """Mirror charge row (``captured``, ``amount``, ``amount_captured``, ``customer`` ...), None if unknown.

        Optional: tells a refund of captured money from a released
        authorization; a context without it leaves only the refund's own
        ``reason`` to tell.
        """

