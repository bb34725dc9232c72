"""Stripe extraction assets: daily backfill partitions and the change feed."""

import time
from datetime import timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    Config,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from pydantic import Field

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.resources import SegmentResource
from s2s_pipeline.defs.stripe.checks import CHECK_SPECS, quarantine_empty
from s2s_pipeline.defs.stripe.partitions import stripe_daily_partitions
from s2s_pipeline.defs.stripe.resources import STRIPE_POOL, StripeResource
from s2s_pipeline.extract.backfill import ALL_OBJECT_TYPES, backfill
from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.extract.quarantine_retry import retry_quarantined

#: Data engineering owns extraction (the Stripe key, rate limits, the mirror's schema).
OWNERS = ["team:data-eng"]
#: Bump when a change alters what the mirror stores (Dagster then flags downstream assets).
CODE_VERSION = "contract-v2"
#: The nightly run applies the change feed at 02:00 UTC; older than a day and two hours means it was missed.
NIGHTLY_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=26))

_PLURAL = {
    "product": "products", "price": "prices", "coupon": "coupons", "customer": "customers",
    "subscription": "subscriptions", "invoice": "invoices", "charge": "charges",
    "refund": "refunds", "dispute": "disputes",
}

_DESCRIPTIONS = {
    "product": "Stripe products (plan names for the `plan` trait).",
    "price": "Stripe prices with their tiers: amounts, intervals and billing schemes MRR is computed from.",
    "coupon": "Stripe coupons: which discounts reduce MRR (forever, or all in effect).",
    "customer": "Stripe customers: identity (email, metadata user ids, company) and currency.",
    "subscription": "Stripe subscriptions (all statuses) with items and discounts: the basis of MRR, plan and status.",
    "invoice": "Stripe invoices: payment health (open after a failed attempt) and billing history.",
    "charge": "Stripe charges: what customers paid (lifetime value, refund rate, payment method).",
    "refund": "Stripe refunds: money given back, per charge.",
    "dispute": "Stripe disputes (chargebacks) opened on charges.",
}


def mirror_asset_key(object_type: str) -> AssetKey:
    return AssetKey(f"stripe_{_PLURAL[object_type]}")


# Tuples, not lists: the defs-folder loader collects module-level lists of specs as assets of their own.
MIRROR_SPECS = tuple(
    AssetSpec(
        mirror_asset_key(t),
        group_name="stripe",
        description=f"{_DESCRIPTIONS[t]} Mirrored in the state store by created date; "
        "re-running a day is safe (newest snapshot wins).",
        kinds={"stripe", "sql"},
        metadata={"table": f"stripe_{_PLURAL[t]}"},
        owners=OWNERS,
        tags={"domain": "stripe", "layer": "extract", "cadence": "backfill"},
        code_version=CODE_VERSION,
    )
    for t in ALL_OBJECT_TYPES
)
MIRROR_KEYS = tuple(s.key for s in MIRROR_SPECS)
CHANGE_FEED_KEY = AssetKey("stripe_change_feed")
_TYPE_BY_KEY = {mirror_asset_key(t): t for t in ALL_OBJECT_TYPES}


@multi_asset(
    specs=MIRROR_SPECS,
    partitions_def=stripe_daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    can_subset=True,
    pool=STRIPE_POOL,
    name="stripe_mirror_backfill",
)
def stripe_mirror_backfill(context: AssetExecutionContext, stripe: StripeResource, state_store: StateStoreResource):
    """List every selected object type created in the partition range and upsert it into the mirror.

    One run covers the whole selected range (single-run backfill policy); the
    range is split into created-date windows fetched concurrently, paced at
    the configured Stripe request rate.
    """
    window = context.partition_time_window
    gte, lt = int(window.start.timestamp()), int(window.end.timestamp())
    object_types = [_TYPE_BY_KEY[key] for key in context.selected_asset_keys]
    context.log.info(f"Backfilling {', '.join(object_types)} created in [{window.start}, {window.end})")
    result = backfill(stripe.reader(), state_store.store(), object_types, gte, lt, progress=context.log.info)
    for object_type in object_types:
        yield MaterializeResult(
            asset_key=mirror_asset_key(object_type),
            metadata={
                "objects_listed": result.listed.get(object_type, 0),
                "rows_applied": result.stats.applied.get(object_type, 0),
                "stale_snapshots_ignored": result.stats.stale.get(object_type, 0),
                "window_start": MetadataValue.text(window.start.isoformat()),
                "window_end": MetadataValue.text(window.end.isoformat()),
                "stripe_requests_in_run": result.requests,
                "stripe_429s_in_run": result.rate_limited,
                # objects of any type this run set aside (the stripe_change_feed check lists them all)
                "objects_quarantined_in_run": len(result.quarantined),
                **({"marked_deleted": result.deleted} if object_type == "customer" else {}),
            },
        )
    _warn_quarantined(context, result)


def _warn_quarantined(context: AssetExecutionContext, result) -> None:
    """Malformed or refused objects were set aside (the rest is mirrored): say so in the run's log.

    The step does not fail: bad input must not stop other customers' work (contract, Delivery
    guarantees); the ``quarantine_empty`` check of ``stripe_change_feed`` shows what is held.
    """
    if result.quarantined:
        shown = "; ".join(result.quarantined[:20])
        more = f" (+{len(result.quarantined) - 20} more)" if len(result.quarantined) > 20 else ""
        context.log.warning(f"{len(result.quarantined)} Stripe object(s) set aside in the quarantine, everything "
                            f"else mirrored: {shown}{more}")


class ChangeFeedConfig(Config):
    """Run config of ``stripe_change_feed``."""

    retry_quarantined: bool = Field(
        default=False,
        description="After the sync, fetch every quarantined Stripe object again by id and store it where it now "
        "can be (released from the quarantine, its events' track calls made as usual).")


@asset(
    key=CHANGE_FEED_KEY,
    group_name="stripe",
    pool=STRIPE_POOL,
    kinds={"stripe", "sql"},
    deps=MIRROR_KEYS,
    owners=OWNERS,
    tags={"domain": "stripe", "layer": "extract", "cadence": "nightly"},
    code_version=CODE_VERSION,
    freshness_policy=NIGHTLY_FRESHNESS,
    check_specs=CHECK_SPECS,
)
def stripe_change_feed(context: AssetExecutionContext, config: ChangeFeedConfig, stripe: StripeResource,
                       state_store: StateStoreResource, segment: SegmentResource) -> MaterializeResult:
    """Applies every Stripe change since the last run to the mirror, from the Events API.

    The first run lists everything (a full sync) and starts the event cursor
    at the newest event; later runs read events since the cursor, applying
    each snapshot only if it is newer than the mirror's, and record every
    event once in the event ledger. A cursor older than Stripe's 30-day event
    window triggers a full re-list, reported in the metadata. An object that
    cannot be stored or parsed is set aside in the quarantine (the cursor moves
    past it); the `quarantine_empty` check lists what is held, and run config
    `retry_quarantined: true` fetches those objects again.
    """
    # The first step of the nightly run checks the Segment settings too, so a
    # malformed one fails the run at its start, before any Stripe work.
    segment.validate()
    store = state_store.store()
    reader = stripe.reader()
    result = sync_changes(reader, store, progress=context.log.info)
    if result.note:
        context.log.warning(result.note)
    _warn_quarantined(context, result)
    metadata = {k: MetadataValue.json(v) if isinstance(v, dict) else v for k, v in result.metadata().items()}
    if config.retry_quarantined:
        retried = retry_quarantined(reader, store)
        context.log.info(f"quarantine retry: {retried.metadata()}")
        metadata.update(retried.metadata())
    metadata["mirror_rows"] = MetadataValue.json(store.counts())
    metadata["retention"] = MetadataValue.json(state_store.apply_retention(int(time.time())))
    return MaterializeResult(metadata=metadata, check_results=[quarantine_empty(store)])
