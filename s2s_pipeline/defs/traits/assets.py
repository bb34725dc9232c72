"""The customer trait table: one row per Stripe customer, what Segment profiles receive."""

import time
from datetime import timedelta

from dagster import AssetExecutionContext, Config, FreshnessPolicy, MaterializeResult, MetadataValue, asset
from pydantic import Field

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.stripe.assets import CHANGE_FEED_KEY, MIRROR_KEYS
from s2s_pipeline.defs.traits.checks import CHECK_SPECS, one_row_per_customer_in_store, trait_checks
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.traits.refresh import refresh_customer_traits
from s2s_pipeline.traits.summary import summary_from_totals, summary_metadata

#: Data engineering runs the computation; revenue operations own what each trait means (the contract).
OWNERS = ["team:data-eng", "team:revops"]
TAGS = {"domain": "traits", "layer": "compute", "cadence": "nightly"}
#: Bump when a change alters the values the table holds (Dagster then flags downstream Segment assets).
CODE_VERSION = "contract-v2"
#: Nightly at 02:00 UTC: a table older than a day and two hours means a nightly run was missed.
NIGHTLY_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=26))


class CustomerTraitsRunConfig(Config):
    """Run config of ``customer_traits``."""

    full_recompute: bool = Field(
        default=False,
        description="Recompute every customer (and diff every customer against Segment) instead of only "
        "those whose Stripe data changed since the last run.")


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
def customer_traits(context: AssetExecutionContext, config: CustomerTraitsRunConfig, state_store: StateStoreResource,
                    trait_rules: TraitRulesResource) -> MaterializeResult:
    """One row per Stripe customer with its revenue traits: lifetime value, MRR, spend tier,
    refund rate, plan, subscription status and payment health (docs/traits.md).

    Stored as the `customer_traits` table in the state store; money in major units of the
    customer's currency, times as ISO-8601 UTC. Nightly runs recompute only the customers whose
    mirror rows changed since the last run (with the values a full recompute gives them); a full
    recompute runs on the first run, when the trait rules change, with `full_recompute: true`
    and on the weekly `weekly_full_trait_recompute` schedule. Its checks run on the rows just
    computed, in the same step.
    """
    rules = trait_rules.config()
    store = state_store.store()
    refresh = refresh_customer_traits(store, rules, int(time.time()), full=config.full_recompute)
    table = refresh.table
    rows, distinct = store.trait_rows.row_counts()
    context.log.info(f"{refresh.mode} trait refresh ({refresh.reason}): {refresh.customers_recomputed} customers "
                     f"recomputed of {rows} (read {refresh.seconds_read_mirror:.2f}s, "
                     f"compute {refresh.seconds_compute:.2f}s, store {refresh.seconds_store:.2f}s)")
    metadata = {
        "customers": rows,
        "mode": refresh.mode,
        "mode_reason": refresh.reason,
        "customers_recomputed": refresh.customers_recomputed,
        "mrr_coupon_rule": rules.mrr_coupon_rule,
        "seconds_read_mirror": round(refresh.seconds_read_mirror, 3),
        "seconds_compute": round(refresh.seconds_compute, 3),
        "seconds_store": round(refresh.seconds_store, 3),
        "dagster/row_count": rows,
    }
    if refresh.mode == "full":
        # A full recompute has every row in memory: summaries, top lists and a preview.
        summary = summary_metadata(table)
        metadata.update({
            "top_customers_by_ltv": MetadataValue.json(summary["top_customers_by_ltv"]),
            "preview": MetadataValue.md(summary["preview"]),
        })
    else:
        # An incremental run holds a few customers: the table-wide figures are aggregated in SQL.
        summary = summary_from_totals(store.trait_rows.totals())
    metadata.update({
        "paying_customers": summary["paying_customers"],
        "customers_with_mrr": summary["customers_with_mrr"],
        "delinquent_customers": summary["delinquent_customers"],
        "mrr_by_currency": MetadataValue.json(summary["mrr_by_currency"]),
        "tier_distribution": MetadataValue.json(summary["tier_distribution"]),
    })
    # One plain number per currency, so the Plots tab charts each currency's MRR over time.
    for currency, total in summary["mrr_by_currency"].items():
        metadata[f"mrr_total_{currency}"] = float(total)
    checks = trait_checks(table, store.mirror.live_count("customer"))
    if refresh.mode == "incremental":
        # The rows just computed are a part of the table: count the whole table in the store.
        checks[0] = one_row_per_customer_in_store(rows, distinct, store.mirror.live_count("customer"))
    return MaterializeResult(metadata=metadata, check_results=checks)
