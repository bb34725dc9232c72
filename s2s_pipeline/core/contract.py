"""The names of the public contract (shared/CONTRACT.md), defined once.

Segment destinations, audiences and users' automation key on these strings, so
every module imports them from here instead of spelling them again: the
identify traits, the B2B group traits, the spend tiers and the track events.
"""

from __future__ import annotations

#: Identify traits, in the order the contract documents them.
IDENTIFY_TRAITS: tuple[str, ...] = (
    "email", "name", "stripe_customer_id", "currency", "lifetime_value", "mrr", "spend_tier", "refund_rate",
    "payment_count", "first_payment_at", "last_payment_at", "payment_frequency_days", "paying_customer",
    "trial_converted_at", "plan", "billing_interval", "subscription_status",
    "cancel_at_period_end", "next_billing_date", "trial_end_date", "payment_delinquent", "payment_method_type",
    "card_brand",
)

#: Traits of the B2B group call, as sent (``group(groupId, traits={name, plan, mrr})``).
GROUP_TRAITS: tuple[str, ...] = ("name", "plan", "mrr")

#: Spend tiers from the lowest to the highest (``none`` is a lifetime value of 0).
TIER_NAMES: tuple[str, ...] = ("none", "low", "medium", "high", "vip")

# -- track events -----------------------------------------------------------------------------
TRIAL_STARTED = "Trial Started"
SUBSCRIPTION_STARTED = "Subscription Started"
TRIAL_CONVERTED = "Trial Converted"
SUBSCRIPTION_UPGRADED = "Subscription Upgraded"
SUBSCRIPTION_DOWNGRADED = "Subscription Downgraded"
SUBSCRIPTION_CANCELED = "Subscription Canceled"
SUBSCRIPTION_REACTIVATED = "Subscription Reactivated"
SUBSCRIPTION_ENDED = "Subscription Ended"
PAYMENT_FAILED = "Payment Failed"
ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"
DISPUTE_CREATED = "Dispute Created"

#: Every track event the pipeline sends.
TRACK_EVENTS: tuple[str, ...] = (
    TRIAL_STARTED, SUBSCRIPTION_STARTED, TRIAL_CONVERTED, SUBSCRIPTION_UPGRADED, SUBSCRIPTION_DOWNGRADED,
    SUBSCRIPTION_CANCELED, SUBSCRIPTION_REACTIVATED, SUBSCRIPTION_ENDED, PAYMENT_FAILED, ORDER_COMPLETED,
    ORDER_REFUNDED, DISPUTE_CREATED,
)
