"""The demo's webhook part: a failed payment goes Stripe -> s2s-webhooks -> inbox -> sensor -> Segment.

In ``make demo`` there is no daemon: the sensor is evaluated once the way the
daemon would (``build_sensor_context`` on the demo instance) and its run is
executed in process with the run request's config and tags, so the UI
(``make dev``) shows it like any sensor-launched alert.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

DEMO_WEBHOOK_SECRET = "whsec_s2s_demo_endpoint_secret"


def _sensor_tick(cursor: str | None):
    from dagster import DagsterInstance, build_sensor_context

    from s2s_pipeline.defs.resources import StateStoreResource
    from s2s_pipeline.defs.segment.failed_payments import failed_payment_sensor
    from s2s_pipeline.defs.stripe.resources import StripeResource

    with DagsterInstance.get() as instance:
        context = build_sensor_context(cursor=cursor, instance=instance, resources={
            "stripe": StripeResource(api_key=os.environ["STRIPE_API_KEY"], api_base=os.environ["STRIPE_API_BASE"]),
            "state_store": StateStoreResource()})
        return failed_payment_sensor(context)


def _run_alert(request) -> dict:
    from dagster import DagsterInstance

    from s2s_pipeline.definitions import defs

    job = defs.resolve_job_def("failed_payment_alert")
    config = {**request.run_config, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(run_config=config, tags=request.tags, instance=instance,
                                        raise_on_error=False)
    if not result.success:
        raise SystemExit("failed_payment_alert failed")
    (mat,) = result.asset_materializations_for_node("failed_payment_alerts")
    return {k: v.value for k, v in mat.metadata.items()}


def show_webhook_alert(standin, account, sink, out: Callable[[str], None] = print) -> None:
    """Serve the receiver, post a forged and a real failed-payment webhook, alert on the real one."""
    from s2s_devtools.fakes.stripe import post_signed, webhook_body
    from s2s_devtools.harness.daemon import fail_a_payment
    from s2s_devtools.harness.receiver import running_receiver
    from s2s_pipeline.core.alert_rule import FAILED_PAYMENT_EVENT_TYPES
    from s2s_pipeline.store.state_store import StateStore

    logging.getLogger("s2s_pipeline.webhooks").setLevel(logging.ERROR)  # the demo prints what it refused
    with running_receiver(DEMO_WEBHOOK_SECRET, os.environ["S2S_DATABASE_URL"]) as receiver:
        endpoint = standin.add_webhook_endpoint(receiver.url, DEMO_WEBHOOK_SECRET, FAILED_PAYMENT_EVENT_TYPES)
        out(f"  s2s-webhooks at {receiver.url} (Stripe endpoint for {', '.join(FAILED_PAYMENT_EVENT_TYPES)})")
        first = _sensor_tick(None)  # the sensor's first tick: starts at the newest event, launches nothing
        forged = {"id": "evt_forged", "object": "event", "type": "invoice.payment_failed", "created": int(time.time()),
                  "data": {"object": {"id": "in_forged", "object": "invoice"}}}
        status = post_signed(receiver.url, webhook_body(forged), "whsec_not_the_endpoint_secret")
        out(f"  a delivery signed with another secret: HTTP {status}, nothing stored")
        before = len(sink.accepted)
        event_id, _ = fail_a_payment(standin, account)
        standin.webhooks.wait_idle(10)
        (attempt,) = [a for a in endpoint.attempts if a.event_id == event_id]
        event = standin.get("events", event_id)
        invoice = event["data"]["object"]
        out(f"  Stripe: card declined on invoice {invoice['id']} (customer {invoice['customer']}) -> "
            f"invoice.payment_failed {event_id} posted, signed; s2s-webhooks stored it and answered "
            f"{attempt.status} in {attempt.seconds * 1000:.0f} ms")
        store = StateStore.from_url(os.environ["S2S_DATABASE_URL"])
        assert store.inbox.get("evt_forged") is None and store.inbox.get(event_id) is not None
        store.dispose()
        tick = _sensor_tick(first.cursor)
        for request in tick.run_requests:
            out(f"  failed_payment_sensor: run {request.run_key} (found by {request.tags['s2s/found_by']}; "
                f"the invoice's own charge.failed launches none)")
            meta = _run_alert(request)
            out(f"  failed_payment_alert: {meta['track_event']} {meta['outcome']} "
                f"({meta['latency_seconds']} s after Stripe created the event)")
        for message in sink.accepted[before:]:
            who = message.get("userId") or message.get("anonymousId")
            if message["type"] == "track":
                props = message["properties"]
                out(f"    track {who}: {message['event']} invoice_id={props.get('invoice_id')} "
                    f"amount={props.get('amount')} {props.get('currency')} failure_code={props.get('failure_code')}")
            else:
                out(f"    {message['type']} {who}: {message.get('traits')}")
