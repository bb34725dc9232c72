"""A Stripe account mirrored in a real state store, and its events mapped as the pipeline maps them.

Objects go into the mirror the way the extraction puts them there
(``to_rows`` + ``MirrorStore.apply``: a listed price or coupon carries its
includable fields, since the client expands them), events are mapped with a
``MirrorContext`` over that mirror (no Stripe API), and the ``mrr`` trait is
computed from the same mirror by the loader the nightly job uses. So a test
compares the two figures over the very same data.

Subscriptions are mirrored as the client lists them (``discounts`` expanded
with their coupons, as ``stripe.client.LIST_SPECS`` asks; the change feed
fetches a subscription again when an event names by id only a discount the
mirror does not hold with its coupon).
Event payloads are never expanded: :func:`as_in_event` renders what a
webhook or the Events API sends (``discounts`` as ids; no
``price.currency_options``, ``price.tiers``, ``coupon.applies_to`` or
``coupon.currency_options``).
"""

from __future__ import annotations

from copy import deepcopy
from decimal import Decimal

import pandas as pd

from s2s_pipeline.segment.context import MirrorContext
from s2s_pipeline.segment.event_mapping import TrackCall, map_event
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.normalize import to_rows
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames
from s2s_pipeline.traits.mrr import compute_subscription_mrr

API = "2026-10-28.endive"
_INCLUDABLE = {"price": ("currency_options", "tiers"), "coupon": ("applies_to", "currency_options")}


def as_in_event(obj):
    """``obj`` as an event payload renders it: discounts by id, includable fields of prices and coupons left out."""
    if isinstance(obj, list):
        return [as_in_event(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    dropped = _INCLUDABLE.get(obj.get("object"), ())
    out = {}
    for key, value in obj.items():
        if key in dropped:
            continue
        if key == "discounts" and isinstance(value, list):
            out[key] = [d["id"] if isinstance(d, dict) else d for d in value]
        else:
            out[key] = as_in_event(value)
    return out


def without_includable(obj):
    """A nested coupon or price as an expansion returns it (its own includable fields not expanded)."""
    if isinstance(obj, list):
        return [without_includable(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    dropped = _INCLUDABLE.get(obj.get("object"), ())
    return {k: without_includable(v) for k, v in obj.items() if k not in dropped}


def event(type_: str, obj: dict, created: int, event_id: str = "evt_1", previous: dict | None = None) -> dict:
    """A Stripe event about ``obj`` (the snapshot after the change), rendered as Stripe sends it."""
    data = {"object": as_in_event(deepcopy(obj))}
    if previous is not None:
        data["previous_attributes"] = as_in_event(deepcopy(previous))
    return {"id": event_id, "object": "event", "api_version": API, "created": created, "livemode": False,
            "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None}, "type": type_, "data": data}


class MirrorWorld:
    """One state store holding the mirror; events mapped and traits computed over it."""

    def __init__(self, store: StateStore, config: TraitsConfig = TraitsConfig()) -> None:
        self.store = store
        self.config = config

    def put(self, *objects: dict, version: int) -> "MirrorWorld":
        """Apply Stripe objects as listed (expanded) or as an event snapshot, newest-wins."""
        for obj in objects:
            self.store.mirror.apply(to_rows(deepcopy(obj), version))
        return self

    def map(self, evt: dict, now: int) -> TrackCall | None:
        """The track call of one event, by a context as fresh as the mirror (the nightly pass's order)."""
        return map_event(evt, MirrorContext(self.store.mirror, None, self.config, now), self.config)

    def traits(self, now: int) -> pd.DataFrame:
        """Every customer's traits from the mirror, indexed by Stripe customer id."""
        traits = compute_customer_traits(load_mirror_frames(self.store.mirror), self.config, now)
        return traits.set_index("stripe_customer_id")

    def trait_mrr(self, customer: str, now: int) -> Decimal:
        """The customer's ``mrr`` trait (major units) from the mirror."""
        return self.mrr_view(now)[0][customer]

    def subscription_mrr(self, now: int) -> dict[str, Decimal]:
        """Per subscription: the ``mrr`` rule applied to it alone (major units), from the mirror."""
        return self.mrr_view(now)[1]

    def mrr_view(self, now: int) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        """(per customer its ``mrr`` trait, per subscription the rule applied to it alone), major units,
        from one read of the mirror."""
        frames = load_mirror_frames(self.store.mirror)
        traits = compute_customer_traits(frames, self.config, now)
        subs = compute_subscription_mrr(frames, self.config, now)
        return ({cid: Decimal(str(mrr)) for cid, mrr in zip(traits["stripe_customer_id"], traits["mrr"])},
                {sid: Decimal(str(mrr)) for sid, mrr in zip(subs["id"], subs["mrr"])})
