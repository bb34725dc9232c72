"""The customer trait table: one row per Stripe customer, what Segment profiles receive."""

import time
from typing import Optional

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    ConfigurableResource,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.stripe_assets import MIRROR_SPECS, stripe_change_feed
from s2s_pipeline.core.contract import TIER_NAMES
from s2s_pipeline.traits.config import TraitsConfig, default_tier_thresholds
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames
from s2s_pipeline.traits.summary import summary_metadata


class TraitRulesResource(ConfigurableResource):
    """Rules for computing traits; defaults follow the public contract (docs/traits.md)."""

    tier_thresholds: Optional[dict[str, list[float]]] = Field(
        default=None,
        description="Per currency: minimum lifetime value (major units) for medium, high, vip. "
        "Default: 100/1,000/10,000 for usd, eur, gbp, chf, cad, aud; jpy 100x. Replaces the defaults when set.",
    )
    mrr_coupon_rule: str = Field(
        default="forever_only",
        description="'forever_only' (Stripe's default) or 'all_in_effect' (repeating coupons count until their end).",
    )
    identity_metadata_keys: list[str] = Field(
        default=["segment_user_id", "user_id"], description="Customer metadata keys tried in order for the userId."
    )
    company_id_key: str = Field(default="company_id", description="Customer metadata key of the B2B group id.")
    company_name_key: str = Field(default="company_name", description="Customer metadata key of the company name.")

    def config(self) -> TraitsConfig:
        thresholds = (
            {k.lower(): tuple(v) for k, v in self.tier_thresholds.items()}
            if self.tier_thresholds is not None
            else default_tier_thresholds()
        )
        try:
            return TraitsConfig(
                tier_thresholds=thresholds,
                mrr_coupon_rule=self.mrr_coupon_rule,
                identity_metadata_keys=tuple(self.identity_metadata_keys),
                company_id_key=self.company_id_key,
                company_name_key=self.company_name_key,
            )
        except ValueError as exc:
            raise Failure(description=f"trait_rules resource config is invalid: {exc}") from exc


@asset(
    group_name="traits",
    deps=[stripe_change_feed, *[s.key for s in MIRROR_SPECS]],
    kinds={"pandas", "sql"},
)
def customer_traits(context: AssetExecutionContext, state_store: StateStoreResource,
                    trait_rules: TraitRulesResource) -> MaterializeResult:
    """One row per Stripe customer with its revenue traits: lifetime value, MRR, spend tier,
    refund rate, plan, subscription status and payment health (docs/traits.md).

    Computed from the whole mirror with vectorized pandas and stored as the
    `customer_traits` table in the state store; money in major units of the
    customer's currency, times as ISO-8601 UTC.
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
    for currency, total in summary["mrr_by_currency"].items():
        metadata[f"mrr_total_{currency}"] = float(total)
    return MaterializeResult(metadata=metadata)


def _stored(state_store: StateStoreResource) -> pd.DataFrame:
    return state_store.store().traits.read()


def _sample(ids: pd.Series) -> dict:
    return {"examples": MetadataValue.json(ids.astype(str).head(10).tolist())}


@asset_check(asset=customer_traits, blocking=True,
             description="Exactly one row per non-deleted Stripe customer (the Segment user key is unique).")
def one_row_per_customer(state_store: StateStoreResource) -> AssetCheckResult:
    traits = _stored(state_store)
    duplicated = traits["stripe_customer_id"][traits["stripe_customer_id"].duplicated()]
    expected = state_store.store().mirror.live_count("customer")
    return AssetCheckResult(
        passed=duplicated.empty and len(traits) == expected,
        metadata={"rows": len(traits), "customers_in_mirror": expected, "duplicates": len(duplicated),
                  **_sample(duplicated)},
    )


@asset_check(asset=customer_traits, description="Lifetime value and MRR are never negative.")
def non_negative_money(state_store: StateStoreResource) -> AssetCheckResult:
    traits = _stored(state_store)
    bad = traits[(traits["lifetime_value"].fillna(0) < 0) | (traits["mrr"].fillna(0) < 0)]
    return AssetCheckResult(passed=bad.empty, metadata={"negative_rows": len(bad), **_sample(bad["stripe_customer_id"])})


@asset_check(asset=customer_traits, description="Refund rate is null or within 0..1.")
def refund_rate_within_bounds(state_store: StateStoreResource) -> AssetCheckResult:
    traits = _stored(state_store)
    rate = traits["refund_rate"]
    bad = traits[rate.notna() & ((rate < 0) | (rate > 1))]
    return AssetCheckResult(passed=bad.empty, metadata={"out_of_bounds": len(bad), **_sample(bad["stripe_customer_id"])})


@asset_check(asset=customer_traits, description="Every spend tier is one of none/low/medium/high/vip (or null "
             "for a currency without thresholds).")
def spend_tier_valid(state_store: StateStoreResource) -> AssetCheckResult:
    traits = _stored(state_store)
    tier = traits["spend_tier"]
    bad = traits[tier.notna() & ~tier.isin(TIER_NAMES)]
    unknown = int(tier.isna().sum())
    return AssetCheckResult(
        passed=bad.empty,
        severity=AssetCheckSeverity.ERROR,
        metadata={"invalid": len(bad), "without_tier": unknown, **_sample(bad["stripe_customer_id"])},
    )
