"""The state store's tables: the Stripe mirror, the event ledger and sync cursors.

One row per Stripe object. Typed columns hold what traits and events need;
``raw`` keeps the whole snapshot (JSON) so new traits never need a re-sync.

Conventions (every mirror table):
- money: integer minor units of the row's ``currency`` (JPY has no minor unit);
- times: integer Unix seconds, UTC (Stripe's own representation);
- ``version_ts``: Unix seconds of the snapshot this row holds (the event's
  ``created`` for change-feed snapshots, the request start for listed objects).
  A snapshot is applied only when it is at least as new as the stored one.
- ``deleted``: the object was deleted in Stripe (rows are kept, flagged).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from s2s_pipeline.core.contract import GROUP_TRAITS, IDENTIFY_TRAITS

metadata = MetaData()

SCHEMA_VERSION = 1


def _versioned(name: str, *columns: Column, indexes: tuple[str | tuple[str, ...], ...] = ()) -> Table:
    """A mirror table: id, the given columns, then version/deleted/raw bookkeeping. ``indexes``: a column
    name, or a tuple of them for an index on several columns (``ix_<table>_<col>_<col>``)."""
    table = Table(
        name,
        metadata,
        Column("id", String(255), primary_key=True),
        *columns,
        Column("livemode", Boolean, nullable=True),
        Column("version_ts", BigInteger, nullable=False),
        Column("deleted", Boolean, nullable=False, default=False),
        Column("raw", JSON(none_as_null=True), nullable=True),
    )
    for cols in indexes:
        cols = (cols,) if isinstance(cols, str) else cols
        Index(f"ix_{name}_{'_'.join(cols)}", *(table.c[c] for c in cols))
    return table


#: The customer's objects are looked up by (customer, version_ts): the rows of a customer, and the
#: customer's last change (the identify timestamp), which the (customer, version_ts) index answers from
#: the index alone, without reading the rows (3x faster at 1M customers). It replaces the index on
#: customer alone, which ``store.migrations`` drops from existing stores once the new one is built.
BY_CUSTOMER = ("customer", "version_ts")
#: Charges by creation time carry their customer: the nightly look-up of the customers whose payment
#: left the 365-day frequency window (a day of charges, scattered over the table) is answered from the
#: index alone instead of one heap page per charge (at 1M customers: 9,000 charges, 175-240 -> 7 ms of
#: the server). Replaces the index on ``created`` alone, whose range scans it serves as well.
BY_CREATED = ("created", "customer")
#: Indexes the schema no longer declares, which ``store.migrations`` drops from existing stores (they
#: hold no data): those replaced by a wider one (dropped once it is built), and the delivery audit's
#: index on ``message_id``, which no query of the pipeline used and every acknowledged call paid for
#: (a random B-tree insertion per message: about 0.3 s of the bookkeeping of 16,734 calls at 1M
#: customers; an audit look-up by messageId reads the table, docs/operations.md).
RETIRED_INDEXES = frozenset({"ix_stripe_subscriptions_customer", "ix_stripe_invoices_customer",
                             "ix_stripe_charges_customer", "ix_stripe_charges_created",
                             "ix_segment_delivery_audit_message_id"})


customers = _versioned(
    "stripe_customers",
    Column("email", String(512)),
    Column("name", String(512)),
    Column("currency", String(3)),
    Column("created", BigInteger),
    Column("delinquent", Boolean),
    Column("metadata", JSON(none_as_null=True)),
    Column("default_payment_method", String(255)),
    indexes=("created",),
)

products = _versioned(
    "stripe_products",
    Column("name", String(512)),
    Column("active", Boolean),
    Column("created", BigInteger),
    Column("metadata", JSON(none_as_null=True)),
)

prices = _versioned(
    "stripe_prices",
    Column("product", String(255)),
    Column("currency", String(3)),
    Column("nickname", String(512)),
    Column("active", Boolean),
    Column("type", String(32)),  # recurring | one_time
    Column("billing_scheme", String(32)),  # per_unit | tiered
    Column("unit_amount", BigInteger),
    # Decimal text in minor units (Stripe allows up to 12 decimals): exact.
    Column("unit_amount_decimal", String(64)),
    Column("tiers_mode", String(32)),  # volume | graduated
    # [{"up_to": int|None, "unit_amount_decimal": str|None, "flat_amount_decimal": str|None}]
    # None when the tiers have not been fetched (Stripe omits them unless expanded).
    Column("tiers", JSON(none_as_null=True)),
    Column("recurring_interval", String(16)),  # day | week | month | year
    Column("recurring_interval_count", Integer),
    Column("recurring_usage_type", String(16)),  # licensed | metered
    Column("recurring_meter", String(255)),
    Column("transform_divide_by", BigInteger),
    Column("transform_round", String(8)),  # up | down
    Column("tax_behavior", String(16)),
    Column("created", BigInteger),
    # Includable (returned only when expanded): {currency: {"unit_amount_decimal": str|None,
    # "tiers": [...]|None, "tax_behavior": str|None}}; None when never fetched expanded.
    Column("currency_options", JSON(none_as_null=True)),
    indexes=("product",),
)

coupons = _versioned(
    "stripe_coupons",
    Column("name", String(512)),
    Column("percent_off", Float),
    Column("amount_off", BigInteger),
    Column("currency", String(3)),
    Column("duration", String(16)),  # forever | once | repeating
    Column("duration_in_months", Integer),
    Column("valid", Boolean),
    Column("created", BigInteger),
    # Includable fields (returned only when expanded): the products the coupon is
    # restricted to (None: every product) and {currency: {"amount_off": int}}.
    Column("applies_to_products", JSON(none_as_null=True)),
    Column("currency_options", JSON(none_as_null=True)),
)

subscriptions = _versioned(
    "stripe_subscriptions",
    Column("customer", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("currency", String(3)),
    Column("created", BigInteger),
    Column("start_date", BigInteger),
    Column("cancel_at_period_end", Boolean),
    Column("cancel_at", BigInteger),
    Column("canceled_at", BigInteger),
    Column("ended_at", BigInteger),
    Column("trial_start", BigInteger),
    Column("trial_end", BigInteger),
    Column("pause_collection_behavior", String(32)),
    Column("latest_invoice", String(255)),
    Column("collection_method", String(32)),
    Column("default_payment_method", String(255)),
    Column("metadata", JSON(none_as_null=True)),
    Column("automatic_tax_enabled", Boolean),  # Stripe Tax computes the tax
    # Manual tax rates: [{"id", "percentage", "inclusive", "rate_type"}], None without any.
    Column("default_tax_rates", JSON(none_as_null=True)),
    indexes=(BY_CUSTOMER, "created"),
)

# Children of a subscription snapshot: replaced whenever the parent row is.
subscription_items = Table(
    "stripe_subscription_items",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("subscription", String(255), nullable=False, index=True),
    Column("customer", String(255), nullable=False),
    Column("price", String(255)),
    Column("quantity", BigInteger),
    Column("current_period_start", BigInteger),
    Column("current_period_end", BigInteger),
    Column("created", BigInteger),
    # The item's own manual tax rates (override the subscription's default_tax_rates).
    Column("tax_rates", JSON(none_as_null=True)),
)

# Discounts on a subscription (subscription_item null) or on one of its items;
# customer-level discounts have subscription null. Replaced with their parent.
discounts = Table(
    "stripe_discounts",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("customer", String(255), index=True),
    Column("subscription", String(255), index=True),
    Column("subscription_item", String(255)),
    Column("coupon", String(255)),
    Column("start", BigInteger),
    Column("end", BigInteger),
)

invoices = _versioned(
    "stripe_invoices",
    Column("customer", String(255)),
    Column("subscription", String(255)),  # parent.subscription_details.subscription
    Column("status", String(32)),  # draft | open | paid | uncollectible | void
    Column("currency", String(3)),
    Column("amount_due", BigInteger),
    Column("amount_paid", BigInteger),
    Column("amount_remaining", BigInteger),
    Column("total", BigInteger),
    Column("total_excluding_tax", BigInteger),
    Column("subtotal", BigInteger),
    Column("attempt_count", Integer),
    Column("attempted", Boolean),
    Column("billing_reason", String(64)),
    Column("collection_method", String(32)),
    Column("next_payment_attempt", BigInteger),
    Column("period_start", BigInteger),
    Column("period_end", BigInteger),
    Column("paid_at", BigInteger),
    Column("created", BigInteger),
    indexes=(BY_CUSTOMER, "subscription", "created"),
)

charges = _versioned(
    "stripe_charges",
    Column("customer", String(255)),
    Column("status", String(16)),  # succeeded | pending | failed
    Column("currency", String(3)),
    Column("amount", BigInteger),
    Column("amount_captured", BigInteger),
    Column("amount_refunded", BigInteger),
    # The snapshot's API version (before 2025-03-31.basil) counted released authorizations
    # in amount_refunded; null for rows mirrored before this column (read as the pinned shape).
    Column("amount_refunded_includes_releases", Boolean),
    Column("captured", Boolean),
    Column("paid", Boolean),
    Column("refunded", Boolean),
    Column("disputed", Boolean),
    Column("failure_code", String(64)),
    Column("failure_message", Text),
    Column("payment_intent", String(255)),
    Column("payment_method_type", String(64)),
    Column("card_brand", String(32)),  # never last4, expiry or fingerprint
    Column("created", BigInteger),
    indexes=(BY_CUSTOMER, BY_CREATED),
)

def _money_back_on_charge(name: str) -> Table:
    """Refunds and disputes: an amount of a charge's money going back, with a status and reason."""
    return _versioned(
        name,
        Column("charge", String(255)),
        Column("payment_intent", String(255)),
        Column("status", String(32)),
        Column("currency", String(3)),
        Column("amount", BigInteger),
        Column("reason", String(64)),
        Column("created", BigInteger),
        indexes=("charge",),
    )


refunds = _money_back_on_charge("stripe_refunds")
disputes = _money_back_on_charge("stripe_disputes")

# Every Stripe event the change feed has seen, once (id is the Stripe event id).
# ``track_status`` is for the event-to-Segment mapping: ``pending`` (not yet
# handled), ``historical`` (before the first sync: never sent as a track call),
# ``sent``, ``skipped``, ``failed``.
stripe_events = Table(
    "stripe_events",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("type", String(128), nullable=False, index=True),
    Column("created", BigInteger, nullable=False, index=True),
    Column("object_id", String(255)),
    Column("object_type", String(64)),
    Column("api_version", String(64)),
    Column("received_at", BigInteger, nullable=False),
    Column("applied", Boolean, nullable=False, default=False),
    Column("track_status", String(16), nullable=False, default="pending"),
    Column("track_detail", Text),
    Column("payload", JSON(none_as_null=True)),
)

# Named sync cursors (JSON text), e.g. the change feed's position.
sync_cursors = Table(
    "sync_cursors",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Stripe events delivered to the webhook receiver (s2s-webhooks), once per event
# id, stored before the receiver answers Stripe 200. ``received_at_ms`` is the
# receiver's clock (milliseconds), the order the failed-payment sensor reads in.
webhook_inbox = Table(
    "stripe_webhook_inbox",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("type", String(128), nullable=False),
    Column("created", BigInteger, nullable=False),  # the Stripe event's created
    Column("livemode", Boolean),
    Column("api_version", String(64)),
    Column("received_at_ms", BigInteger, nullable=False),
    Column("payload", JSON(none_as_null=True)),
    Index("ix_stripe_webhook_inbox_type_received", "type", "received_at_ms"),
    Index("ix_stripe_webhook_inbox_received", "received_at_ms"),
)

# Stripe objects set aside instead of stopping the others (store/quarantine.py): one row per object the
# mirror could not take (text the database refuses, a field the mirror needs missing), with the reason and
# a sanitised, truncated copy of what Stripe sent. ``event_ids``: the change-feed events that carried it.
quarantine = Table(
    "stripe_quarantine",
    metadata,
    Column("object_type", String(64), primary_key=True),
    Column("object_id", String(255), primary_key=True),
    Column("event_ids", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text),
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=1),
)

schema_info = Table(
    "s2s_schema_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

# Stripe ``object`` name -> mirror table, for the versioned tables.
MIRROR_TABLES: dict[str, Table] = {
    "customer": customers,
    "product": products,
    "price": prices,
    "coupon": coupons,
    "subscription": subscriptions,
    "invoice": invoices,
    "charge": charges,
    "refund": refunds,
    "dispute": disputes,
}

#: The mirror tables as the trait computation reads them: frame name (plural) -> table.
MIRROR_FRAME_TABLES: dict[str, Table] = {
    "customers": customers,
    "subscriptions": subscriptions,
    "subscription_items": subscription_items,
    "prices": prices,
    "products": products,
    "coupons": coupons,
    "discounts": discounts,
    "invoices": invoices,
    "charges": charges,
    "refunds": refunds,
    "disputes": disputes,
}

#: Every column of each mirror frame, in schema order: the table's columns but ``raw``
#: (the whole Stripe snapshot, which the computation never reads).
MIRROR_FRAME_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(c.name for c in table.columns if c.name != "raw") for name, table in MIRROR_FRAME_TABLES.items()
}

# -- Segment side --------------------------------------------------------------

#: Stripe's documented limits (docs.stripe.com/upgrades: ids never exceed 255 characters;
#: docs.stripe.com/metadata: metadata values up to 500 characters). A Segment user id or
#: group id read from customer metadata can be as long as a metadata value.
STRIPE_ID_LENGTH = 255
METADATA_VALUE_LENGTH = 500

#: Columns of the pushed B2B group traits (``group_<trait>`` for each contract group trait).
GROUP_TRAIT_COLUMNS: tuple[str, ...] = tuple(f"group_{name}" for name in GROUP_TRAITS)

_TRAIT_TYPES = {
    "lifetime_value": Float, "mrr": Float, "refund_rate": Float, "payment_count": BigInteger,
    "payment_frequency_days": Float, "paying_customer": Boolean,
    "cancel_at_period_end": Boolean, "payment_delinquent": Boolean,
}

# What Segment acknowledged, per customer: the values of the last delivered
# identify (and group) call. The diff compares the new trait table with this.
pushed_traits = Table(
    "segment_pushed_traits",
    metadata,
    Column("stripe_customer_id", String(255), primary_key=True),
    Column("user_id", String(METADATA_VALUE_LENGTH)),  # identity the values were sent under
    Column("anonymous_id", String(STRIPE_ID_LENGTH)),
    *[Column(f"trait_{name}", _TRAIT_TYPES.get(name, Text)) for name in IDENTIFY_TRAITS if name != "stripe_customer_id"],
    Column("group_id", String(METADATA_VALUE_LENGTH)),
    *[Column(column, Float if column == "group_mrr" else Text) for column in GROUP_TRAIT_COLUMNS],
    Column("identify_message_id", String(64)),
    Column("group_message_id", String(64)),
    Column("identify_pushed_at", BigInteger),
    Column("group_pushed_at", BigInteger),
    # Stripe-clock time (Unix seconds) of the identify values recorded: the computation time of the
    # trait table they came from. A record with an older time never overwrites a newer one.
    Column("traits_as_of", BigInteger),
    # The time of trait_payment_delinquent alone, which the failed-payment alert also writes (with
    # its Stripe event's time): newer than traits_as_of after an alert.
    Column("payment_delinquent_as_of", BigInteger),
    # Stripe-clock time of the group values recorded (group_id, group_* traits, group message):
    # the computation time of their trait table, compared like traits_as_of.
    Column("group_as_of", BigInteger),
)

# The Segment identity of each Stripe customer, resolved once and reused.
identity_map = Table(
    "segment_identity_map",
    metadata,
    Column("stripe_customer_id", String(255), primary_key=True),
    Column("user_id", String(METADATA_VALUE_LENGTH)),
    Column("source", String(16), nullable=False),  # metadata | profiles | anonymous
    # SHA-256 of the lower-cased email last looked up in the Profiles API
    # (detects a changed email without keeping another copy of it).
    Column("email_key", String(64)),
    Column("profiles_checked_at", BigInteger),
    Column("updated_at", BigInteger, nullable=False),
)

# One row per track call Segment acknowledged, keyed like its messageId, so two
# Stripe events about one fact (charge.refunded + refund.created) or two jobs
# (the failed-payment sensor's and the nightly one) never send it twice.
track_sent = Table(
    "segment_track_sent",
    metadata,
    Column("dedupe_key", String(255), primary_key=True),
    Column("message_id", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("stripe_customer_id", String(255)),
    Column("stripe_event_id", String(255)),
    Column("sent_at", BigInteger, nullable=False),
)
