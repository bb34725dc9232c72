"""Which failed Stripe tries are retried, on which budget, and how they are named (Stripe's documented rules)."""

import pytest
import stripe

from s2s_pipeline.core.retry import Attempt
from s2s_pipeline.stripe.retries import (
    RetryBudget,
    describe_failure,
    request_id_of,
    request_retry_policy,
    retry_kind,
)


def api_error(cls, status, headers=None):
    if cls is stripe.InvalidRequestError:
        return cls("refused", None, http_status=status, headers=headers)
    return cls("failed", http_status=status, headers=headers)


@pytest.mark.parametrize(
    "error,kind",
    [
        (api_error(stripe.RateLimitError, 429), "rate_limit"),
        (api_error(stripe.RateLimitError, 429, {"Stripe-Should-Retry": "true"}), "rate_limit"),
        (api_error(stripe.RateLimitError, 429, {"Stripe-Should-Retry": "false"}), None),
        (api_error(stripe.APIError, 500), "transient"),
        (api_error(stripe.APIError, 503, {"stripe-should-retry": "false"}), None),  # any header case
        (api_error(stripe.APIError, 409), "transient"),
        (api_error(stripe.InvalidRequestError, 400), None),
        (api_error(stripe.InvalidRequestError, 400, {"Stripe-Should-Retry": "true"}), "transient"),
        (api_error(stripe.InvalidRequestError, 404), None),
        (api_error(stripe.AuthenticationError, 401), None),
        (stripe.APIConnectionError("timed out", should_retry=True), "transient"),
        (stripe.APIConnectionError("bad certificate", should_retry=False), None),
        (ValueError("not from Stripe"), None),
    ],
)
def test_retry_kind_follows_stripe_should_retry_then_the_status(error, kind):
    assert retry_kind(error) == kind


def test_request_id_is_read_whatever_the_header_case():
    assert request_id_of(api_error(stripe.APIError, 500, {"Request-Id": "req_A"})) == "req_A"
    assert request_id_of(api_error(stripe.APIError, 500, {"request-id": "req_b"})) == "req_b"
    assert describe_failure(api_error(stripe.APIError, 502)) == "HTTP 502, Request-Id not sent"
    assert describe_failure(stripe.APIConnectionError("refused")) == "connection failure, no response, so no Request-Id"


def test_one_budget_each_kind_capping_the_shared_count():
    """Retries share one count: a 429 at the 3rd try is retried (2 retries made, fewer than 8),
    a 503 at the 4th is not (3 made, the network budget)."""
    outcomes = iter([api_error(stripe.APIError, 500), api_error(stripe.APIError, 500),
                     api_error(stripe.RateLimitError, 429), api_error(stripe.APIError, 503), "page"])
    tries = []

    def call():
        tries.append(1)
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    policy = request_retry_policy(RetryBudget(max_network_retries=3, max_rate_limit_retries=8),
                                  backoff_base_seconds=0.5, backoff_cap_seconds=30, random=lambda: 0.0,
                                  before_attempt=lambda: None, sleep=lambda _s: None)
    with pytest.raises(stripe.APIError):  # the 503 is the 4th try: 3 retries made, the network budget spent
        policy.call(call)
    assert len(tries) == 4
    assert policy.max_attempts == 9
    assert policy.should_retry(Attempt(3, error=api_error(stripe.RateLimitError, 429)))
    assert not policy.should_retry(Attempt(9, error=api_error(stripe.RateLimitError, 429)))
