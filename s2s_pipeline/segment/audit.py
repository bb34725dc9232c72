"""The delivery audit's rows: what Segment acknowledged, by name, never by value.

A data-subject access request asks what was sent about a person, where and
when. The audit answers it without keeping another copy of the person's
data: the messageId, call type and event name, the *names* of the traits or
properties sent, the ``integrations`` object (destinations), the Dagster run
and when Segment acknowledged it.
"""

from __future__ import annotations

from typing import Iterable

from s2s_pipeline.segment.messages import Message


def audit_row(message: Message, run_id: str | None, acknowledged_at: int) -> dict:
    """One acknowledged message as a ``segment_delivery_audit`` row."""
    return {
        "message_id": message.message_id,
        "call_type": message.type,
        "event": message.event,
        "stripe_customer_id": message.stripe_customer_id,
        "trait_names": sorted(message.traits) if message.type != "track" else [],
        "property_names": sorted(message.properties) if message.type == "track" else [],
        "integrations": dict(message.integrations) if message.integrations is not None else None,
        "run_id": run_id,
        "acknowledged_at": int(acknowledged_at),
    }


def audit_rows(delivered: Iterable[Message], run_id: str | None, acknowledged_at: int) -> list[dict]:
    return [audit_row(m, run_id, acknowledged_at) for m in delivered]
