"""Is a delivery really from Stripe, recent, and a Stripe event? stripe-python's signature check plus a shape check.

Stripe signs ``"{t}.{body}"`` with the endpoint's secret (HMAC-SHA256) and
sends ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=...]`` (two ``v1`` while
a secret is being rolled). A signature older than the tolerance (Stripe's
default, 300 s) is refused, so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import json

import stripe

#: Stripe's recommended (and stripe-python's default) signature age limit, in seconds.
DEFAULT_TOLERANCE_S = stripe.Webhook.DEFAULT_TOLERANCE

#: Longest event id and type the inbox stores (Stripe's are far shorter).
_MAX_ID, _MAX_TYPE = 255, 128


class RejectedDelivery(ValueError):
    """A delivery refused with 400; ``reason`` is safe to log (it never holds the body or the secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verified_event(body: bytes, signature_header: str | None, secret: str,
                   tolerance_s: int = DEFAULT_TOLERANCE_S) -> dict:
    """The Stripe event a delivery carries, once its signature and age check out.

    Raises ``RejectedDelivery`` for a missing, malformed, wrong or stale
    signature, a body that is not UTF-8 JSON, or JSON that is not a Stripe
    event (``object: event`` with an ``evt_`` id, a type and a created time).
    """
    if not signature_header:
        raise RejectedDelivery("no Stripe-Signature header")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedDelivery("body is not UTF-8") from None
    try:
        stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance_s)
    except stripe.SignatureVerificationError as exc:
        # stripe-python's messages name the failure (mismatch, tolerance, no v1) and never the secret
        raise RejectedDelivery(f"signature refused: {exc.user_message or 'invalid'}") from None
    try:
        event = json.loads(text)
    except ValueError:
        raise RejectedDelivery("signed body is not JSON") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise RejectedDelivery("signed body is not a Stripe event (object != event)")
    event_id, kind, created = event.get("id"), event.get("type"), event.get("created")
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or len(event_id) > _MAX_ID:
        raise RejectedDelivery("signed event has no valid evt_ id")
    if not isinstance(kind, str) or not kind or len(kind) > _MAX_TYPE:
        raise RejectedDelivery("signed event has no valid type")
    if not isinstance(created, int) or isinstance(created, bool):
        raise RejectedDelivery("signed event has no created time")
    return event
