"""Contract v2 ``mrr``: any scheduled cancellation (``cancel_at_period_end``, or ``cancel_at`` set) gives 0.

Stripe's default Billing analytics rule takes a subscription out of MRR at the
API call that schedules its end (REFERENCE §A.1, [ST-CXL]); ``cancel_at`` is
"a date in the future at which the subscription will automatically get
canceled" (stripe-python 16.1.0 ``Subscription.cancel_at``), so it is a
scheduled cancellation too.
"""

from __future__ import annotations

import pytest

from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline_tests.traits.builders import DAY, NOW, Mirror


def mrr_of(**subscription) -> float:
    m = Mirror().customer("cus").price("p20", 2000, nickname="Pro")
    m.subscription("sub", "cus", ["p20"], **subscription)
    return float(compute_customer_traits(m.frames(), TraitsConfig(), NOW).set_index("stripe_customer_id")
                 .loc["cus", "mrr"])


@pytest.mark.parametrize("schedule, expected", [
    ({}, 20.0),  # nothing scheduled: 2,000¢ x 1 = $20.00
    ({"cancel_at_period_end": True, "cancel_at": NOW + 20 * DAY}, 0.0),  # the flag (Stripe sets cancel_at too)
    ({"cancel_at_period_end": True}, 0.0),  # the flag alone (older payloads without cancel_at)
    ({"cancel_at": NOW + 45 * DAY}, 0.0),  # a date in the future, flag false: scheduled, out of MRR
    ({"cancel_at": NOW - DAY}, 0.0),  # the date passed and Stripe has not ended it yet: still scheduled
])
def test_a_scheduled_cancellation_leaves_mrr(schedule, expected):
    assert mrr_of(**schedule) == expected


def test_a_past_due_subscription_with_cancel_at_leaves_mrr_too():
    # past_due counts for MRR (2,000¢ -> $20.00) until a cancellation is scheduled
    assert mrr_of(status="past_due") == 20.0
    assert mrr_of(status="past_due", cancel_at=NOW + 10 * DAY) == 0.0
