"""Acknowledged group values are recorded compare-and-set, like identify values (issue 11, finding 6).

Each recorded group row carries the Stripe-clock time of the values it holds (``group_as_of``: the
computation time of the trait table they came from). A profile pass that computed from an older
table and records last leaves the newer group values as they are.
"""

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn

from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.segment.delivery import SegmentSettings
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions, sync_profiles
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.refresh import refresh_customer_traits

T0 = 1_780_000_000  # an older trait table
T1 = T0 + 3600  # a newer one
WRITE_KEY = "wk_groups_not_undone"


def group_row(plan: str, message_id: str) -> dict:
    return {"stripe_customer_id": "cus_1", "group_id": "acme", "group_name": "Acme", "group_plan": plan,
            "group_mrr": 10.0, "group_message_id": message_id, "group_pushed_at": T1}


def test_an_older_group_record_landing_last_does_not_overwrite_a_newer_one(state_store):
    pushed = state_store.pushed_traits
    pushed.record_grouped([group_row("pro", "newer")], as_of=T1)
    pushed.record_grouped([group_row("basic", "older")], as_of=T0)  # the pass that computed at T0 ends last
    row = pushed.read_for(["cus_1"]).iloc[0]
    assert (row["group_plan"], row["group_message_id"], row["group_as_of"]) == ("pro", "newer", T1)
    # Values of the same time or newer replace them.
    pushed.record_grouped([group_row("team", "same time")], as_of=T1)
    assert pushed.read_for(["cus_1"]).iloc[0]["group_plan"] == "team"


def test_group_and_identify_records_keep_their_own_times(state_store):
    pushed = state_store.pushed_traits
    pushed.record_grouped([group_row("pro", "group")], as_of=T1)
    # An identify record computed earlier neither moves the group time nor is refused by it.
    pushed.record_identified([{"stripe_customer_id": "cus_1", "trait_plan": "basic", "identify_pushed_at": T0,
                               "identify_message_id": "identify"}], as_of=T0)
    row = pushed.read_for(["cus_1"]).iloc[0]
    assert (row["trait_plan"], row["traits_as_of"]) == ("basic", T0)
    assert (row["group_plan"], row["group_as_of"]) == ("pro", T1)


def test_a_profile_pass_records_its_groups_at_the_trait_table_time(state_url):
    account = generate_account(customers=8, seed=5, now=T0 - 86400)
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        seed_standin(standin, account, copy=True)
        store = StateStore(make_engine(state_url))
        try:
            reader = StripeReader(StripeSettings(api_key="sk_test_g", api_base=standin.base_url, rate_limit=1000))
            sync_changes(reader, store)
            refresh_customer_traits(store, TraitsConfig(), T0)
            settings = SegmentSettings(write_key=WRITE_KEY, host=sink.base_url, max_retries=1, upload_size=10)
            sync_profiles(store, settings, None, ProfileSyncOptions(), T0 + 60)

            grouped = [m for m in sink.accepted if m["type"] == "group"]
            assert grouped, "the generated account has B2B customers"
            pushed = store.pushed_traits.read_all()
            recorded = pushed[pushed["group_pushed_at"].notna()]
            assert len(recorded) == len(grouped)
            assert set(recorded["group_as_of"]) == {T0}  # the table's time, not the pass's (T0 + 60)
        finally:
            store.dispose()
