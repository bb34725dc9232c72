"""A failed-payment alert is never undone by a trait table computed before it (issue 11, finding 3).

The nightly job computes ``customer_traits`` at T0; a failed-payment alert at T1 > T0 sends
``payment_delinquent = true``; the nightly's ``segment_profiles`` step then diffs the T0 table
against pushed state. It must not send the T0 value (false) over the alert's; the next trait run
computed after the invoice is paid (T2) sends false. Pushed state is written compare-and-set with
the time of the value it records, so whichever write lands last, the newer value stays.
"""

import pytest
from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn

from s2s_pipeline.core.contract import PAYMENT_FAILED
from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.segment.delivery import SegmentSettings
from s2s_pipeline.segment.event_mapping import TrackCall
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions, sync_profiles
from s2s_pipeline.segment.track_sync import deliver_calls
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.refresh import refresh_customer_traits

WRITE_KEY = "wk_alert_not_undone"
T0 = 1_780_000_000  # traits computed
T1 = T0 + 60  # the failed payment's Stripe event
T2 = T0 + 3600  # the next trait run, after the invoice is paid


@pytest.fixture
def world(state_url):
    account = generate_account(customers=8, seed=5, now=T0 - 86400)
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        seed_standin(standin, account, copy=True)
        store = StateStore(make_engine(state_url))
        reader = StripeReader(StripeSettings(api_key="sk_test_a", api_base=standin.base_url, rate_limit=1000))
        sync_changes(reader, store)
        yield sink, store
        store.engine.dispose()


def _settings(sink):
    return SegmentSettings(write_key=WRITE_KEY, host=sink.base_url, max_retries=1, upload_size=10)


def _delinquent_values(sink, customer_id):
    return [m["traits"]["payment_delinquent"] for m in sink.accepted
            if m["type"] == "identify" and "payment_delinquent" in m.get("traits", {})
            and (m.get("userId") == customer_id or m.get("anonymousId") == customer_id
                 or m["traits"].get("stripe_customer_id") == customer_id)]


def _alert(store, sink, customer_id, at):
    call = TrackCall(event=PAYMENT_FAILED, stripe_customer_id=customer_id, properties={"amount": 10.0},
                     message_id=f"track-{customer_id}-{at}", dedupe_key=f"event:evt_{at}", timestamp=at)
    _, outcome = deliver_calls(store, _settings(sink), [(f"evt_{at}", call)], profiles=None,
                                    config=TraitsConfig(), now=at)
    assert outcome == {f"evt_{at}": "sent"}


def _a_payer(store):
    table = store.traits.read()
    rows = table[~table["payment_delinquent"].astype(bool)]
    return min(rows["stripe_customer_id"])


def test_the_nightly_profiles_step_does_not_undo_an_alert_sent_after_its_traits(world):
    sink, store = world
    refresh_customer_traits(store, TraitsConfig(), T0)
    sync_profiles(store, _settings(sink), None, ProfileSyncOptions(), T0)  # an earlier night: false pushed
    customer = _a_payer(store)
    assert _delinquent_values(sink, customer) == [False]

    sink.clear()
    _alert(store, sink, customer, T1)
    assert _delinquent_values(sink, customer) == [True]

    sink.clear()
    sync_profiles(store, _settings(sink), None, ProfileSyncOptions(), T1 + 5)  # the T0 table, after the alert
    assert _delinquent_values(sink, customer) == []
    assert store.pushed_traits.read_for([customer]).iloc[0]["trait_payment_delinquent"] in (True, 1)

    sink.clear()
    refresh_customer_traits(store, TraitsConfig(), T2)  # computed after the invoice was paid
    sync_profiles(store, _settings(sink), None, ProfileSyncOptions(), T2)
    assert _delinquent_values(sink, customer) == [False]


def test_an_older_record_landing_last_does_not_overwrite_a_newer_one(world):
    sink, store = world
    refresh_customer_traits(store, TraitsConfig(), T0)
    sync_profiles(store, _settings(sink), None, ProfileSyncOptions(), T0)
    customer = _a_payer(store)
    _alert(store, sink, customer, T1)
    before = store.pushed_traits.read_for([customer]).iloc[0].to_dict()
    # The nightly's profiles step computed from the T0 table finishes last and records its values.
    store.pushed_traits.record_identified([{**before, "trait_payment_delinquent": False,
                                            "payment_delinquent_as_of": T0, "identify_message_id": "older"}], as_of=T0)
    after = store.pushed_traits.read_for([customer]).iloc[0]
    assert after["trait_payment_delinquent"] in (True, 1)
    # An alert about an older failure, recorded after a newer false, does not bring true back.
    refresh_customer_traits(store, TraitsConfig(), T2)
    sync_profiles(store, _settings(sink), None, ProfileSyncOptions(), T2)
    sink.clear()
    _alert(store, sink, customer, T1 + 1)
    assert _delinquent_values(sink, customer) == []
    assert store.pushed_traits.read_for([customer]).iloc[0]["trait_payment_delinquent"] in (False, 0)
