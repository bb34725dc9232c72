"""Deterministic messageIds and message shapes."""

import uuid

import numpy as np

from s2s_pipeline.segment.delivery import native
from s2s_pipeline.core.times import utc_datetime as utc
from s2s_pipeline.segment.messages import group_message, identify_message, split_by_routing

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
