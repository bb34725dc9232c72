"""The local Segment sink and the Profiles API stand-in.

The sink is driven by the real segment-analytics-python 2.4.0 client, so these
tests also pin down how that library behaves on failure (what ``on_error``
receives, what is retried, what is dropped) — the delivery code relies on it.
Plain ``requests`` calls check the HTTP limits and auth directly.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import logging
import time
import urllib.parse
import uuid

import pytest
import requests
from segment.analytics.client import Client
from segment.analytics.request import APIError

from s2s_devtools.fakes.profiles_standin import ProfilesStandIn
from s2s_devtools.fakes.segment_sink import MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES, SegmentSink

WRITE_KEY = "demo_write_key"


@pytest.fixture(autouse=True)
def quiet_segment_logger():
    """analytics-python logs failed batches (whole payloads) at ERROR: keep test output readable."""
    log = logging.getLogger("segment")
    old = log.level
    log.setLevel(logging.CRITICAL)
    yield
    log.setLevel(old)


@pytest.fixture
def sink():
    with SegmentSink(write_key=WRITE_KEY) as s:
        yield s


class Errors:
    """An ``on_error`` callback that records what analytics-python hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Exception, list]] = []

    def __call__(self, exc: Exception, batch: list) -> None:
        self.calls.append((exc, batch))

    @property
    def message_ids(self) -> set[str]:
        return {m["messageId"] for _, batch in self.calls for m in batch}


@pytest.fixture
def make_client(sink):
    clients: list[Client] = []

    def make(write_key: str = WRITE_KEY, **kwargs) -> tuple[Client, Errors]:
        errors = Errors()
        options = dict(host=sink.base_url, gzip=True, on_error=errors, max_retries=2, upload_interval=0.05)
        options.update(kwargs)
        client = Client(write_key, **options)
        clients.append(client)
        return client, errors

    yield make
    for client in clients:
        client.join()  # stop the consumer threads (does not flush)


def mid() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------- analytics-python against the sink


def test_client_delivers_gzip_batches_on_flush(sink, make_client):
    client, errors = make_client()
    ids = [mid(), mid(), mid()]
    client.identify("cus_1", {"plan": "pro", "mrr": 49.0}, message_id=ids[0])
    client.track("cus_1", "Subscription Started", {"plan": "pro"}, message_id=ids[1])
    client.group("cus_1", "acct_1", {"name": "Acme"}, message_id=ids[2])
    client.flush()

    assert errors.calls == []
    assert [m["messageId"] for m in sink.accepted] == ids
    assert [m["type"] for m in sink.accepted] == ["identify", "track", "group"]
    first = sink.accepted[0]
    assert first["userId"] == "cus_1" and first["traits"] == {"plan": "pro", "mrr": 49.0}
    assert first["receivedAt"].endswith("Z") and "sentAt" in first
    assert all("writeKey" not in m for m in sink.accepted)
    assert sink.requests and all(r["gzip"] and r["status"] == 200 for r in sink.requests)
    assert sum(r["messages"] for r in sink.requests) == 3
    # the compressed size is what went over the wire
    assert all(r["bytes"] < r["body_bytes"] for r in sink.requests)


def test_503_once_then_success_delivers_once(sink, make_client):
    client, errors = make_client()
    sink.faults.fail_next(1, status=503)
    message_id = mid()
    client.identify("cus_1", {"plan": "pro"}, message_id=message_id)
    client.flush()

    assert errors.calls == []
    assert [r["status"] for r in sink.requests] == [503, 200]
    assert [r["message_ids"] for r in sink.requests] == [[message_id], [message_id]]
    assert [r["retry_count"] for r in sink.requests] == [0, 1]  # X-Retry-Count header
    assert [m["messageId"] for m in sink.accepted] == [message_id]  # a failed request stores nothing


def test_retries_exhausted_reach_on_error(sink, make_client):
    # max_retries=1: two attempts; the first retry is immediate, so no backoff sleep
    client, errors = make_client(max_retries=1)
    sink.faults.fail_next(5, status=503)
    message_id = mid()
    client.identify("cus_1", {"plan": "pro"}, message_id=message_id)
    client.flush()

    assert [r["status"] for r in sink.requests] == [503, 503]
    assert len(errors.calls) == 1
    exc, batch = errors.calls[0]
    assert isinstance(exc, APIError) and exc.status == 503
    assert [m["messageId"] for m in batch] == [message_id]
    assert sink.accepted == []


def test_duplicates_are_kept_and_deduplicated_like_segment(sink, make_client):
    client, _ = make_client()
    message_id = mid()
    client.identify("cus_1", {"plan": "basic"}, message_id=message_id)
    client.flush()
    client.identify("cus_1", {"plan": "pro"}, message_id=message_id)  # a replay
    client.flush()

    assert [m["messageId"] for m in sink.accepted] == [message_id, message_id]
    deduped = sink.accepted_by_message_id()
    assert list(deduped) == [message_id]
    assert deduped[message_id]["traits"] == {"plan": "basic"}  # first one wins


def test_429_with_retry_after_is_retried_and_requeued(sink, make_client):
    client, errors = make_client(upload_size=2)
    sink.faults.fail_next(1, status=429, retry_after=1)
    ids = [mid() for _ in range(4)]
    started = time.monotonic()
    for i, message_id in enumerate(ids):
        client.identify(f"cus_{i}", {}, message_id=message_id)
    client.flush()

    assert errors.calls == []
    assert time.monotonic() - started >= 0.9  # it honoured Retry-After
    assert sink.requests[0]["status"] == 429
    assert sorted(m["messageId"] for m in sink.accepted) == sorted(ids)
    assert len(sink.accepted_by_message_id()) == 4
    # The rate-limited batch goes back to the END of the queue, so later
    # messages can overtake it (order across batches is not preserved).
    first_batch = sink.requests[0]["message_ids"]
    delivered = [m["messageId"] for m in sink.accepted]
    if len(first_batch) < len(ids):
        assert delivered[-len(first_batch) :] == first_batch


def test_rejected_batch_goes_to_on_error_whole(sink, make_client):
    client, errors = make_client()
    bad = mid()
    good = [mid() for _ in range(3)]
    sink.faults.reject_message_ids({bad})
    client.identify("cus_1", {"plan": "pro"}, message_id=good[0])
    client.identify("cus_2", {"plan": "pro"}, message_id=bad)
    client.identify("cus_3", {"plan": "pro"}, message_id=good[1])
    client.identify("cus_4", {"plan": "pro"}, message_id=good[2])
    client.flush()

    assert errors.calls, "a 400 must reach on_error"
    for exc, batch in errors.calls:
        assert isinstance(exc, APIError) and exc.status == 400
        assert isinstance(batch, list) and all(isinstance(m, dict) for m in batch)
    assert bad in errors.message_ids
    assert bad not in {m["messageId"] for m in sink.accepted}
    # not retried: one request per batch; good messages that shared the bad
    # batch are lost with it, so every message is either accepted or reported
    assert errors.message_ids | {m["messageId"] for m in sink.accepted} == {bad, *good}
    assert not errors.message_ids & {m["messageId"] for m in sink.accepted}
    assert sum(1 for r in sink.requests if r["status"] == 400) == len(errors.calls)


def test_wrong_write_key_goes_to_on_error(sink, make_client):
    client, errors = make_client(write_key="wrong_key")
    message_id = mid()
    client.identify("cus_1", {}, message_id=message_id)
    client.flush()

    assert sink.accepted == []
    assert [r["status"] for r in sink.requests] == [401]  # not retried
    exc, batch = errors.calls[0]
    assert isinstance(exc, APIError) and exc.status == 401
    assert [m["messageId"] for m in batch] == [message_id]


def test_oversized_message_raises_at_enqueue(sink, make_client):
    client, errors = make_client()
    with pytest.raises(RuntimeError) as info:
        client.identify("cus_1", {"blob": "x" * (MAX_MESSAGE_BYTES + 100)})
    # the exception carries the whole message (PII) in its args
    assert "cus_1" in str(info.value.args)
    client.flush()
    assert sink.requests == [] and errors.calls == []


def test_oversized_item_in_queue_leaks_a_task_and_would_hang_flush(sink, make_client):
    """An item over 32 KB that reaches the consumer is dropped (logged, not passed
    to ``on_error``) without ``task_done()``, so ``flush()`` (``queue.join()``)
    would block forever. ``_enqueue`` checks the size first, so this happens when
    a queued message is mutated afterwards (``identify`` returns the very dict it
    queued); simulated here by queueing one directly."""
    client, errors = make_client()
    big = {"type": "identify", "userId": "cus_1", "messageId": mid(), "traits": {"note": "x" * MAX_MESSAGE_BYTES}}
    client.queue.put(big)
    client.identify("cus_2", {}, message_id=mid())

    assert sink.wait_for(lambda: len(sink.accepted) >= 1, timeout=5)
    deadline = time.monotonic() + 5
    while client.queue.unfinished_tasks > 1 and time.monotonic() < deadline:
        sink.wait_for(lambda: False, timeout=0.02)  # condition wait with a deadline
    assert [m["userId"] for m in sink.accepted] == ["cus_2"]
    assert client.queue.qsize() == 0 and client.queue.unfinished_tasks == 1
    assert errors.calls == []


def test_full_queue_returns_false_and_drops(sink, make_client):
    client, errors = make_client(max_queue_size=2)
    client.join()  # stop the consumer, as a stuck upload would: nothing drains the queue
    results = [client.identify(f"cus_{i}", {}, message_id=mid()) for i in range(4)]
    assert [ok for ok, _ in results] == [True, True, False, False]
    assert client.queue.qsize() == 2  # the refused messages are gone, not queued
    assert errors.calls == []  # a full queue never reaches on_error


# ---------------------------------------------------------------- the HTTP API directly


def message(i: int = 0, **extra) -> dict:
    m = {"type": "identify", "userId": f"cus_{i}", "messageId": f"msg_{i}", "traits": {}}
    m.update(extra)
    return m


def post(sink: SegmentSink, body, *, auth=(WRITE_KEY, ""), path="/v1/batch", gzipped=False, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    return requests.post(sink.base_url + path, data=data, headers=headers, auth=auth, timeout=10)


def test_auth_basic_or_body_write_key(sink):
    assert post(sink, {"batch": [message(1)]}).status_code == 200
    assert post(sink, {"batch": [message(2)], "writeKey": WRITE_KEY}, auth=None).status_code == 200
    for auth, body in [
        (None, {"batch": [message(3)]}),
        (("wrong", ""), {"batch": [message(3)]}),
        ((WRITE_KEY, "secret"), {"batch": [message(3)]}),
        (None, {"batch": [message(3)], "writeKey": "wrong"}),
    ]:
        resp = post(sink, body, auth=auth)
        assert resp.status_code == 401
        assert resp.json()["success"] is False and resp.json()["message"]
    assert [m["messageId"] for m in sink.accepted] == ["msg_1", "msg_2"]
    # the write key is never kept, plain or encoded
    log = json.dumps([sink.requests, sink.accepted])
    assert WRITE_KEY not in log and base64.b64encode(f"{WRITE_KEY}:".encode()).decode() not in log
    assert WRITE_KEY not in repr(sink)


def test_request_size_limit_500kb(sink):
    filler = "x" * 10_000
    ok = [message(i, traits={"f": filler}) for i in range(45)]  # ~450 KB
    assert post(sink, {"batch": ok}).status_code == 200
    too_big = [message(i, traits={"f": filler}) for i in range(55)]  # ~550 KB
    resp = post(sink, {"batch": too_big})
    assert resp.status_code == 400
    # the limit applies to the decompressed body, however well it compresses
    resp = post(sink, {"batch": too_big}, gzipped=True)
    assert resp.status_code == 400 and sink.requests[-1]["bytes"] < 20_000
    assert len(sink.accepted) == 45


def test_message_size_limit_32kb(sink):
    assert post(sink, {"batch": [message(1, traits={"f": "x" * 31_000})]}).status_code == 200
    resp = post(sink, {"batch": [message(2), message(3, traits={"f": "x" * 33_000})]})
    assert resp.status_code == 400 and "32768" in resp.json()["message"]
    assert [m["messageId"] for m in sink.accepted] == ["msg_1"]  # the whole batch is refused


def test_message_count_limit(sink):
    assert post(sink, {"batch": [message(i) for i in range(MAX_BATCH_MESSAGES)]}).status_code == 200
    assert post(sink, {"batch": [message(i) for i in range(MAX_BATCH_MESSAGES + 1)]}).status_code == 400
    assert len(sink.accepted) == MAX_BATCH_MESSAGES


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "identify", "userId": "u"},  # no messageId
        {"type": "identify", "messageId": "m"},  # no userId / anonymousId
        {"type": "identify", "userId": None, "anonymousId": None, "messageId": "m"},
        {"userId": "u", "messageId": "m"},  # no type
        {"type": "bogus", "userId": "u", "messageId": "m"},
        {"type": "track", "userId": "u", "messageId": "m"},  # track without event
    ],
)
def test_invalid_messages_are_400(sink, msg):
    assert post(sink, {"batch": [msg]}).status_code == 400
    assert sink.accepted == []


def test_bad_json_and_bad_gzip_are_400(sink):
    assert post(sink, None, raw=b"{not json").status_code == 400
    resp = requests.post(
        sink.base_url + "/v1/batch",
        data=b"not gzip",
        headers={"Content-Encoding": "gzip"},
        auth=(WRITE_KEY, ""),
        timeout=10,
    )
    assert resp.status_code == 400


def test_single_message_endpoints(sink):
    body = {"userId": "cus_1", "messageId": "m1", "traits": {"plan": "pro"}, "writeKey": WRITE_KEY}
    assert post(sink, body, auth=None, path="/v1/identify").status_code == 200
    track = {"anonymousId": "anon_1", "messageId": "m2", "event": "Order Completed"}
    assert post(sink, track, path="/v1/track").status_code == 200
    assert post(sink, {"userId": "u", "messageId": "m3"}, path="/v1/group").status_code == 400  # no groupId
    assert [m["type"] for m in sink.accepted] == ["identify", "track"]
    assert "writeKey" not in sink.accepted[0]
    assert post(sink, {"batch": []}, path="/v1/nope").status_code == 404


def test_faults_fail_next_retry_after_and_probability(sink):
    sink.faults.fail_next(2, status=429, retry_after=7)
    first = post(sink, {"batch": [message(1)]})
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert post(sink, {"batch": [message(1)]}).status_code == 429
    assert post(sink, {"batch": [message(1)]}).status_code == 200
    assert sink.requests[0]["message_ids"] == ["msg_1"]  # failed requests are logged with their content

    def statuses() -> list[int]:
        sink.clear()
        sink.faults.fail_probability(0.5, status=500, seed=3)
        return [post(sink, {"batch": [message(i)]}).status_code for i in range(20)]

    run = statuses()
    assert set(run) == {200, 500} and statuses() == run  # seeded: repeatable
    assert len(sink.accepted) == run.count(200)
    sink.faults.fail_probability(0)
    assert post(sink, {"batch": [message(99)]}).status_code == 200


def test_a_held_answer_comes_only_after_release_with_the_batch_stored_meanwhile(sink):
    sink.faults.hold_answer_to(["msg_2"])
    assert post(sink, {"batch": [message(1)]}).status_code == 200  # not carrying msg_2: answered at once
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(post, sink, {"batch": [message(2), message(3)]})
        assert sink.wait_for(lambda: sink.faults.holding == 1, timeout=10)
        # Segment has the batch, the client has no answer yet
        assert [m["messageId"] for m in sink.accepted] == ["msg_1", "msg_2", "msg_3"] and not answer.done()
        sink.faults.release_held()
        assert answer.result(timeout=10).status_code == 200
    assert sink.wait_for(lambda: sink.faults.holding == 0, timeout=10)
    assert post(sink, {"batch": [message(2)]}).status_code == 200  # held once only


def test_wait_for_and_clear(sink):
    assert sink.wait_for(lambda: len(sink.accepted) > 0, timeout=0.05) is False
    post(sink, {"batch": [message(1)]})
    assert sink.wait_for(lambda: len(sink.accepted) == 1, timeout=1)
    sink.faults.fail_next(3)
    sink.clear()
    assert sink.accepted == [] and sink.requests == [] and sink.faults.pending == 0


def test_stop_stops_answering():
    sink = SegmentSink()
    url = sink.start()
    assert post(sink, {"batch": [message(1)]}, auth=("demo_write_key", "")).status_code == 200
    sink.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(url + "/v1/batch", json={"batch": []}, timeout=2)


# ---------------------------------------------------------------- Profiles API stand-in

TOKEN = "profiles_token"
SPACE = "spa_demo"


@pytest.fixture
def profiles():
    with ProfilesStandIn(space_id=SPACE, token=TOKEN) as p:
        p.add_profile(
            "jane+test@example.com",
            user_id="cus_1",
            anonymous_ids=["anon_1", "anon_2"],
            traits={"plan": "pro", "mrr": 49.0, "ltv": 588.0},
        )
        p.add_profile("bob@example.com", traits={"plan": "basic"})
        yield p


def profile_get(p: ProfilesStandIn, ident: str, resource: str, *, auth=(TOKEN, ""), space=SPACE, **params):
    url = f"{p.base_url}/v1/spaces/{space}/collections/users/profiles/{ident}/{resource}"
    return requests.get(url, params=params, auth=auth, timeout=10)


def encoded_email(email: str) -> str:
    return "email:" + urllib.parse.quote(email, safe="")


def test_external_ids_by_email_user_id_and_anonymous_id(profiles):
    assert encoded_email("jane+test@example.com") == "email:jane%2Btest%40example.com"
    resp = profile_get(profiles, encoded_email("jane+test@example.com"), "external_ids")
    assert resp.status_code == 200
    body = resp.json()
    assert [(e["type"], e["id"]) for e in body["data"]] == [
        ("user_id", "cus_1"),
        ("anonymous_id", "anon_1"),
        ("anonymous_id", "anon_2"),
        ("email", "jane+test@example.com"),
    ]
    entry = body["data"][0]
    assert entry["collection"] == "users" and entry["encoding"] == "none"
    assert entry["source_id"] and entry["created_at"]
    assert body["cursor"] == {"url": "", "has_more": False, "next": ""}
    for ident in ["user_id:cus_1", "anonymous_id:anon_2", "email:jane+test@example.com"]:
        # an unencoded "+" in a path is a plus, not a space
        data = profile_get(profiles, ident, "external_ids").json()["data"]
        assert data[0]["id"] == "cus_1"
    # a profile without a user_id
    data = profile_get(profiles, encoded_email("bob@example.com"), "external_ids").json()["data"]
    assert [e["type"] for e in data] == ["email"]


def test_profiles_404_and_401(profiles):
    for resp in [
        profile_get(profiles, encoded_email("nobody@example.com"), "external_ids"),
        profile_get(profiles, "user_id:cus_404", "traits"),
        profile_get(profiles, "user_id:cus_1", "traits", space="spa_other"),
        profile_get(profiles, "phone:123", "traits"),
    ]:
        assert resp.status_code == 404
        assert resp.json() == {"error": {"code": "not_found", "message": "Resource not found"}}
    assert profile_get(profiles, "user_id:cus_1", "traits", auth=None).status_code == 401
    assert profile_get(profiles, "user_id:cus_1", "traits", auth=("wrong", "")).status_code == 401
    assert profile_get(profiles, "user_id:cus_1", "traits", auth=(TOKEN, "pw")).status_code == 401
    assert TOKEN not in json.dumps(profiles.requests)


def test_profile_traits_include_limit_and_paging(profiles):
    body = profile_get(profiles, encoded_email("jane+test@example.com"), "traits").json()
    assert body["traits"] == {"email": "jane+test@example.com", "ltv": 588.0, "mrr": 49.0, "plan": "pro"}
    assert body["cursor"]["has_more"] is False

    body = profile_get(profiles, "user_id:cus_1", "traits", include="plan,mrr,missing").json()
    assert body["traits"] == {"mrr": 49.0, "plan": "pro"}

    page1 = profile_get(profiles, "user_id:cus_1", "traits", limit=3).json()
    assert list(page1["traits"]) == ["email", "ltv", "mrr"]
    assert page1["cursor"]["has_more"] is True and page1["cursor"]["next"] == "plan"
    page2 = profile_get(profiles, "user_id:cus_1", "traits", limit=3, next=page1["cursor"]["next"]).json()
    assert page2["traits"] == {"plan": "pro"} and page2["cursor"]["has_more"] is False
    assert profile_get(profiles, "user_id:cus_1", "traits", limit=201).status_code == 400


def test_profiles_add_merges_identities(profiles):
    profiles.add_profile("jane.work@example.com", user_id="cus_1", traits={"plan": "enterprise"})
    data = profile_get(profiles, encoded_email("jane.work@example.com"), "external_ids").json()["data"]
    assert [e["type"] for e in data] == ["user_id", "anonymous_id", "anonymous_id", "email", "email"]
    traits = profile_get(profiles, "anonymous_id:anon_1", "traits", include="plan").json()["traits"]
    assert traits == {"plan": "enterprise"}


def test_profiles_429_fault(profiles):
    profiles.faults.fail_next(2, status=429, retry_after=2)
    first = profile_get(profiles, "user_id:cus_1", "traits")
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    assert first.json()["error"]["code"] == "too_many_requests"
    assert profile_get(profiles, "user_id:cus_1", "traits").status_code == 429
    assert profile_get(profiles, "user_id:cus_1", "traits").status_code == 200
    assert [r["status"] for r in profiles.requests] == [429, 429, 200]
