"""Errors the Stripe side raises with messages a person can act on."""


class StripeConfigError(ValueError):
    """A Stripe setting is missing or malformed; the message names the setting."""


class MalformedStripeObject(ValueError):
    """A Stripe object lacks a field the mirror needs; the message names the object id and field."""


class ExpansionRefused(RuntimeError):
    """Stripe (or the server at STRIPE_API_BASE) refused an ``expand`` the mirror asks for.

    The mirror needs its expansions (price tiers for tiered MRR, discounts'
    coupons), so the read fails instead of going on without them; the message
    names the parameter and the Request-Id.
    """

    def __init__(self, what: str, paths: list[str], request_id: str | None, reason: str) -> None:
        self.what = what
        self.paths = list(paths)
        self.request_id = request_id
        super().__init__(
            f"Stripe refused the expand parameter {self.paths} while reading {what} "
            f"(HTTP 400, Request-Id {request_id or 'not sent'}): {reason.rstrip('.')}. The mirror needs these expansions "
            "(price tiers for tiered MRR, subscription discounts' coupons) and real Stripe accepts them. A "
            "stand-in at STRIPE_API_BASE that cannot expand needs expand_unsupported=True on the stripe "
            "resource (then tiered prices count no MRR and discounts no coupon)."
        )
