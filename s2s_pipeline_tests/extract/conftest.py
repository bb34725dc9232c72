"""A fixture-backed Stripe stand-in and a reader pointed at it."""

import pytest

from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings

API_KEY = "sk_test_s2s"


@pytest.fixture
def standin():
    with StripeStandIn() as server:
        yield server


@pytest.fixture
def make_reader(standin):
    """A reader against the stand-in; backoff sleeps are recorded, not slept."""

    def make(**overrides) -> StripeReader:
        slept: list[float] = []
        settings = StripeSettings(api_key=API_KEY, api_base=standin.base_url,
                                  **{"rate_limit": 1000, "concurrency": 4, **overrides})
        reader = StripeReader(settings, sleep=slept.append)
        reader.slept = slept
        return reader

    return make
