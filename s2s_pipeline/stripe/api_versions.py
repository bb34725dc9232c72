"""What the API version an object snapshot was rendered at says about its shape.

Stripe renders an event's object at the event's ``api_version`` (the
account's, or the webhook endpoint's, version when the event was created),
while the pipeline's own list and retrieve requests always use the pinned
version (``stripe.client.API_VERSION``, 2026-10-28.endive). Rules that read
fields whose meaning changed between versions ask this module, so the
mirror's traits and the track events decide the same way.
"""

from __future__ import annotations

#: From this API version on, partially capturing or cancelling a payment (manually
#: or when the authorization expires) creates no Refund, no longer updates the
#: charge's ``amount_refunded`` and no longer sets ``refunded`` (Stripe changelog
#: 2025-03-31.basil, "Remove Refund from partial capture and payment cancellation
#: flow", https://docs.stripe.com/changelog/basil/2025-03-31/remove-refund-from-partial-capture-and-payment-cancellation-flow;
#: Stripe support, "Changes to balance transaction behavior for partial capture and
#: payment cancellation flows"). Before it, the released money was a Refund and
#: counted in ``amount_refunded``.
RELEASES_STOPPED_CREATING_REFUNDS = "2025-03-31"


def releases_counted_as_refunds(api_version: str | None) -> bool:
    """Whether a snapshot rendered at ``api_version`` counts released authorizations as refunds.

    True for versions before 2025-03-31.basil: the uncaptured remainder of a
    partial capture and a canceled or expired authorization are Refund
    objects and are included in the charge's ``amount_refunded``. False for
    basil and later, and for ``None`` (a snapshot the pipeline fetched itself,
    at the pinned version).
    """
    version = str(api_version or "")
    return bool(version) and version[:10] < RELEASES_STOPPED_CREATING_REFUNDS
