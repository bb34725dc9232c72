"""Failed payments in Segment within seconds: the sensor, its job and the per-event alert asset.

One ``failed_payment_alert`` run per failed-payment Stripe event, launched by
``failed_payment_sensor`` from the webhook inbox (``s2s-webhooks``) or, as the
safety net, from its Events API poll. The event id travels in the run's
config and tags (``s2s/stripe_event_id``): every alert is a run you can find
by event id and a materialization of ``failed_payment_alerts`` with the event
in its metadata, without one partition per event.
"""

import json
import time

from dagster import (
    AssetExecutionContext,
    Config,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    Failure,
    MaterializeResult,
    RunConfig,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    asset,
    define_asset_job,
    in_process_executor,
    sensor,
)
from pydantic import Field

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.catalog import CODE_VERSION, OWNERS, tags
from s2s_pipeline.defs.segment.failures import fail_on_refused
from s2s_pipeline.defs.segment.resources import SEGMENT_POOL, SegmentResource
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.extract.alert_requests import AlertRequest, alerts_to_launch
from s2s_pipeline.extract.change_feed import apply_single_event
from s2s_pipeline.extract.failed_payments import poll_failed_payments
from s2s_pipeline.extract.inbox_failures import read_inbox_failures
from s2s_pipeline.segment.alert_filter import alert_filter
from s2s_pipeline.segment.context import MirrorContext
from s2s_pipeline.segment.track_sync import send_track_events
from s2s_pipeline.store.webhook_inbox import InboxUnavailable
from s2s_pipeline.traits.config import TraitsConfig

ALERT_ASSET = "failed_payment_alerts"
#: Run tags of an alert run: filter the Runs page by event id, type or the path that found it.
EVENT_ID_TAG, EVENT_TYPE_TAG, FOUND_BY_TAG = "s2s/stripe_event_id", "s2s/stripe_event_type", "s2s/found_by"
#: The dynamic partitions definition alerts used before (one partition per event); the sensor deletes its keys.
RETIRED_PARTITIONS = "failed_payment_events"
#: Retired partition keys deleted per tick (the daemon checks each key; a long history takes a few ticks).
RETIRE_BATCH = 1000


class FailedPaymentAlertConfig(Config):
    """Which failed payment a run alerts on (the sensor fills it in; a manual run names the event)."""

    stripe_event_id: str = Field(description="The Stripe event id (evt_...) of an invoice.payment_failed or "
                                             "charge.failed event, from the last 30 days or the webhook inbox.")


@asset(group_name="segment", pool=SEGMENT_POOL, kinds={"segment"},
       owners=OWNERS, tags=tags("per_event"), code_version=CODE_VERSION)
def failed_payment_alerts(context: AssetExecutionContext, config: FailedPaymentAlertConfig,
                          state_store: StateStoreResource, stripe: StripeResource,
                          segment: SegmentResource, trait_rules: TraitRulesResource) -> MaterializeResult:
    """A failed payment in Segment within seconds: `Payment Failed` (amount due, attempt count,
    failure code and message) and an identify with `payment_delinquent = true`, so dunning emails
    and CSM alerts start at once. One run per Stripe event (run key and tag `s2s/stripe_event_id`),
    launched by `failed_payment_sensor`; each materialization names its event.
    """
    event_id = config.stripe_event_id
    reader = stripe.reader()
    store = state_store.store()
    # A webhook delivery is the event as Stripe signed it: no need to fetch it again.
    event, source = store.inbox.get(event_id), "webhook_inbox"
    if event is None:
        event, source = reader.get(f"/v1/events/{event_id}"), "events_api"
    if event is None:
        raise Failure(description=f"Stripe event {event_id} does not exist or is older than Stripe's 30-day "
                                  "event window; the nightly job reports what the mirror knows")
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
        "found_by": context.run.tags.get(FOUND_BY_TAG, "manual"),
        "event_read_from": source,
        "outcome": "sent" if outcome.statuses["sent"] else ("skipped" if outcome.statuses["skipped"] else
                                                            "failed" if outcome.statuses["failed"] else "already handled"),
        "latency_seconds": round(time.time() - int(event.get("created", time.time())), 1),
    }
    fail_on_refused(outcome.report, "failed-payment", metadata)
    if outcome.statuses["failed"]:
        # Not mapped (e.g. Stripe could not say whether the charge pays an invoice): the ledger keeps the
        # event failed, and failing the run lets run retries (dagster.yaml) try again within minutes
        # instead of leaving the alert to the nightly run.
        raise Failure(description=f"Stripe event {event_id} could not be mapped to a track call this time; it "
                                  "stays failed in the event ledger and is mapped again by the next run",
                      metadata=metadata)
    return MaterializeResult(metadata=metadata)


failed_payment_alert = define_asset_job(
    "failed_payment_alert",
    selection=[failed_payment_alerts],
    # One small step: running it in the run's own process saves a step
    # process start-up (seconds on a small machine) on the way to Segment.
    executor_def=in_process_executor,
    description="Sends one failed payment (a Stripe event id, in the run config and the s2s/stripe_event_id tag) "
    "to Segment: Payment Failed and payment_delinquent = true. Launched by failed_payment_sensor.",
)


def alert_run_request(request: AlertRequest) -> RunRequest:
    """The run for one failed payment: run key = event id (Dagster launches a run key once per sensor)."""
    return RunRequest(
        run_key=request.event_id,
        run_config=RunConfig(ops={ALERT_ASSET: FailedPaymentAlertConfig(stripe_event_id=request.event_id)}),
        tags={EVENT_ID_TAG: request.event_id, EVENT_TYPE_TAG: request.event_type, FOUND_BY_TAG: request.found_by},
    )


#: Pages of events one sensor tick reads at most (100 events each); a longer backlog continues next tick.
SENSOR_MAX_PAGES = 5
#: The daemon's sensor loop runs every 5 s (``MIN_INTERVAL_LOOP_TIME``); an interval of exactly 5 s
#: skips every other loop when a tick starts a little early (measured: 10 s gaps). 2 s ticks on every loop.
SENSOR_INTERVAL_S = 2


def _sensor_state(raw: str | None) -> dict:
    """The sensor's JSON cursor: ``poll`` (Events API), ``inbox``, ``launched`` and ``partitions_retired``.

    A cursor from before the webhook inbox is the poll's own cursor (it has ``created``).
    """
    state = json.loads(raw) if raw else {}
    if "created" in state:
        state = {"poll": state}
    return state


def _retired_partition_cleanup(context: SensorEvaluationContext) -> tuple[list, bool]:
    """Delete requests for the per-event partitions of earlier versions, and whether none are left."""
    keys = list(context.instance.get_dynamic_partitions(RETIRED_PARTITIONS))
    if not keys:
        return [], True
    batch = keys[:RETIRE_BATCH]
    context.log.info(f"deleting {len(batch)} of {len(keys)} retired per-event partitions ({RETIRED_PARTITIONS}): "
                     "alerts are runs tagged with the event id now")
    return [DeleteDynamicPartitionsRequest(partitions_def_name=RETIRED_PARTITIONS, partition_keys=batch)], False


@sensor(
    job=failed_payment_alert,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Launches one failed_payment_alert run per alerting invoice.payment_failed / charge.failed event "
    "(run key = event id), from the webhook inbox (s2s-webhooks) and, as the safety net, from polling Stripe's "
    "Events API; an event found by both launches once. An invoice's declined charge.failed launches nothing, "
    "its invoice.payment_failed alerts. Its first tick starts at the newest event (no replay of history); the "
    "JSON cursor survives restarts and replays safely.",
)
def failed_payment_sensor(context: SensorEvaluationContext, stripe: StripeResource,
                          state_store: StateStoreResource) -> SensorResult:
    state = _sensor_state(context.cursor)
    reader, now = stripe.reader(), int(time.time())
    store = state_store.store()
    alerts_on = alert_filter(MirrorContext(store.mirror, reader, TraitsConfig(), now))
    by_webhook: list[dict] = []
    try:
        inbox = read_inbox_failures(store.inbox, state.get("inbox"), now_ms=time.time_ns() // 1_000_000,
                                    alerts_on=alerts_on)
        by_webhook, state["inbox"] = inbox.events, inbox.cursor
    except InboxUnavailable as exc:  # the poll below still finds the failures
        context.log.warning(f"webhook inbox unreadable this tick ({exc}); polling Stripe only")
    poll = poll_failed_payments(reader, state.get("poll"), now=now, max_pages=SENSOR_MAX_PAGES, alerts_on=alerts_on)
    state["poll"] = poll.cursor
    requests, state["launched"] = alerts_to_launch(state.get("launched") or {}, by_webhook, poll.events, now=now)
    partition_requests: list = []
    if not state.get("partitions_retired"):
        partition_requests, state["partitions_retired"] = _retired_partition_cleanup(context)
    return SensorResult(
        run_requests=[alert_run_request(r) for r in requests],
        dynamic_partitions_requests=partition_requests,
        cursor=json.dumps(state, sort_keys=True),
    )
