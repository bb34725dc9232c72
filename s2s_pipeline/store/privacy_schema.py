"""Tables and indexes of the privacy lifecycle: Segment regulations, the delivery audit, retention indexes.

Defined on ``schema.metadata`` (so ``db.migrate`` creates them with the rest)
but kept apart from ``schema.py``: they describe what the pipeline did about
people (which regulation Segment has for a customer, which calls were sent),
not the Stripe mirror or the Segment state the diff works from.

Neither table holds a trait or property *value*: the audit keeps names, the
regulation row keeps the Segment userId only until Segment accepted the
regulation (``subject_id`` is then cleared).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, Table, Text

from s2s_pipeline.store import schema

#: One row per Stripe customer the deletion path handled (deleted in Stripe, or a ``forget`` request).
#:
#: ``state``: ``awaiting_filing`` (to be sent to Segment's Public API), ``filed`` (Segment accepted it:
#: ``regulate_id`` and Segment's ``segment_status`` are kept), ``not_regulated`` (nothing to file:
#: ``detail`` says why, e.g. the customer had only an anonymousId, or no Public API token is set).
#: ``purged_at``: when the customer's personal data left the state store.
regulations = Table(
    "segment_regulations",
    schema.metadata,
    Column("stripe_customer_id", String(255), primary_key=True),
    Column("reason", String(32), nullable=False),  # deleted_in_stripe | forget_request
    Column("state", String(32), nullable=False),
    Column("regulation_type", String(64)),
    Column("subject_type", String(32)),
    # The Segment userId to regulate, kept only until Segment accepted the regulation.
    Column("subject_id", String(255)),
    Column("regulate_id", String(255), index=True),
    Column("segment_status", String(32)),  # INITIALIZED | RUNNING | FINISHED | FAILED | ...
    Column("detail", Text),
    Column("filing_attempts", Integer, nullable=False, default=0),
    Column("requested_at", BigInteger, nullable=False),
    Column("filed_at", BigInteger),
    Column("status_checked_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("purged_at", BigInteger),
    Index("ix_segment_regulations_state", "state"),
)

#: Append-only: one row per message Segment acknowledged. Names only, never values.
delivery_audit = Table(
    "segment_delivery_audit",
    schema.metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    # Not indexed: no query of the pipeline looks a message up (schema.RETIRED_INDEXES says why).
    Column("message_id", String(64), nullable=False),
    Column("call_type", String(16), nullable=False),  # identify | group | track
    Column("event", String(64)),  # track event name
    Column("stripe_customer_id", String(255), index=True),
    Column("trait_names", JSON),  # sorted list of names
    Column("property_names", JSON),
    Column("integrations", JSON(none_as_null=True)),  # the message's destinations, as sent
    Column("run_id", String(64)),
    Column("acknowledged_at", BigInteger, nullable=False, index=True),
)

# Indexes for what the nightly run and retention ask of existing tables.
# (Index objects on a table's columns attach to that table; db.migrate creates missing ones.)
Index("ix_stripe_events_track_status_created", schema.stripe_events.c.track_status, schema.stripe_events.c.created)
Index("ix_stripe_events_object_id", schema.stripe_events.c.object_id)
Index("ix_segment_track_sent_sent_at", schema.track_sent.c.sent_at)
Index("ix_segment_track_sent_customer", schema.track_sent.c.stripe_customer_id)
