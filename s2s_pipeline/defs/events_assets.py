"""Stripe events as Segment track calls: nightly, within a minute for failed payments, and history on demand."""

import json
import time

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    asset,
    define_asset_job,
    in_process_executor,
    sensor,
)

from s2s_pipeline.defs.partitions import stripe_daily_partitions
from s2s_pipeline.defs.resources import StateStoreResource, StripeResource
from s2s_pipeline.defs.resources import SegmentResource
from s2s_pipeline.defs.segment_assets import SEGMENT_POOL
from s2s_pipeline.defs.stripe_assets import mirror_asset_key, stripe_change_feed
from s2s_pipeline.defs.traits_assets import TraitRulesResource
from s2s_pipeline.extract.failed_payments import poll_failed_payments
from s2s_pipeline.extract.change_feed import apply_single_event
from s2s_pipeline.segment.alert_filter import alert_filter
from s2s_pipeline.segment.context import MirrorContext
from s2s_pipeline.segment.track_sync import deliver_calls, history_calls, send_track_events
from s2s_pipeline.traits.config import TraitsConfig

#: One partition per failed-payment Stripe event (the event id), added by the sensor.
failed_payment_events = DynamicPartitionsDefinition(name="failed_payment_events")


def _fail_on(report, what: str, metadata: dict) -> None:
    if report.failed:
        raise Failure(
            description=f"Segment did not accept {len(report.failed)} {what} message(s); the others were recorded "
            "and the next run re-sends these with the same messageIds",
            metadata={**metadata, "failed_message_ids": MetadataValue.json(sorted(report.failed)[:20])},
        )


@asset(group_name="segment", deps=[stripe_change_feed], pool=SEGMENT_POOL, kinds={"segment"})
def segment_track_events(context: AssetExecutionContext, state_store: StateStoreResource, stripe: StripeResource,
                         segment: SegmentResource, trait_rules: TraitRulesResource) -> MaterializeResult:
    """Segment track calls for the Stripe events the change feed recorded since the last run
    (Subscription Started/Upgraded/Downgraded/Canceled, Trial Started/Converted, Payment Failed,
    Order Completed/Refunded, Dispute Created; docs/events.md). Each Stripe fact is sent once,
    whichever job sees it first; events from before the first sync are never replayed.
    """
    outcome = send_track_events(state_store.store(), segment.settings(), reader=stripe.reader(),
                                profiles=segment.profiles(), config=trait_rules.config(), now=int(time.time()),
                                progress=context.log.info)
    metadata = {k: MetadataValue.json(v) if isinstance(v, dict) else v for k, v in outcome.metadata().items()}
    _fail_on(outcome.report, "track", metadata)
    context.log.info(f"Track calls: {dict(outcome.sent_by_event)}")
    return MaterializeResult(metadata=metadata)


@asset(group_name="segment", partitions_def=failed_payment_events, pool=SEGMENT_POOL, kinds={"segment"})
def failed_payment_alerts(context: AssetExecutionContext, state_store: StateStoreResource, stripe: StripeResource,
                          segment: SegmentResource, trait_rules: TraitRulesResource) -> MaterializeResult:
    """A failed payment in Segment within a minute: `Payment Failed` (amount due, attempt count,
    failure code and message) and an identify with `payment_delinquent = true`, so dunning emails
    and CSM alerts start at once. One partition per Stripe event, launched by `failed_payment_sensor`.
    """
    event_id = context.partition_key
    reader = stripe.reader()
    event = reader.get(f"/v1/events/{event_id}")
    if event is None:
        raise Failure(description=f"Stripe event {event_id} does not exist or is older than Stripe's 30-day "
                                  "event window; the nightly job reports what the mirror knows")
    store = state_store.store()
    apply_single_event(reader, store, event)  # also mirrors a customer created since the last sync
    outcome = send_track_events(store, segment.settings(), reader=reader, profiles=segment.profiles(),
                                config=trait_rules.config(), now=int(time.time()), event_ids=[event_id])
    call = next((c for e, c in outcome.calls if e == event_id), None)
    metadata = {
        "stripe_event_id": event_id,
        "stripe_event_type": event.get("type"),
        "stripe_customer_id": call.stripe_customer_id if call else None,
        "track_event": call.event if call else None,
        "outcome": "sent" if outcome.statuses["sent"] else ("skipped" if outcome.statuses["skipped"] else
                                                            "failed" if outcome.statuses["failed"] else "already handled"),
        "latency_seconds": round(time.time() - int(event.get("created", time.time())), 1),
    }
    _fail_on(outcome.report, "failed-payment", metadata)
    return MaterializeResult(metadata=metadata)


failed_payment_alert = define_asset_job(
    "failed_payment_alert",
    selection=[failed_payment_alerts],
    partitions_def=failed_payment_events,
    # One small step: running it in the run's own process saves a step
    # process start-up (seconds on a small machine) on the way to Segment.
    executor_def=in_process_executor,
    description="Sends one failed payment (a Stripe event id, as the partition) to Segment: Payment Failed and "
    "payment_delinquent = true. Launched by failed_payment_sensor.",
)

#: Pages of events one sensor tick reads at most (100 events each); a longer backlog continues next tick.
SENSOR_MAX_PAGES = 5


@sensor(
    job=failed_payment_alert,
    minimum_interval_seconds=20,
    default_status=DefaultSensorStatus.RUNNING,
    description="Polls Stripe for invoice.payment_failed and charge.failed events and launches one "
    "failed_payment_alert run per alerting event (run key = event id); an invoice's declined charge.failed "
    "launches nothing, its invoice.payment_failed alerts. Its first tick starts at the newest event "
    "(no replay of history); the JSON cursor survives restarts and replays safely.",
)
def failed_payment_sensor(context: SensorEvaluationContext, stripe: StripeResource,
                          state_store: StateStoreResource) -> SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else None
    reader, now = stripe.reader(), int(time.time())
    alerts_on = alert_filter(MirrorContext(state_store.store().mirror, reader, TraitsConfig(), now))
    poll = poll_failed_payments(reader, cursor, now=now, max_pages=SENSOR_MAX_PAGES, alerts_on=alerts_on)
    ids = [e["id"] for e in poll.events]
    return SensorResult(
        run_requests=[RunRequest(run_key=event_id, partition_key=event_id) for event_id in ids],
        dynamic_partitions_requests=[failed_payment_events.build_add_request(ids)] if ids else [],
        cursor=json.dumps(poll.cursor, sort_keys=True),
    )


@asset(
    group_name="segment",
    partitions_def=stripe_daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[mirror_asset_key(t) for t in ("charge", "refund", "dispute")],
    pool=SEGMENT_POOL,
    kinds={"segment"},
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
    report, status = deliver_calls(store, segment.settings(), calls, profiles=segment.profiles(), config=config,
                                   now=now, progress=context.log.info)
    counts: dict[str, int] = {}
    for text in status.values():
        counts[text.partition(":")[0]] = counts.get(text.partition(":")[0], 0) + 1
    metadata = {"payments_found": len(calls), "sent": counts.get("sent", 0),
                "already_sent": counts.get("skipped", 0), "failed": counts.get("failed", 0),
                "window_start": window.start.isoformat(), "window_end": window.end.isoformat()}
    _fail_on(report, "history", metadata)
    return MaterializeResult(metadata=metadata)
