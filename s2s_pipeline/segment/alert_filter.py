"""The failed-payment sensor's filter: ``core.alert_rule`` answered from the mirror and the Stripe API."""

from __future__ import annotations

import logging
from collections.abc import Callable

from s2s_pipeline.core.alert_rule import is_failed_payment_alert
from s2s_pipeline.segment.mapping_context import MappingContext

log = logging.getLogger(__name__)


def alert_filter(context: MappingContext) -> Callable[[dict], bool]:
    """``alerts_on(event)`` for ``poll_failed_payments``: True when the event yields a Payment Failed alert.

    When Stripe cannot be asked whether a charge pays an invoice (an outage),
    the event is kept: its alert run asks again with retries, and a run that
    turns out to send nothing costs less than an alert never sent.
    """

    def pays_invoice(charge: dict) -> bool:
        try:
            return context.charge_belongs_to_invoice(charge)
        except Exception as exc:  # noqa: BLE001 - fail open, see above
            log.warning("could not tell whether charge %s pays an invoice (%s); launching its alert run",
                        charge.get("id"), type(exc).__name__)
            return False

    return lambda event: is_failed_payment_alert(event, pays_invoice)
