"""The trait table's quality checks, computed from the table the asset has just built (still in memory).

``customer_traits`` declares them as ``check_specs`` and yields their results
in the same step, so nothing reads the stored table a second time.
"""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from s2s_pipeline.core.contract import TIER_NAMES

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


def _sample(ids: pd.Series) -> dict:
    return {"examples": MetadataValue.json(ids.astype(str).head(10).tolist())}


def one_row_per_customer(traits: pd.DataFrame, customers_in_mirror: int) -> AssetCheckResult:
    duplicated = traits["stripe_customer_id"][traits["stripe_customer_id"].duplicated()]
    return AssetCheckResult(
        check_name="one_row_per_customer",
        passed=bool(duplicated.empty and len(traits) == customers_in_mirror),
        metadata={"rows": len(traits), "customers_in_mirror": customers_in_mirror, "duplicates": len(duplicated),
                  **_sample(duplicated)},
    )


def one_row_per_customer_in_store(rows: int, distinct_customers: int, customers_in_mirror: int) -> AssetCheckResult:
    """``one_row_per_customer`` from the stored table's counts (an incremental refresh holds only its rows)."""
    return AssetCheckResult(
        check_name="one_row_per_customer",
        passed=bool(rows == distinct_customers == customers_in_mirror),
        metadata={"rows": rows, "customers_in_mirror": customers_in_mirror, "duplicates": rows - distinct_customers},
    )


def non_negative_money(traits: pd.DataFrame) -> AssetCheckResult:
    bad = traits[(traits["lifetime_value"].fillna(0) < 0) | (traits["mrr"].fillna(0) < 0)]
    return AssetCheckResult(check_name="non_negative_money", passed=bool(bad.empty),
                            metadata={"negative_rows": len(bad), **_sample(bad["stripe_customer_id"])})


def refund_rate_within_bounds(traits: pd.DataFrame) -> AssetCheckResult:
    rate = traits["refund_rate"]
    bad = traits[rate.notna() & ((rate < 0) | (rate > 1))]
    return AssetCheckResult(check_name="refund_rate_within_bounds", passed=bool(bad.empty),
                            metadata={"out_of_bounds": len(bad), **_sample(bad["stripe_customer_id"])})


def spend_tier_valid(traits: pd.DataFrame) -> AssetCheckResult:
    tier = traits["spend_tier"]
    bad = traits[tier.notna() & ~tier.isin(TIER_NAMES)]
    return AssetCheckResult(
        check_name="spend_tier_valid",
        passed=bool(bad.empty),
        severity=AssetCheckSeverity.ERROR,
        metadata={"invalid": len(bad), "without_tier": int(tier.isna().sum()), **_sample(bad["stripe_customer_id"])},
    )


def trait_checks(traits: pd.DataFrame, customers_in_mirror: int) -> list[AssetCheckResult]:
    """Every check of ``CHECK_SPECS`` on a freshly computed trait table."""
    return [one_row_per_customer(traits, customers_in_mirror), non_negative_money(traits),
            refund_rate_within_bounds(traits), spend_tier_valid(traits)]
