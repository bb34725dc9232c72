"""The reader's retries against a local server that counts requests.

One retry budget per request (stripe-python's own retries are off), every
attempt through the pacer, ``Stripe-Should-Retry`` honoured, the Request-Id in
every retry warning and final error, and no silent fallback when Stripe
refuses an expansion. Sleeps and jitter are injected: nothing here waits.
"""

from __future__ import annotations

import logging

import pytest
import stripe

from s2s_pipeline.stripe.client import StripeReader, Window
from s2s_pipeline.stripe.errors import ExpansionRefused, StripeConfigError
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_pipeline_tests.stripe.counting_server import CountingStripe, ok, stripe_error

API_KEY = "sk_test_counting_secret_key"
NETWORK_RETRIES = 2
RATE_LIMIT_RETRIES = 4

RATE_LIMITED = "Too many requests hit the API too quickly."
LOCK_TIMEOUT = "This object cannot be accessed right now because another API request is accessing it."


class CountingPacer:
    """A pacer that counts the slots it hands out and never waits."""

    def __init__(self) -> None:
        self.slots = 0

    def acquire(self) -> None:
        self.slots += 1


class MidJitter:
    """The jitter source: always the middle of the range."""

    def random(self) -> float:
        return 0.5


def make_reader(base_url: str, **overrides) -> tuple[StripeReader, CountingPacer, list[float]]:
    settings = StripeSettings(api_key=API_KEY, api_base=base_url, concurrency=1,
                              **{"max_network_retries": NETWORK_RETRIES,
                                 "max_rate_limit_retries": RATE_LIMIT_RETRIES, **overrides})
    pacer, slept = CountingPacer(), []
    return StripeReader(settings, sleep=slept.append, rng=MidJitter(), pacer=pacer), pacer, slept


def list_customers(reader: StripeReader) -> list[dict]:
    return [o for page in reader.iter_pages("customer", Window(None, None)) for o in page.objects]


@pytest.fixture
def warnings(caplog):
    caplog.set_level(logging.WARNING, logger="s2s_pipeline.stripe")
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- Stripe-Should-Retry ------------------------------------------------------------------------------


def test_429_that_stripe_says_not_to_retry_is_one_request_and_names_its_request_id(warnings):
    with CountingStripe(stripe_error(429, RATE_LIMITED, code="rate_limit", should_retry="false")) as server:
        reader, pacer, slept = make_reader(server.base_url)
        with pytest.raises(stripe.RateLimitError) as raised:
            list_customers(reader)
    assert server.count == 1 == pacer.slots
    assert "req_test_1" in str(raised.value)
    assert slept == [] and warnings() == []


def test_persistent_429_that_stripe_says_to_retry_makes_one_request_per_try_all_paced(warnings):
    with CountingStripe(stripe_error(429, RATE_LIMITED, code="rate_limit", should_retry="true")) as server:
        reader, pacer, slept = make_reader(server.base_url)
        with pytest.raises(stripe.RateLimitError) as raised:
            list_customers(reader)
    # Not (1 + 4) * (1 + 2): stripe-python does not retry inside our tries.
    assert server.count == 1 + RATE_LIMIT_RETRIES == pacer.slots
    assert (reader.request_count, reader.rate_limited_count) == (5, 5)
    assert slept == [0.25, 0.5, 1.0, 2.0]  # full jitter at mid-range: 0.5 * 2**n / 2
    messages = warnings()
    assert len(messages) == RATE_LIMIT_RETRIES
    for n, (message, request_id) in enumerate(zip(messages, server.request_ids()), start=1):
        assert request_id in message and f"retry {n} of {RATE_LIMIT_RETRIES}" in message
    assert server.request_ids()[-1] in str(raised.value)
    assert raised.value.__notes__ == [
        "while reading customers from Stripe, after 5 tries (rate limit (429), Request-Id req_test_5)"]


def test_plain_429_is_retried_on_the_rate_limit_budget():
    with CountingStripe(stripe_error(429, RATE_LIMITED, code="rate_limit")) as server:
        reader, pacer, _ = make_reader(server.base_url)
        with pytest.raises(stripe.RateLimitError):
            list_customers(reader)
    assert server.count == 1 + RATE_LIMIT_RETRIES == pacer.slots


def test_5xx_that_stripe_says_not_to_retry_is_one_request():
    with CountingStripe(stripe_error(500, "boom", type_="api_error", should_retry="false")) as server:
        reader, pacer, _ = make_reader(server.base_url)
        with pytest.raises(stripe.APIError) as raised:
            list_customers(reader)
    assert server.count == 1 == pacer.slots
    assert "req_test_1" in str(raised.value)


# -- server faults and lock timeouts --------------------------------------------------------------


def test_5xx_then_success_is_two_requests_and_the_warning_names_the_request_id(warnings):
    customer = {"id": "cus_1", "object": "customer", "created": 1}
    with CountingStripe(stripe_error(503, "Sorry, something went wrong.", type_="api_error"), ok([customer])) as server:
        reader, pacer, slept = make_reader(server.base_url)
        assert list_customers(reader) == [customer]
    assert server.count == 2 == pacer.slots
    assert slept == [0.25]
    (message,) = warnings()
    assert "HTTP 503" in message and "req_test_1" in message and "retry 1 of 2" in message


def test_persistent_5xx_is_retried_on_the_network_budget():
    with CountingStripe(stripe_error(502, "bad gateway", type_="api_error")) as server:
        reader, pacer, _ = make_reader(server.base_url)
        with pytest.raises(stripe.APIError) as raised:
            list_customers(reader)
    assert server.count == 1 + NETWORK_RETRIES == pacer.slots
    assert "req_test_3" in str(raised.value)


def test_lock_timeout_409_is_retried():
    with CountingStripe(stripe_error(409, LOCK_TIMEOUT, code="lock_timeout", should_retry="true"), ok()) as server:
        reader, pacer, _ = make_reader(server.base_url)
        assert list_customers(reader) == []
    assert server.count == 2 == pacer.slots


def test_zero_network_retries_means_one_try_for_a_5xx():
    with CountingStripe(stripe_error(500, "boom", type_="api_error"), ok()) as server:
        reader, _, _ = make_reader(server.base_url, max_network_retries=0)
        with pytest.raises(stripe.APIError):
            list_customers(reader)
    assert server.count == 1


def test_client_errors_are_not_retried_and_name_the_request_id():
    with CountingStripe(stripe_error(401, "Invalid API Key provided")) as server:
        reader, pacer, _ = make_reader(server.base_url)
        with pytest.raises(StripeConfigError) as raised:
            list_customers(reader)
    assert server.count == 1 == pacer.slots
    assert "req_test_1" in str(raised.value)
    assert API_KEY not in str(raised.value)


def test_unreachable_stripe_is_retried_on_the_network_budget_every_try_paced(warnings):
    with CountingStripe(ok()) as server:
        url = server.base_url  # a port nobody listens on once the server is gone
    reader, pacer, _ = make_reader(url)
    with pytest.raises(ConnectionError, match="could not reach Stripe"):
        list_customers(reader)
    assert pacer.slots == 1 + NETWORK_RETRIES
    messages = warnings()
    assert len(messages) == NETWORK_RETRIES and all("no response, so no Request-Id" in m for m in messages)
    assert all(API_KEY not in m for m in messages)


# -- expansions -------------------------------------------------------------------------------------


def test_refused_expand_fails_naming_the_parameter_without_a_silent_retry():
    refused = stripe_error(400, "This property cannot be expanded (tiers).", param="expand")
    with CountingStripe(refused, ok()) as server:
        reader, _, _ = make_reader(server.base_url)
        with pytest.raises(ExpansionRefused) as raised:
            list(reader.iter_pages("price", Window(None, None)))
    assert server.count == 1  # no second listing without the expansion
    message = str(raised.value)
    assert "expand" in message and "data.tiers" in message and "req_test_1" in message
    assert "expand_unsupported" in message  # tells a stand-in's operator what to set


def test_refused_expand_on_a_retrieve_fails_naming_the_parameter():
    refused = stripe_error(400, "This property cannot be expanded (discounts).", param="expand")
    with CountingStripe(refused) as server:
        reader, _, _ = make_reader(server.base_url)
        with pytest.raises(ExpansionRefused, match="items.data.discounts"):
            reader.retrieve("subscription", "sub_1")
    assert server.count == 1


def test_stand_in_configured_as_unable_to_expand_is_asked_without_expand():
    price = {"id": "price_1", "object": "price", "created": 1}
    with CountingStripe(ok([price]), ok()) as server:
        reader, _, _ = make_reader(server.base_url, expand_unsupported=True)
        assert [o for page in reader.iter_pages("price", Window(None, None)) for o in page.objects] == [price]
        reader.retrieve("subscription", "sub_1")
    assert server.count == 2
    assert all(not any(k.startswith("expand") for k in r.query) for r in server.requests)


def test_expansions_are_sent_by_default():
    with CountingStripe(ok()) as server:
        reader, _, _ = make_reader(server.base_url)
        list(reader.iter_pages("price", Window(None, None)))
    assert server.requests[0].query["expand[0]"] == ["data.tiers"]
