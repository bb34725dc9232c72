"""The customer_traits asset: materialized from a mirrored demo account, with metadata and passing checks."""

import pytest
from dagster import DagsterInstance, materialize

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.resources import SegmentResource
from s2s_pipeline.defs.stripe.assets import stripe_change_feed
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_pipeline.defs.traits.assets import customer_traits
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.traits_table import TraitsTable


@pytest.fixture(scope="module")
def account():
    return generate_account(customers=60, seed=9)


def run(standin, state_url, rules=None):
    return materialize(
        [stripe_change_feed, customer_traits],  # the checks are customer_traits' own (same step)
        resources={"stripe": StripeResource(api_key="sk_test_t", api_base=standin.base_url, rate_limit=1000),
                   "state_store": StateStoreResource(database_url=state_url),
                   "trait_rules": rules or TraitRulesResource(),
                   "segment": SegmentResource(write_key="wk_test", host="http://127.0.0.1:9")},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_traits_materialize_with_metadata_and_checks(state_url, account):
    with StripeStandIn() as standin:
        seed_standin(standin, account)
        result = run(standin, state_url)
    assert result.success
    (mat,) = result.asset_materializations_for_node("customer_traits")
    meta = {k: v.value for k, v in mat.metadata.items()}
    customers = [c for c in account.of_type("customer") if not c.get("deleted")]
    assert meta["customers"] == len(customers) == meta["dagster/row_count"]
    assert sum(meta["tier_distribution"].values()) == len(customers)
    assert set(meta["mrr_by_currency"]) <= {"usd", "eur", "gbp", "jpy"}
    assert "stripe_customer_id" in meta["preview"] and "@" not in meta["preview"]  # ids, never emails
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"one_row_per_customer": True, "non_negative_money": True,
                      "refund_rate_within_bounds": True, "spend_tier_valid": True,
                      "quarantine_empty": True}  # stripe_change_feed's: a clean demo account holds nothing
    engine = make_engine(state_url)
    stored = TraitsTable(engine).read()
    engine.dispose()
    assert sorted(stored["stripe_customer_id"]) == sorted(c["id"] for c in customers)


def test_invalid_trait_rules_fail_with_a_clear_message(state_url, account):
    with StripeStandIn() as standin:
        seed_standin(standin, account)
        result = run(standin, state_url, TraitRulesResource(mrr_coupon_rule="sometimes"))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "trait_rules resource config is invalid" in str(failure.event_specific_data.error)
    assert "mrr_coupon_rule" in str(failure.event_specific_data.error)
