"""Deterministic messageIds and message shapes."""

import uuid

import numpy as np

from s2s_pipeline.segment.delivery import native
from s2s_pipeline.core.times import utc_datetime as utc
from s2s_pipeline.segment.event_mapping import TrackCall
from s2s_pipeline.segment.messages import (
    Identity,
    content_hash,
    delinquent_identify,
    group_message,
    identify_message,
    identify_messages,
    message_id,
    split_by_routing,
    track_message,
)

TS = utc(1_790_000_000)


def test_same_change_same_message_id_and_different_change_new_id():
    a = identify_message("cus_1", "u_1", None, {"mrr": 10.0, "plan": "Pro"}, TS)
    b = identify_message("cus_1", "u_1", None, {"plan": "Pro", "mrr": 10.0}, utc(1_800_000_000))
    c = identify_message("cus_1", "u_1", None, {"mrr": 12.0, "plan": "Pro"}, TS)
    d = identify_message("cus_2", "u_1", None, {"mrr": 10.0, "plan": "Pro"}, TS)
    assert a.message_id == b.message_id  # key order and timestamp do not define the change
    assert len({a.message_id, c.message_id, d.message_id}) == 3
    assert uuid.UUID(a.message_id).version == 5 and len(a.message_id) <= 100


def test_identify_payload_is_a_backend_trait_sync():
    msg = identify_message("cus_1", None, "cus_1", {"mrr": None}, TS)
    payload = msg.payload()
    assert payload["context"] == {"active": False}
    assert payload["anonymousId"] == "cus_1" and "userId" not in payload
    assert payload["traits"] == {"mrr": None}  # a trait that became unknown is sent as null
    assert payload["timestamp"] == "2026-09-21T14:13:20Z"


def test_group_message_id_depends_on_group_and_traits():
    a = group_message("cus_1", "u_1", None, "acme", {"name": "Acme", "plan": "Pro", "mrr": 99.0}, TS)
    b = group_message("cus_1", "u_1", None, "acme", {"name": "Acme", "plan": "Pro", "mrr": 100.0}, TS)
    assert a.message_id != b.message_id and a.payload()["groupId"] == "acme"


def test_routing_splits_traits_by_destination():
    parts = split_by_routing({"mrr": 1.0, "plan": "Pro", "email": "a@example.com"},
                             {"mrr": {"All": False, "Salesforce": True}})
    assert parts == [({"plan": "Pro", "email": "a@example.com"}, None),
                     ({"mrr": 1.0}, {"All": False, "Salesforce": True})]
    assert split_by_routing({"plan": "Pro"}, None) == [({"plan": "Pro"}, None)]


def test_native_values_for_segment():
    assert native({"a": np.bool_(True), "b": np.int64(3), "c": np.float64("nan"), "d": [np.float32(1.5)]}) == {
        "a": True, "b": 3, "c": None, "d": [1.5]}
    assert type(native(np.bool_(False))) is bool


SALESFORCE_ONLY = {"All": False, "Salesforce": True}
FAILED = TrackCall(event="Payment Failed", stripe_customer_id="cus_1", properties={"amount": np.float64(9.5)},
                   message_id="m-track", dedupe_key="invoice:in_1:attempt:1", timestamp=1_790_000_000)


def test_identify_messages_apply_the_allow_list_then_the_routing():
    (plain, routed) = identify_messages("cus_1", "u_1", None, {"mrr": 1.0, "plan": "Pro", "email": "a@x.io"}, TS,
                                        allow_list=("mrr", "plan"), routing={"mrr": SALESFORCE_ONLY})
    assert plain.traits == {"plan": "Pro"} and plain.integrations is None
    assert routed.traits == {"mrr": 1.0} and routed.integrations == SALESFORCE_ONLY
    assert identify_messages("cus_1", "u_1", None, {"email": "a@x.io"}, TS, allow_list=("mrr",)) == []
    (kept,) = identify_messages("cus_1", None, "cus_1", {"stripe_customer_id": "cus_1"}, TS, allow_list=("mrr",))
    assert kept.traits == {"stripe_customer_id": "cus_1"}  # the join key is always allowed


def test_delinquent_identify_follows_the_allow_list_and_routing():
    who = Identity("u_1", None)
    unrouted = delinquent_identify(FAILED, who, "evt_1")
    # The messageId an unrouted delinquency identify always had (retries after an upgrade reuse it).
    assert unrouted.message_id == message_id("identify", "cus_1", "delinquent", "evt_1",
                                             content_hash({"payment_delinquent": True}))
    assert unrouted.traits == {"payment_delinquent": True} and unrouted.integrations is None
    assert delinquent_identify(FAILED, who, "evt_1", allow_list=("mrr", "plan")) is None
    routed = delinquent_identify(FAILED, who, "evt_1", routing={"payment_delinquent": SALESFORCE_ONLY})
    assert routed.integrations == SALESFORCE_ONLY and routed.message_id != unrouted.message_id
    assert delinquent_identify(FAILED, who, "evt_2").message_id != unrouted.message_id  # one per failure


def test_track_message_carries_the_call_under_the_resolved_identity():
    msg = track_message(FAILED, Identity("u_1", None), {"source": "news"}, profile_anonymous_id="anon_9")
    payload = msg.payload()
    assert payload["event"] == "Payment Failed" and payload["messageId"] == "m-track"
    assert payload["userId"] == "u_1" and payload["anonymousId"] == "anon_9"
    assert payload["properties"] == {"amount": 9.5} and type(payload["properties"]["amount"]) is float
    assert payload["context"] == {"campaign": {"source": "news"}}
