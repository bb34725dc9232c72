"""Failed payments in Segment within a minute: the sensor, its job and the per-event alert asset."""

import json
import time

from dagster import (
    AssetExecutionContext,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    asset,
    define_asset_job,
    in_process_executor,
    sensor,
)

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.catalog import CODE_VERSION, OWNERS, tags
from s2s_pipeline.defs.segment.failures import fail_on_refused
from s2s_pipeline.defs.segment.resources import SEGMENT_POOL, SegmentResource
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.extract.change_feed import apply_single_event
from s2s_pipeline.extract.failed_payments import poll_failed_payments
from s2s_pipeline.segment.alert_filter import alert_filter
from s2s_pipeline.segment.context import MirrorContext
from s2s_pipeline.segment.track_sync import send_track_events
from s2s_pipeline.traits.config import TraitsConfig

#: One partition per failed-payment Stripe event (the event id), added by the sensor.
failed_payment_events = DynamicPartitionsDefinition(name="failed_payment_events")


@asset(group_name="segment", partitions_def=failed_payment_events, pool=SEGMENT_POOL, kinds={"segment"},
       owners=OWNERS, tags=tags("per_event"), code_version=CODE_VERSION)
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
    outcome = send_track_events(store, segment.settings_for(context), reader=reader, profiles=segment.profiles(),
                                config=trait_rules.config(), now=int(time.time()), event_ids=[event_id],
                                run_id=context.run_id, options=segment.options())
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
    fail_on_refused(outcome.report, "failed-payment", metadata)
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


