"""Profile API client against a stub HTTP server on 127.0.0.1 (no real waiting: fake sleep and clock)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from s2s_pipeline.segment.profiles_api import (
    ProfilesAuthError,
    ProfilesClient,
    ProfilesConnectionError,
    ProfilesError,
)

SPACE = "spa_test"
TOKEN = "prof_token_secret_123"


class StubProfiles:
    """A tiny Profile API: ``profiles`` maps "email:x" -> {"external_ids": [...], "traits": {...}};
    ``script`` is a queue of (status, headers, body) answers served before the normal ones."""

    def __init__(self):
        self.profiles: dict[str, dict] = {}
        self.script: list[tuple[int, dict, object]] = []
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                stub.requests.append({"path": unquote(url.path), "raw_path": url.path, "query": parse_qs(url.query),
                                      "auth": self.headers.get("Authorization")})
                status, headers, body = stub.answer(unquote(url.path), parse_qs(url.query))
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def answer(self, path: str, query: dict):
        if self.script:
            return self.script.pop(0)
        prefix = f"/v1/spaces/{SPACE}/collections/users/profiles/"
        if not path.startswith(prefix):
            return 404, {}, {"error": "not found"}
        profile_id, _, what = path[len(prefix):].rpartition("/")
        profile = self.profiles.get(profile_id)
        if profile is None:
            return 404, {}, {"error": "Resource not found"}
        if what == "external_ids":
            data = profile.get("external_ids", [])
            if "include" in query:
                wanted = query["include"][0].split(",")
                data = [e for e in data if e["type"] in wanted]
            return 200, {}, {"data": data, "cursor": {"url": "", "has_more": False, "next": ""}}
        if what == "traits":
            traits = profile.get("traits", {})
            if "include" in query:
                traits = {k: v for k, v in traits.items() if k in query["include"][0].split(",")}
            return 200, {}, {"traits": traits, "cursor": {"url": "", "has_more": False, "next": ""}}
        return 404, {}, None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    server = StubProfiles()
    yield server
    server.close()


class FakeTime:
    """Fake clock and sleep: sleeping advances the clock and is recorded."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client(stub, fake: FakeTime | None = None, **kwargs) -> ProfilesClient:
    fake = fake or FakeTime()
    return ProfilesClient(SPACE, TOKEN, host=stub.url, sleep=fake.sleep, clock=fake.clock, jitter=lambda: 0.5, **kwargs)


def ext(type_, id_):
    return {"source_id": "src", "collection": "users", "id": id_, "type": type_, "encoding": "none"}


def test_user_id_for_email_takes_the_first_user_id(stub):
    stub.profiles["email:ada+vip@example.com"] = {"external_ids": [
        ext("anonymous_id", "anon-1"), ext("user_id", "u_first"), ext("user_id", "u_second"), ext("email", "x")]}
    profiles = client(stub)
    assert profiles.user_id_for_email("ada+vip@example.com") == "u_first"
    [request] = stub.requests
    assert request["path"] == f"/v1/spaces/{SPACE}/collections/users/profiles/email:ada+vip@example.com/external_ids"
    assert "%40" in request["raw_path"] and "%2B" in request["raw_path"]  # the email is URL-encoded
    assert request["query"]["include"] == ["user_id"]
    assert request["auth"] == "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()


def test_unknown_profile_or_no_user_id_is_none(stub):
    stub.profiles["email:anon@example.com"] = {"external_ids": [ext("anonymous_id", "a1")]}
    profiles = client(stub)
    assert profiles.user_id_for_email("nobody@example.com") is None  # 404
    assert profiles.user_id_for_email("anon@example.com") is None
    assert profiles.user_id_for_email("") is None and len(stub.requests) == 2


def test_429_with_retry_after_then_success(stub):
    stub.profiles["email:ada@example.com"] = {"external_ids": [ext("user_id", "u_ada")]}
    stub.script = [(429, {"Retry-After": "3"}, {"error": "rate"}), (429, {}, {"error": "rate"})]
    fake = FakeTime()
    profiles = client(stub, fake)
    assert profiles.user_id_for_email("ada@example.com") == "u_ada"
    # Retry-After honoured; without it exponential backoff (0.5 * 2**1, jitter 0.5 -> 75% of it)
    assert fake.sleeps == [3.0, 0.75]
    assert len(stub.requests) == 3


def test_429_retries_are_bounded(stub):
    stub.script = [(429, {"Retry-After": "1"}, None)] * 3
    fake = FakeTime()
    profiles = client(stub, fake, max_retries=2)
    with pytest.raises(ProfilesError, match="rate limited after 3 attempts"):
        profiles.user_id_for_email("ada@example.com")
    assert fake.sleeps == [1.0, 1.0]


def test_huge_retry_after_is_capped(stub):
    stub.script = [(429, {"Retry-After": "86400"}, None), (404, {}, None)]
    fake = FakeTime()
    assert client(stub, fake).user_id_for_email("ada@example.com") is None
    assert fake.sleeps == [120.0]


def test_5xx_is_retried_with_backoff(stub):
    stub.profiles["email:ada@example.com"] = {"external_ids": [ext("user_id", "u_ada")]}
    stub.script = [(503, {}, None)]
    fake = FakeTime()
    assert client(stub, fake).user_id_for_email("ada@example.com") == "u_ada"
    assert fake.sleeps == [0.375]  # 0.5 * 2**0 * (0.5 + 0.5 * 0.5)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_name_the_token_setting_and_hide_secrets(stub, status, caplog):
    stub.script = [(status, {}, {"error": "unauthorized"})]
    with pytest.raises(ProfilesAuthError) as info:
        client(stub).user_id_for_email("ada@example.com")
    message = str(info.value)
    assert "SEGMENT_PROFILES_TOKEN" in message and str(status) in message
    assert TOKEN not in message and "ada@example.com" not in message
    assert TOKEN not in repr(client(stub))


def test_unreachable_host_names_the_host_setting_without_the_email(caplog):
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeTime()
    profiles = ProfilesClient(SPACE, TOKEN, host=f"http://127.0.0.1:{port}", sleep=fake.sleep, clock=fake.clock,
                              max_retries=1, timeout=2)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProfilesConnectionError) as info:
        profiles.user_id_for_email("ada@example.com")
    assert "SEGMENT_PROFILES_HOST" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "ada" not in str(info.value) and "ada" not in caplog.text and TOKEN not in caplog.text
    assert len(fake.sleeps) == 1


def test_requests_are_paced_by_the_shared_limiter(stub):
    fake = FakeTime()
    profiles = client(stub, fake, rate_limit=4.0)
    for i in range(3):
        profiles.user_id_for_email(f"p{i}@example.com")
    assert fake.sleeps == [0.25, 0.25]  # 4/s: the second and third wait for their slot


def test_latest_traits(stub):
    stub.profiles["user_id:u_ada"] = {"traits": {"utm_source": "newsletter", "utm_medium": "email", "plan": "x"}}
    profiles = client(stub)
    assert profiles.latest_traits(user_id="u_ada") == {"utm_source": "newsletter", "utm_medium": "email"}
    request = stub.requests[-1]
    assert request["path"].endswith("/profiles/user_id:u_ada/traits")
    assert request["query"]["limit"] == ["200"]
    assert request["query"]["include"] == ["utm_source,utm_medium,utm_campaign,utm_term,utm_content"]
    assert profiles.latest_traits(email="nobody@example.com", include=["utm_source"]) == {}
    with pytest.raises(ValueError):
        profiles.latest_traits(email="a@example.com", user_id="u")


def test_settings_validation_and_from_env():
    with pytest.raises(ValueError, match="SEGMENT_PROFILES_TOKEN"):
        ProfilesClient(SPACE, "")
    with pytest.raises(ValueError, match="SEGMENT_SPACE_ID"):
        ProfilesClient(" ", TOKEN)
    with pytest.raises(ValueError, match="SEGMENT_PROFILES_HOST"):
        ProfilesClient(SPACE, TOKEN, host="profiles.segment.com")
    assert ProfilesClient.from_env({}) is None
    with pytest.raises(ValueError, match="SEGMENT_PROFILES_TOKEN is not set"):
        ProfilesClient.from_env({"SEGMENT_SPACE_ID": SPACE})
    made = ProfilesClient.from_env({"SEGMENT_SPACE_ID": SPACE, "SEGMENT_PROFILES_TOKEN": TOKEN,
                                    "SEGMENT_PROFILES_HOST": "https://profiles.euw1.segment.com/"})
    assert made.host == "https://profiles.euw1.segment.com"


class FakeResponse:
    def __init__(self, status, body=None, headers=None):
        self.status_code, self._body, self.headers = status, body, headers or {}

    def json(self):
        return self._body


class FakeSession:
    """A ``requests.Session`` stand-in answering from a list."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def get(self, url, **kwargs):
        self.calls.append((url, kwargs))
        return self.answers.pop(0)


def test_fake_session_is_accepted():
    session = FakeSession([FakeResponse(429, headers={"Retry-After": "2"}),
                           FakeResponse(200, {"data": [{"type": "user_id", "id": "u9"}]})])
    fake = FakeTime()
    profiles = ProfilesClient(SPACE, TOKEN, host="http://127.0.0.1:9", sleep=fake.sleep, clock=fake.clock,
                              session=session)
    assert profiles.user_id_for_email("z@example.com") == "u9"
    assert fake.sleeps == [2.0]
    url, kwargs = session.calls[0]
    assert url.endswith("/profiles/email:z%40example.com/external_ids")
    assert kwargs["auth"] == (TOKEN, "") and kwargs["timeout"] == 10
