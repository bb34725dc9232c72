"""Segment messages with deterministic messageIds: every identify, group and track call is built here.

One path builds every identify (``identify_messages``): the trait allow-list
and the per-trait routing apply to the nightly trait sync and to the
failed-payment alert's ``payment_delinquent`` alike.

A messageId is a uuid5 of a fixed namespace and the content that defines the
message (the customer, the identity, the values sent, the destination
routing), so a retry of the same change reuses its messageId and Segment's
messageId dedupe collapses it, while a different change gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd

from s2s_pipeline.core.times import utc_datetime

#: Namespace of every messageId this project sends (never change it: retries
#: after an upgrade must reuse the ids of messages sent before it).
MESSAGE_NAMESPACE = uuid.UUID("8a0f7b52-3c1e-5d55-9b0e-5f2e4a7c1d90")

#: Traits an allow-list always lets through: ``stripe_customer_id`` is the join key back to
#: Stripe and not personal data (``segment.diff`` compares under the same rule).
ALWAYS_ALLOWED: frozenset[str] = frozenset({"stripe_customer_id"})


def message_id(*parts: str) -> str:
    """Deterministic messageId (36 characters, well under Segment's 100)."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, ":".join(parts)))


def content_hash(value: Any) -> str:
    """Stable hash of JSON-like content (key order and float repr independent of dict order)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def native(value: Any) -> Any:
    """Plain JSON types: numpy scalars and NaN would be stringified or rejected by Segment."""
    if isinstance(value, dict):
        return {k: native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [native(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if value is None or value is pd.NA:
        return None
    return value


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


def allowed_traits(traits: dict, allow_list: Sequence[str] | None) -> dict:
    """The traits an identify may carry under ``allow_list`` (None: every trait)."""
    if allow_list is None:
        return dict(traits)
    allowed = set(allow_list) | ALWAYS_ALLOWED
    return {name: value for name, value in traits.items() if name in allowed}


def identify_messages(stripe_customer_id: str, user_id: str | None, anonymous_id: str | None, traits: dict,
                      timestamp: datetime, *, allow_list: Sequence[str] | None = None,
                      routing: dict[str, dict] | None = None) -> list[Message]:
    """Every identify this project sends about a customer's ``traits``: those outside ``allow_list``
    left out, the rest split by ``routing`` into one identify per destination set. When the
    allow-list leaves none of ``traits``, nothing is sent."""
    kept = allowed_traits(traits, allow_list)
    if traits and not kept:
        return []
    return [identify_message(stripe_customer_id, user_id, anonymous_id, part, timestamp, integrations)
            for part, integrations in split_by_routing(kept, routing)]


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


@dataclass(frozen=True)
class Identity:
    """Who a customer's calls are about in Segment: its userId when known, else its anonymousId
    (the Stripe customer id); the email, for Profiles look-ups only."""

    user_id: str | None
    anonymous_id: str | None
    email: str | None = None


class TrackFacts(Protocol):
    """What a track call says (``segment.event_mapping.TrackCall``): the identity is resolved apart."""

    event: str
    stripe_customer_id: str
    properties: dict
    message_id: str
    timestamp: int


def track_message(call: TrackFacts, identity: Identity, campaign: dict | None = None,
                  profile_anonymous_id: str | None = None) -> Message:
    """The track call of a Stripe fact; ``campaign`` becomes ``context.campaign`` (Order Completed)."""
    context = {"campaign": campaign} if campaign else {}
    anonymous_id = identity.anonymous_id
    if identity.user_id and profile_anonymous_id:
        anonymous_id = profile_anonymous_id  # beside userId: ties the order to the visit
    return Message("track", call.message_id, call.stripe_customer_id, utc_datetime(call.timestamp),
                   user_id=identity.user_id, anonymous_id=anonymous_id, event=call.event,
                   properties=native(call.properties), context=context)


def delinquent_identify(call: TrackFacts, identity: Identity, stripe_event_id: str, *,
                        allow_list: Sequence[str] | None = None,
                        routing: dict[str, dict] | None = None) -> Message | None:
    """``payment_delinquent = true`` with the failure: one message per failure (salted by the event).

    Built like every identify: none when the allow-list leaves ``payment_delinquent`` out, and
    with that trait's ``integrations`` when it is routed. An unrouted one keeps the messageId it
    always had; a routed one's also hashes its destinations.
    """
    messages = identify_messages(call.stripe_customer_id, identity.user_id, identity.anonymous_id,
                                 {"payment_delinquent": True}, utc_datetime(call.timestamp),
                                 allow_list=allow_list, routing=routing)
    if not messages:
        return None
    (msg,) = messages  # one trait: one destination set
    parts = ["identify", call.stripe_customer_id, "delinquent", stripe_event_id, content_hash(msg.traits)]
    if msg.integrations is not None:
        parts.append(content_hash(msg.integrations))
    msg.message_id = message_id(*parts)
    return msg
