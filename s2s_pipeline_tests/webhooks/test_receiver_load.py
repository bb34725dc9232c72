"""The receiver under a small steady load on loopback: every signed webhook stored once, none lost.

A quick version of ``bench/webhook_load_bench.py`` (1,000 webhooks in 10 s,
p95 answer < 200 ms, recorded in docs/performance.md): 200 webhooks and 10
redeliveries over 2 s to the receiver served by uvicorn in this process.
The answer-time bound here is loose (this machine is shared); the bench
measures the target.
"""

from __future__ import annotations

from s2s_devtools.harness.receiver import running_receiver
from s2s_devtools.harness.webhook_load import send_load
from s2s_pipeline.store.state_store import StateStore

SECRET = "whsec_test_load"


def test_given_200_signed_webhooks_in_2_s_then_all_are_stored_once_and_answered_200(state_url):
    with running_receiver(SECRET, state_url) as receiver:
        result = send_load(receiver.url, SECRET, count=200, seconds=2.0, duplicates=0.05, workers=8)
    store = StateStore.from_url(state_url)
    try:
        assert result.errors == 0 and result.statuses == {200: 210}
        assert store.inbox.count() == 200  # redeliveries stored once, nothing lost
    finally:
        store.dispose()
    assert result.percentile(95) < 1000, f"p95 {result.percentile(95)} ms"
