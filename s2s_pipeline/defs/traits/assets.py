"""The customer trait table: one row per Stripe customer, what Segment profiles receive."""

import time
from datetime import timedelta

from dagster import AssetExecutionContext, FreshnessPolicy, MaterializeResult, MetadataValue, asset

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.stripe.assets import CHANGE_FEED_KEY, MIRROR_KEYS
from s2s_pipeline.defs.traits.checks import CHECK_SPECS, trait_checks
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames
from s2s_pipeline.traits.summary import summary_metadata

#: Data engineering runs the computation; revenue operations own what each trait means (the contract).
OWNERS = ["team:data-eng", "team:revops"]
TAGS = {"domain": "traits", "layer": "compute", "cadence": "nightly"}
#: Bump when a change alters the values the table holds (Dagster then flags downstream Segment assets).
CODE_VERSION = "contract-v2"
#: Nightly at 02:00 UTC: a table older than a day and two hours means a nightly run was missed.
NIGHTLY_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=26))


@asset(
    group_name="traits",
    deps=[CHANGE_FEED_KEY, *MIRROR_KEYS],
    kinds={"pandas", "sql"},
    owners=OWNERS,
    tags=TAGS,
    code_version=CODE_VERSION,
    freshness_policy=NIGHTLY_FRESHNESS,
    check_specs=CHECK_SPECS,
)
def customer_traits(context: AssetExecutionContext, state_store: StateStoreResource,
                    trait_rules: TraitRulesResource) -> MaterializeResult:
    """One row per Stripe customer with its revenue traits: lifetime value, MRR, spend tier,
    refund rate, plan, subscription status and payment health (docs/traits.md).

    Computed from the whole mirror with vectorized pandas and stored as the
    `customer_traits` table in the state store; money in major units of the
    customer's currency, times as ISO-8601 UTC. Its checks run on the table
    just computed, in the same step.
    """
    rules = trait_rules.config()
    store = state_store.store()
    t0 = time.perf_counter()
    frames = load_mirror_frames(store.mirror)
    t1 = time.perf_counter()
    table = compute_customer_traits(frames, rules, int(time.time()))
    t2 = time.perf_counter()
    store.traits.write(table)
    t3 = time.perf_counter()
    summary = summary_metadata(table)
    context.log.info(f"Computed traits for {summary['customers']} customers "
                     f"(read {t1 - t0:.2f}s, compute {t2 - t1:.2f}s, store {t3 - t2:.2f}s)")
    metadata = {
        "customers": summary["customers"],
        "paying_customers": summary["paying_customers"],
        "customers_with_mrr": summary["customers_with_mrr"],
        "delinquent_customers": summary["delinquent_customers"],
        "mrr_by_currency": MetadataValue.json(summary["mrr_by_currency"]),
        "tier_distribution": MetadataValue.json(summary["tier_distribution"]),
        "top_customers_by_ltv": MetadataValue.json(summary["top_customers_by_ltv"]),
        "preview": MetadataValue.md(summary["preview"]),
        "mrr_coupon_rule": rules.mrr_coupon_rule,
        "seconds_read_mirror": round(t1 - t0, 3),
        "seconds_compute": round(t2 - t1, 3),
        "seconds_store": round(t3 - t2, 3),
        "dagster/row_count": summary["customers"],
    }
    # One plain number per currency, so the Plots tab charts each currency's MRR over time.
    for currency, total in summary["mrr_by_currency"].items():
        metadata[f"mrr_total_{currency}"] = float(total)
    return MaterializeResult(metadata=metadata,
                             check_results=trait_checks(table, store.mirror.live_count("customer")))
