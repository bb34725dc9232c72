"""The trait table's quality checks, computed from the rows the refresh has just computed.

``customer_traits`` declares them as ``check_specs`` and its commit step
yields their results: ``one_row_per_customer`` from the stored table's counts
(one SQL aggregate), the others from the shards' summaries
(``traits.shard_summary``: what each shard counted while its rows were in
memory), so nothing reads the stored table a second time.
"""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from s2s_pipeline.traits.shard_summary import ShardSummary

ASSET = "customer_traits"

# A tuple, not a list: the defs-folder loader would collect a module-level list of specs.
CHECK_SPECS = (
    # Blocking: a table with duplicated or missing customers must not reach Segment.
    AssetCheckSpec("one_row_per_customer", asset=ASSET, blocking=True,
                   description="Exactly one row per non-deleted Stripe customer (the Segment user key is unique)."),
    AssetCheckSpec("non_negative_money", asset=ASSET, description="Lifetime value and MRR are never negative."),
    AssetCheckSpec("refund_rate_within_bounds", asset=ASSET, description="Refund rate is null or within 0..1."),
    AssetCheckSpec("spend_tier_valid", asset=ASSET,
                   description="Every spend tier is one of none/low/medium/high/vip (or null for a currency "
                   "without thresholds)."),
)


def _sample(ids: list[str]) -> dict:
    return {"examples": MetadataValue.json([str(i) for i in ids[:10]])}


def one_row_per_customer_in_store(rows: int, distinct_customers: int, customers_in_mirror: int) -> AssetCheckResult:
    """``one_row_per_customer`` from the stored table's counts (a refresh holds only some rows in any process)."""
    return AssetCheckResult(
        check_name="one_row_per_customer",
        passed=bool(rows == distinct_customers == customers_in_mirror),
        metadata={"rows": rows, "customers_in_mirror": customers_in_mirror, "duplicates": rows - distinct_customers},
    )


def non_negative_money(summary: ShardSummary) -> AssetCheckResult:
    return AssetCheckResult(check_name="non_negative_money", passed=summary.negative_money == 0,
                            metadata={"negative_rows": summary.negative_money,
                                      **_sample(summary.negative_money_examples)})


def refund_rate_within_bounds(summary: ShardSummary) -> AssetCheckResult:
    return AssetCheckResult(check_name="refund_rate_within_bounds", passed=summary.refund_rate_out_of_bounds == 0,
                            metadata={"out_of_bounds": summary.refund_rate_out_of_bounds,
                                      **_sample(summary.refund_rate_examples)})


def spend_tier_valid(summary: ShardSummary) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="spend_tier_valid",
        passed=summary.invalid_tier == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"invalid": summary.invalid_tier, "without_tier": summary.without_tier,
                  **_sample(summary.invalid_tier_examples)},
    )


def trait_checks(summary: ShardSummary, rows: int, distinct_customers: int,
                 customers_in_mirror: int) -> list[AssetCheckResult]:
    """Every check of ``CHECK_SPECS``: the table's counts after the commit, and the summary of the rows
    the refresh computed (every row on a full recompute, the changed customers' otherwise)."""
    return [one_row_per_customer_in_store(rows, distinct_customers, customers_in_mirror),
            non_negative_money(summary), refund_rate_within_bounds(summary), spend_tier_valid(summary)]
