"""The shared retry policy, against a counting HTTP server on 127.0.0.1 and plain fakes.

Nothing here waits: every policy gets a recording ``sleep``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from email.utils import format_datetime
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from s2s_pipeline.core.retry import Attempt, RetryPolicy, equal_jitter, full_jitter, retry_after_seconds


class CountingServer:
    """Answers GETs from ``script`` (status, headers) in order, then 200; counts every request."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]):
        self.script = list(script)
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.hits += 1
                status, headers = server.script.pop(0) if server.script else (200, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/"
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def serve():
    servers: list[CountingServer] = []

    def start(*script: tuple[int, dict[str, str]]) -> CountingServer:
        servers.append(CountingServer(list(script)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def rate_limited_or_5xx(attempt: Attempt) -> bool:
    return not attempt.failed and (attempt.result.status_code == 429 or attempt.result.status_code >= 500)


def http_policy(slept: list[float], **overrides) -> RetryPolicy:
    settings = dict(
        max_retries=3,
        should_retry=rate_limited_or_5xx,
        backoff=lambda n: 0.5 * 2**n,
        wait_hint=lambda a: None if a.failed else retry_after_seconds(a.result.headers, ceiling=60),
        sleep=slept.append,
    )
    return RetryPolicy(**{**settings, **overrides})


class Flaky:
    """A call that raises the given errors (or returns the given values) in turn, then returns "ok"."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return "ok"


def retry_on(*types):
    return lambda attempt: isinstance(attempt.error, types)


# -- over HTTP --------------------------------------------------------------------------------------


def test_given_429_then_success_when_called_then_retries_once(serve):
    server = serve((429, {}))
    slept: list[float] = []
    response = http_policy(slept).call(lambda: requests.get(server.url, timeout=5))
    assert response.status_code == 200
    assert server.hits == 2
    assert slept == [0.5]


def test_given_retry_after_when_retrying_then_the_server_wait_is_used_instead_of_the_backoff(serve):
    server = serve((429, {"Retry-After": "7"}), (503, {}))
    slept: list[float] = []
    response = http_policy(slept).call(lambda: requests.get(server.url, timeout=5))
    assert response.status_code == 200 and server.hits == 3
    assert slept == [7.0, 1.0]  # the hint, then the backoff of retry 1 (0.5 * 2**1)


def test_given_persistent_429_when_retries_run_out_then_the_last_answer_is_returned(serve):
    server = serve(*[(429, {})] * 10)
    slept: list[float] = []
    response = http_policy(slept, max_retries=2).call(lambda: requests.get(server.url, timeout=5))
    assert response.status_code == 429
    assert server.hits == 3
    assert slept == [0.5, 1.0]


def test_given_an_answer_the_predicate_rejects_when_called_then_it_is_returned_without_a_retry(serve):
    server = serve((404, {}))
    slept: list[float] = []
    assert http_policy(slept).call(lambda: requests.get(server.url, timeout=5)).status_code == 404
    assert server.hits == 1 and slept == []


def test_given_pacing_when_retrying_then_every_attempt_is_paced_before_it_is_sent(serve):
    server = serve((429, {}), (429, {}))
    events: list[str] = []

    def send():
        events.append(f"request {server.hits + 1}")
        return requests.get(server.url, timeout=5)

    policy = http_policy([], before_attempt=lambda: events.append("pace"), sleep=lambda s: events.append("wait"))
    policy.call(send)
    assert events == ["pace", "request 1", "wait", "pace", "request 2", "wait", "pace", "request 3"]


# -- the retry decision -----------------------------------------------------------------------------


def test_given_an_error_the_predicate_accepts_when_retries_run_out_then_that_error_is_raised_unchanged():
    errors = [ConnectionError(f"down {i}") for i in range(3)]
    flaky = Flaky(*errors)
    policy = RetryPolicy(max_retries=2, should_retry=retry_on(ConnectionError), backoff=lambda n: 1.0,
                         sleep=lambda s: None)
    with pytest.raises(ConnectionError) as info:
        policy.call(flaky)
    assert info.value is errors[-1]
    assert flaky.calls == 3


def test_given_an_error_the_predicate_rejects_when_called_then_it_is_raised_at_once():
    flaky = Flaky(KeyError("no such key"))
    slept: list[float] = []
    policy = RetryPolicy(max_retries=5, should_retry=retry_on(ConnectionError), backoff=lambda n: 1.0,
                         sleep=slept.append)
    with pytest.raises(KeyError):
        policy.call(flaky)
    assert flaky.calls == 1 and slept == []


def test_given_errors_then_success_when_called_then_the_answer_is_returned():
    flaky = Flaky(TimeoutError(), TimeoutError())
    slept: list[float] = []
    policy = RetryPolicy(max_retries=2, should_retry=retry_on(TimeoutError), backoff=lambda n: 0.1 * (n + 1),
                         sleep=slept.append)
    assert policy.call(flaky) == "ok"
    assert flaky.calls == 3
    assert slept == pytest.approx([0.1, 0.2])


def test_given_zero_retries_when_the_first_try_fails_then_it_is_not_tried_again():
    flaky = Flaky(ConnectionError())
    policy = RetryPolicy(max_retries=0, should_retry=retry_on(ConnectionError), backoff=lambda n: 1.0,
                         sleep=lambda s: pytest.fail("must not wait"))
    assert policy.max_attempts == 1
    with pytest.raises(ConnectionError):
        policy.call(flaky)
    assert flaky.calls == 1


def test_given_a_negative_retry_count_when_building_the_policy_then_it_is_refused():
    with pytest.raises(ValueError, match="max_retries must not be negative"):
        RetryPolicy(max_retries=-1, should_retry=retry_on(Exception), backoff=lambda n: 0.0)


def test_given_retries_when_retrying_then_on_retry_hears_the_attempt_number_and_the_wait_before_it():
    flaky = Flaky(ConnectionError("a"), "busy")
    heard: list[tuple[int, str, float]] = []
    slept: list[float] = []

    def should_retry(attempt: Attempt) -> bool:
        return attempt.failed or attempt.result == "busy"

    def on_retry(attempt: Attempt, wait: float) -> None:
        assert slept == [2.0] * (attempt.number - 1)  # told before the wait, not after
        heard.append((attempt.number, repr(attempt.error) if attempt.failed else attempt.result, wait))

    policy = RetryPolicy(max_retries=3, should_retry=should_retry, backoff=lambda n: 2.0, sleep=slept.append)
    assert policy.call(flaky, on_retry=on_retry) == "ok"
    assert heard == [(1, "ConnectionError('a')", 2.0), (2, "busy", 2.0)]


def test_given_the_last_retry_fails_then_no_backoff_is_drawn_for_a_retry_that_will_not_happen():
    asked: list[int] = []

    def backoff(n: int) -> float:
        asked.append(n)
        return 0.0

    policy = RetryPolicy(max_retries=2, should_retry=retry_on(ConnectionError), backoff=backoff, sleep=lambda s: None)
    with pytest.raises(ConnectionError):
        policy.call(Flaky(*[ConnectionError()] * 5))
    assert asked == [0, 1]  # drawing jitter for a third retry would shift a seeded random stream


def test_given_one_policy_shared_by_threads_when_they_retry_together_then_each_call_counts_its_own_retries():
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    policy = RetryPolicy(max_retries=2, should_retry=retry_on(ConnectionError), backoff=lambda n: 1.0, sleep=sleep)
    calls = [Flaky(ConnectionError(), ConnectionError()) for _ in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(policy.call, calls))
    assert results == ["ok"] * 16
    assert [c.calls for c in calls] == [3] * 16
    assert len(slept) == 32


# -- backoffs ---------------------------------------------------------------------------------------


def test_given_full_jitter_when_retrying_then_the_wait_is_a_random_share_of_a_doubling_capped_ceiling():
    half = full_jitter(0.5, 3.0, lambda: 0.5)
    assert [half(n) for n in range(5)] == [0.25, 0.5, 1.0, 1.5, 1.5]  # ceilings 0.5, 1, 2, then the cap 3
    assert full_jitter(0.5, 3.0, lambda: 0.0)(4) == 0.0  # may retry at once: the widest spread


def test_given_full_jitter_with_a_seeded_random_then_it_draws_what_uniform_zero_to_ceiling_draws():
    import random

    ours, theirs = random.Random(7), random.Random(7)
    backoff = full_jitter(0.5, 30.0, ours.random)
    assert [backoff(n) for n in range(8)] == [theirs.uniform(0, min(30.0, 0.5 * 2**n)) for n in range(8)]


def test_given_equal_jitter_when_retrying_then_the_wait_is_between_half_and_all_of_the_capped_ceiling():
    assert [equal_jitter(0.5, 3.0, lambda: 0.0)(n) for n in range(4)] == [0.25, 0.5, 1.0, 1.5]
    assert [equal_jitter(0.5, 3.0, lambda: 0.5)(n) for n in range(4)] == [0.375, 0.75, 1.5, 2.25]


# -- Retry-After ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": " 1.5 "}, 1.5),
        ({"Retry-After": "86400"}, 120.0),  # capped
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_given_a_retry_after_header_when_read_then_it_gives_bounded_seconds_or_none(headers, seconds):
    assert retry_after_seconds(headers, ceiling=120.0) == seconds


def test_given_retry_after_as_an_http_date_when_read_then_it_is_the_time_until_then():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
    header = {"Retry-After": format_datetime(datetime(2026, 1, 2, 3, 4, 35, tzinfo=timezone.utc), usegmt=True)}
    assert retry_after_seconds(header, ceiling=120.0, now=lambda: now) == 30.0
    assert retry_after_seconds(header, ceiling=120.0, now=lambda: now + 60) == 0.0  # already past


def test_given_requests_case_insensitive_headers_when_read_then_retry_after_is_found_in_any_case(serve):
    server = serve((429, {"retry-after": "4"}))
    response = requests.get(server.url, timeout=5)
    assert retry_after_seconds(response.headers, ceiling=120.0) == 4.0
