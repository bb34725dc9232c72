"""Segment messages with deterministic messageIds.

A messageId is a uuid5 of a fixed namespace and the content that defines the
message (the customer, the identity, the values sent, the destination
routing), so a retry of the same change reuses its messageId and Segment's
messageId dedupe collapses it, while a different change gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Namespace of every messageId this project sends (never change it: retries
#: after an upgrade must reuse the ids of messages sent before it).
MESSAGE_NAMESPACE = uuid.UUID("8a0f7b52-3c1e-5d55-9b0e-5f2e4a7c1d90")


def message_id(*parts: str) -> str:
    """Deterministic messageId (36 characters, well under Segment's 100)."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, ":".join(parts)))


def content_hash(value: Any) -> str:
    """Stable hash of JSON-like content (key order and float repr independent of dict order)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]



@dataclass
class Message:
    """One Segment call about one Stripe customer, ready for analytics-python."""

    type: str  # identify | group | track
    message_id: str
    stripe_customer_id: str
    timestamp: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    traits: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    integrations: dict | None = None
    group_id: str | None = None
    event: str | None = None
    properties: dict = field(default_factory=dict)

    def payload(self) -> dict:
        """The message as Segment receives it (used for size checks and dry runs)."""
        out: dict[str, Any] = {"type": self.type, "messageId": self.message_id,
                               "timestamp": self.timestamp.isoformat().replace("+00:00", "Z")}
        if self.user_id is not None:
            out["userId"] = self.user_id
        if self.anonymous_id is not None:
            out["anonymousId"] = self.anonymous_id
        if self.type == "track":
            out.update(event=self.event, properties=self.properties)
        else:
            out["traits"] = self.traits
        if self.group_id is not None:
            out["groupId"] = self.group_id
        if self.context:
            out["context"] = self.context
        if self.integrations is not None:
            out["integrations"] = self.integrations
        return out


def _identity_part(user_id: str | None, anonymous_id: str | None) -> str:
    return f"{user_id or ''}|{anonymous_id or ''}"


def identify_message(stripe_customer_id: str, user_id: str | None, anonymous_id: str | None, traits: dict,
                     timestamp: datetime, integrations: dict | None = None) -> Message:
    """A backend trait sync: ``context.active = false`` so it does not count as the user being seen."""
    mid = message_id("identify", stripe_customer_id, _identity_part(user_id, anonymous_id),
                     content_hash(traits), content_hash(integrations or {}))
    return Message("identify", mid, stripe_customer_id, timestamp, user_id=user_id, anonymous_id=anonymous_id,
                   traits=traits, context={"active": False}, integrations=integrations)


def group_message(stripe_customer_id: str, user_id: str | None, anonymous_id: str | None, group_id: str,
                  traits: dict, timestamp: datetime) -> Message:
    mid = message_id("group", stripe_customer_id, _identity_part(user_id, anonymous_id), group_id,
                     content_hash(traits))
    return Message("group", mid, stripe_customer_id, timestamp, user_id=user_id, anonymous_id=anonymous_id,
                   traits=traits, group_id=group_id, context={"active": False})


def split_by_routing(traits: dict, routing: dict[str, dict] | None) -> list[tuple[dict, dict | None]]:
    """Split changed traits into (traits, integrations) groups by per-trait destination routing.

    ``routing`` maps a trait name to a Segment ``integrations`` object, e.g.
    ``{"mrr": {"All": False, "Salesforce": True}}``; unrouted traits go to the
    source's default destinations (integrations omitted).
    """
    if not routing:
        return [(traits, None)]
    groups: dict[str, tuple[dict, dict | None]] = {}
    for name, value in traits.items():
        integrations = routing.get(name)
        key = content_hash(integrations) if integrations is not None else ""
        bucket = groups.setdefault(key, ({}, integrations))
        bucket[0][name] = value
    return [groups[k] for k in sorted(groups)]
