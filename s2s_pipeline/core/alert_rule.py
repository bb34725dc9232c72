"""Which Stripe events are failed payments worth an alert: the one rule the sensor and the mapping share.

The contract sends ``Payment Failed`` for every ``invoice.payment_failed`` and
for a ``charge.failed`` only when the charge belongs to no invoice (an
invoice's declined charge is reported by its ``invoice.payment_failed``, so
alerting on both would tell the customer's CSM twice). The sensor applies this
rule before it launches a run and the mapping applies it before it builds the
call, so the sensor never launches a run that would send nothing.
"""

from __future__ import annotations

from collections.abc import Callable

#: Stripe event types that can mean a customer's payment failed.
FAILED_PAYMENT_EVENT_TYPES: tuple[str, ...] = ("invoice.payment_failed", "charge.failed")


def charge_pays_invoice(charge: dict, lookup: Callable[[dict], bool]) -> bool:
    """Whether a charge was an attempt at paying an invoice.

    API versions before 2025-03-31.basil put ``invoice`` on the charge; the
    pinned version does not, so ``lookup`` asks Stripe (or the mirror).
    """
    if "invoice" in charge:
        return charge["invoice"] is not None
    return lookup(charge)


def is_failed_payment_alert(event: dict, charge_lookup: Callable[[dict], bool]) -> bool:
    """True for a Stripe event that yields a ``Payment Failed`` alert.

    ``charge_lookup(charge)`` answers whether a charge pays an invoice, for
    charges that do not say it themselves.
    """
    kind = event.get("type")
    if kind == "invoice.payment_failed":
        return True
    if kind == "charge.failed":
        charge = (event.get("data") or {}).get("object")
        return isinstance(charge, dict) and not charge_pays_invoice(charge, charge_lookup)
    return False
