"""Request pacing, created windows, settings validation and 429 retries of the reader."""

import pytest

from s2s_pipeline.stripe.client import Window, split_window
from s2s_pipeline.stripe.errors import StripeConfigError
from s2s_pipeline.core.ratelimit import RequestPacer
from s2s_pipeline.stripe.settings import StripeSettings


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_spaces_requests_at_the_rate():
    t = FakeTime()
    pacer = RequestPacer(20, clock=t.clock, sleep=t.sleep)
    for _ in range(41):
        pacer.acquire()
    # 41 requests at 20/s: the first immediately, then one every 50 ms => 2.0 s.
    assert t.now - 100.0 == pytest.approx(2.0)


def test_pacer_burst_spends_idle_capacity_only_up_to_burst():
    t = FakeTime()
    pacer = RequestPacer(10, burst=3, clock=t.clock, sleep=t.sleep)
    t.now += 60  # long idle
    for _ in range(3):
        pacer.acquire()
    assert t.slept == []
    pacer.acquire()
    assert t.slept == [pytest.approx(0.1)]


@pytest.mark.parametrize("gte,lt,pieces", [(0, 86400 * 90, 8), (5, 17, 4), (0, 3, 10), (100, 101, 1)])
def test_split_window_covers_range_exactly_once(gte, lt, pieces):
    windows = split_window(gte, lt, pieces)
    assert windows[0].gte == gte and windows[-1].lt == lt
    assert all(a.lt == b.gte for a, b in zip(windows, windows[1:]))
    assert all(w.lt > w.gte for w in windows)
    assert len(windows) == min(pieces, lt - gte)


def test_window_params():
    assert Window(1, 2).params() == {"created": {"gte": 1, "lt": 2}}
    assert Window(None, None).params() == {}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"api_key": ""}, "STRIPE_API_KEY is not set"),
        ({"api_key": "pk_test_123"}, "STRIPE_API_KEY is malformed"),
        ({"api_key": "sk_test_1", "api_base": "localhost:12111"}, "STRIPE_API_BASE is malformed"),
        ({"api_key": "sk_test_1", "rate_limit": 50}, r"rate_limit must be in \(0, 25\]"),
        ({"api_key": "sk_live_1", "rate_limit": 101}, r"rate_limit must be in \(0, 100\]"),
        ({"api_key": "sk_test_1", "page_size": 101}, "page_size"),
    ],
)
def test_settings_errors_name_the_setting(kwargs, match):
    with pytest.raises(StripeConfigError, match=match):
        StripeSettings(**kwargs)


def test_settings_defaults():
    s = StripeSettings(api_key="rk_test_abc")
    assert (s.rate_limit, s.page_size, s.max_network_retries) == (20.0, 100, 3)
    assert StripeSettings(api_key="sk_live_x", rate_limit=100).is_live


def test_reader_retries_429_with_full_jitter_backoff_paced_counted_and_logged(caplog):
    import logging
    import random
    import re

    from s2s_devtools.fakes.stripe import StripeStandIn
    from s2s_pipeline.stripe.client import StripeReader

    slept = []
    with StripeStandIn() as standin:
        settings = StripeSettings(api_key="sk_test_s2s", api_base=standin.base_url, rate_limit=1e9, concurrency=1)
        reader = StripeReader(settings, sleep=slept.append, rng=random.Random(11))
        standin.faults.fail_next(2, status=429)
        caplog.set_level(logging.WARNING, logger="s2s_pipeline.stripe.client")
        assert list(reader.iter_pages("customer", Window(None, None))) == []
    seeded = random.Random(11)
    assert slept == [seeded.uniform(0, 0.5), seeded.uniform(0, 1.0)]  # full jitter of base 0.5 * 2**retry
    assert (reader.request_count, reader.rate_limited_count) == (3, 2)
    # Each warning names the rejected response's Request-Id (the stand-in's are random).
    assert [re.sub(r"req_\w+", "req_…", r.getMessage()) for r in caplog.records] == [
        f"Stripe rate limit (429) on customers (Request-Id req_…); retry 1 of 8 in {slept[0]:.2f}s",
        f"Stripe rate limit (429) on customers (Request-Id req_…); retry 2 of 8 in {slept[1]:.2f}s",
    ]
