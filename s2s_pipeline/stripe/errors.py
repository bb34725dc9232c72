"""Errors the Stripe side raises with messages a person can act on."""


class StripeConfigError(ValueError):
    """A Stripe setting is missing or malformed; the message names the setting."""


class MalformedStripeObject(ValueError):
    """A Stripe object lacks a field the mirror needs; the message names the object id and field."""
