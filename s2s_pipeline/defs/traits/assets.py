"""The customer trait table: one row per Stripe customer, what Segment profiles receive.

Computed by a graph of three ops, so a full recompute fans out over customer
shards as parallel steps of one run (the multiprocess executor here; Celery
workers or Kubernetes jobs with ``S2S_EXECUTOR``): ``plan_trait_shards``
splits the work (``traits.refresh.plan_refresh``) and maps one
``compute_trait_shard`` step per shard (an incremental run maps one: the
changed customers), and ``commit_customer_traits`` swaps the result in and
reports the asset's materialization and checks. The steps hand each other
nothing but the run: the plan, the shards' rows and summaries live in the
state store, so no IO manager storage is shared between processes or
machines (the outputs are ``Nothing``).
"""

import time
from datetime import timedelta

from dagster import (
    AssetIn,
    AssetSpec,
    Config,
    DynamicOut,
    DynamicOutput,
    Failure,
    FreshnessPolicy,
    In,
    MaterializeResult,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    config_mapping,
    graph_asset,
    op,
)
from pydantic import Field

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.stripe.assets import CHANGE_FEED_KEY, MIRROR_KEYS
from s2s_pipeline.defs.traits.checks import CHECK_SPECS, trait_checks
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.store.trait_refresh_plans import RefreshPlan
from s2s_pipeline.traits.refresh import DEFAULT_SHARD_CUSTOMERS, commit_refresh, plan_refresh, refresh_shard
from s2s_pipeline.traits.shard_summary import summary_metadata_of
from s2s_pipeline.traits.summary import summary_from_totals

#: Data engineering runs the computation; revenue operations own what each trait means (the contract).
OWNERS = ["team:data-eng", "team:revops"]
TAGS = {"domain": "traits", "layer": "compute", "cadence": "nightly"}
#: Bump when a change alters the values the table holds (Dagster then flags downstream Segment assets).
CODE_VERSION = "contract-v2"
#: Nightly at 02:00 UTC: a table older than a day and two hours means a nightly run was missed.
NIGHTLY_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=26))
#: Tag of every shard step: executors limit concurrent shards by it (``tag_concurrency_limits``), so
#: memory stays within the machine's (docs/operations.md).
TRAIT_SHARD_TAG = "s2s/trait_shard"


class CustomerTraitsRunConfig(Config):
    """Run config of ``customer_traits`` (``ops: customer_traits: config:``)."""

    full_recompute: bool = Field(
        default=False,
        description="Recompute every customer (and diff every customer against Segment) instead of only "
        "those whose Stripe data changed since the last run.")
    shard_customers: int = Field(
        default=DEFAULT_SHARD_CUSTOMERS, ge=1,
        description="Customers per shard of a full recompute: each shard is one step with its own rows of the "
        "mirror in memory (at its peak about 180 MB + 11 KB per customer with ~10 charges each), run in "
        "parallel by the executor.")


@config_mapping
def _run_config(config: CustomerTraitsRunConfig) -> dict:
    # The graph's config is the asset's run config; only the planning op reads it.
    return {"plan_trait_shards": {"config": {"full_recompute": config.full_recompute,
                                             "shard_customers": config.shard_customers}}}


def refresh_id(context: OpExecutionContext) -> str:
    """The id of this run's refresh: the first run of a re-execution chain (a retry from failure re-runs
    failed shards and the commit of the refresh its first run planned)."""
    return context.run.root_run_id or context.run_id


def _planned(context: OpExecutionContext, state_store: StateStoreResource) -> RefreshPlan:
    plan = state_store.store().trait_refresh_plans.get(refresh_id(context))
    if plan is None:
        raise Failure(description=f"No trait refresh is planned for run {refresh_id(context)} (a later run "
                      "replaced it): re-execute customer_traits from its first step.")
    return plan


@op(ins={"mirror": In(Nothing)}, out=DynamicOut(Nothing))
def plan_trait_shards(context: OpExecutionContext, config: CustomerTraitsRunConfig,
                      state_store: StateStoreResource, trait_rules: TraitRulesResource):
    """Decide full or incremental, snapshot the pending Stripe changes and split the customers into shards;
    one mapped ``compute_trait_shard`` step per shard."""
    plan = plan_refresh(state_store.store(), trait_rules.config(), int(time.time()), full=config.full_recompute,
                        shard_customers=config.shard_customers, plan_id=refresh_id(context))
    context.log.info(f"{plan.mode} trait refresh ({plan.reason}): {len(plan.shards)} shard(s), "
                     f"{plan.changes} pending change(s) snapshot")
    for shard in plan.shards:
        yield DynamicOutput(None, mapping_key=shard.key)


@op(ins={"planned": In(Nothing)}, out=Out(Nothing), tags={TRAIT_SHARD_TAG: "true"})
def compute_trait_shard(context: OpExecutionContext, state_store: StateStoreResource,
                        trait_rules: TraitRulesResource) -> None:
    """Compute the traits of one shard's customers from their rows of the mirror and write them to the
    refresh's staging table (memory bounded by the shard)."""
    key = context.get_mapping_key()
    result = refresh_shard(state_store.store(), trait_rules.config(), _planned(context, state_store), key)
    if not result.written:
        context.log.info(f"{key}: written by an earlier attempt of this step, left as it is")
        return
    s = result.seconds
    context.log.info(f"{key}: {result.rows} customers (read {s['read']:.2f}s, compute {s['compute']:.2f}s, "
                     f"store {s['store']:.2f}s)")


#: The commit op's outputs: the asset, and one per check (the names graph assets give check outputs).
_CHECK_OUTPUTS = tuple(spec.get_python_identifier() for spec in CHECK_SPECS)


@op(ins={"shards": In(Nothing)},
    out={"result": Out(Nothing), **{name: Out(Nothing, is_required=False) for name in _CHECK_OUTPUTS}})
def commit_customer_traits(context: OpExecutionContext, state_store: StateStoreResource,
                           trait_rules: TraitRulesResource) -> MaterializeResult:
    """Swap the shards' rows in as ``customer_traits`` (or replace the changed customers' rows), in one
    transaction with the cursor and the Segment diff queue; the asset's metadata and checks."""
    store = state_store.store()
    try:
        refresh = commit_refresh(store, _planned(context, state_store))
    except RuntimeError as exc:
        raise Failure(description=str(exc)) from exc
    rows, distinct = store.trait_rows.row_counts()
    context.log.info(f"{refresh.mode} trait refresh ({refresh.reason}): {refresh.customers_recomputed} customers "
                     f"recomputed of {rows} in {refresh.shards} shard(s) (read {refresh.seconds_read_mirror:.2f}s, "
                     f"compute {refresh.seconds_compute:.2f}s, store {refresh.seconds_store:.2f}s, summed)")
    metadata = {
        "customers": rows,
        "mode": refresh.mode,
        "mode_reason": refresh.reason,
        "customers_recomputed": refresh.customers_recomputed,
        "mrr_coupon_rule": trait_rules.config().mrr_coupon_rule,
        # Summed over the shards (parallel shards overlap: the run's wall time is less).
        "seconds_read_mirror": round(refresh.seconds_read_mirror, 3),
        "seconds_compute": round(refresh.seconds_compute, 3),
        "seconds_store": round(refresh.seconds_store, 3),
        "shards": refresh.shards,
        "shard_seconds": MetadataValue.json(list(refresh.shard_seconds)),
        "dagster/row_count": rows,
    }
    if refresh.mode == "full":
        # Merged from the shards' summaries: the whole table's top lists and preview.
        summary = summary_metadata_of(refresh.summary)
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
    checks = trait_checks(refresh.summary, rows, distinct, store.mirror.live_count("customer"))
    return MaterializeResult(metadata=metadata, check_results=checks)


_DEPS = (CHANGE_FEED_KEY, *MIRROR_KEYS)


@graph_asset(
    name="customer_traits",
    group_name="traits",
    ins={key.to_python_identifier(): AssetIn(key=key, dagster_type=Nothing) for key in _DEPS},
    config=_run_config,
    kinds={"pandas", "sql"},
    owners=OWNERS,
    tags=TAGS,
    code_version=CODE_VERSION,
    check_specs=CHECK_SPECS,
    description="""One row per Stripe customer with its revenue traits: lifetime value, MRR, spend tier,
refund rate, plan, subscription status and payment health (docs/traits.md).

Stored as the `customer_traits` table in the state store; money in major units of the
customer's currency, times as ISO-8601 UTC. Nightly runs recompute only the customers whose
mirror rows changed since the last run (with the values a full recompute gives them); a full
recompute runs on the first run, when the trait rules change, with `full_recompute: true`
and on the weekly `weekly_full_trait_recompute` schedule, in shards of `shard_customers`
customers computed as parallel steps. Its checks run on the rows just computed, in the commit step.""",
)
def customer_traits(**upstream):
    # Every upstream asset is a Nothing input of the planning op: it starts once they are materialized.
    shards = plan_trait_shards(list(upstream.values())).map(compute_trait_shard).collect()
    committed = commit_customer_traits(shards)
    return {"result": committed.result, **{name: getattr(committed, name) for name in _CHECK_OUTPUTS}}


def _fresh(spec: AssetSpec) -> AssetSpec:
    return spec.replace_attributes(freshness_policy=NIGHTLY_FRESHNESS)


# @graph_asset takes no freshness policy: set it on the asset's spec.
customer_traits = customer_traits.map_asset_specs(_fresh)
