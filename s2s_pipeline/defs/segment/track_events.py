"""Stripe events as Segment track calls: nightly from the change feed, and history on demand."""

import time

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.catalog import CODE_VERSION, OWNERS, tags
from s2s_pipeline.defs.segment.failures import fail_on_refused
from s2s_pipeline.defs.segment.resources import SEGMENT_POOL, SegmentResource
from s2s_pipeline.defs.stripe.assets import CHANGE_FEED_KEY, mirror_asset_key
from s2s_pipeline.defs.stripe.partitions import stripe_daily_partitions
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.segment.context import MirrorContext
from s2s_pipeline.segment.track_sync import deliver_calls, history_calls, send_track_events


@asset(group_name="segment", deps=[CHANGE_FEED_KEY], pool=SEGMENT_POOL, kinds={"segment"}, owners=OWNERS,
       tags=tags("nightly"), code_version=CODE_VERSION)
def segment_track_events(context: AssetExecutionContext, state_store: StateStoreResource, stripe: StripeResource,
                         segment: SegmentResource, trait_rules: TraitRulesResource) -> MaterializeResult:
    """Segment track calls for the Stripe events the change feed recorded since the last run
    (Subscription Started/Upgraded/Downgraded/Canceled, Trial Started/Converted, Payment Failed,
    Order Completed/Refunded, Dispute Created; docs/events.md). Each Stripe fact is sent once,
    whichever job sees it first; events from before the first sync are never replayed.
    """
    outcome = send_track_events(state_store.store(), segment.settings_for(context), reader=stripe.reader(),
                                profiles=segment.profiles(), config=trait_rules.config(), now=int(time.time()),
                                progress=context.log.info, run_id=context.run_id, options=segment.options())
    metadata = {k: MetadataValue.json(v) if isinstance(v, dict) else v for k, v in outcome.metadata().items()}
    # A plain number for the Plots tab beside messages_failed: track calls Segment acknowledged.
    metadata["messages_sent"] = len(outcome.report.delivered)
    fail_on_refused(outcome.report, "track", metadata)
    context.log.info(f"Track calls: {dict(outcome.sent_by_event)}")
    return MaterializeResult(metadata=metadata)


@asset(
    group_name="segment",
    partitions_def=stripe_daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[mirror_asset_key(t) for t in ("charge", "refund", "dispute")],
    pool=SEGMENT_POOL,
    kinds={"segment"},
    owners=OWNERS,
    tags=tags("backfill"),
    code_version=CODE_VERSION,
)
def segment_payment_history(context: AssetExecutionContext, state_store: StateStoreResource,
                            stripe: StripeResource, segment: SegmentResource,
                            trait_rules: TraitRulesResource) -> MaterializeResult:
    """Past payments sent on purpose: Order Completed, Payment Failed (without invoice), Order Refunded
    and Dispute Created for charges, refunds and disputes created in the selected days, from the
    mirror (backfill those days first). The messageIds are the live path's, so a fact already sent is
    not sent again. Never runs on its own: launch it over a date range.
    """
    window = context.partition_time_window
    store = state_store.store()
    config = trait_rules.config()
    now = int(time.time())
    calls = history_calls(store, int(window.start.timestamp()), int(window.end.timestamp()),
                          MirrorContext(store.mirror, stripe.reader(), config, now), config)
    report, status = deliver_calls(store, segment.settings_for(context), calls, profiles=segment.profiles(),
                                   config=config, now=now, progress=context.log.info, run_id=context.run_id,
                                   options=segment.options())
    counts: dict[str, int] = {}
    for text in status.values():
        counts[text.partition(":")[0]] = counts.get(text.partition(":")[0], 0) + 1
    metadata = {"payments_found": len(calls), "sent": counts.get("sent", 0),
                "already_sent": counts.get("skipped", 0), "failed": counts.get("failed", 0),
                "window_start": window.start.isoformat(), "window_end": window.end.isoformat()}
    fail_on_refused(report, "history", metadata)
    return MaterializeResult(metadata=metadata)
