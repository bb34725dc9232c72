"""The failed-payment alert run when Stripe cannot say whether a charge pays an invoice."""

import time

from dagster import DagsterInstance, materialize

from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.failed_payments import failed_payment_alerts
from s2s_pipeline.defs.segment.resources import SegmentResource
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_pipeline.defs.traits.resources import TraitRulesResource

WRITE_KEY = "wk_alert"


def test_a_500_on_invoice_payments_fails_the_alert_run_and_sends_nothing(state_url):
    now = int(time.time())
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        standin.load([{"id": "cus_a", "object": "customer", "email": "a@example.com", "currency": "usd",
                       "created": now - 100, "metadata": {}}])
        charge = {"id": "ch_a", "object": "charge", "status": "failed", "amount": 900, "currency": "usd",
                  "customer": "cus_a", "created": now, "payment_intent": "pi_a", "failure_code": "card_declined",
                  "amount_captured": 0, "amount_refunded": 0}
        event = standin.emit("charge.failed", charge, created=now)
        standin.faults.fail_paths("/v1/invoice_payments", 1, status=500)
        resources = {
            "stripe": StripeResource(api_key="sk_test_a", api_base=standin.base_url, rate_limit=1000,
                                     max_network_retries=0),
            "state_store": StateStoreResource(database_url=state_url),
            "segment": SegmentResource(write_key=WRITE_KEY, host=sink.base_url),
            "trait_rules": TraitRulesResource(),
        }
        run_config = {"ops": {"failed_payment_alerts": {"config": {"stripe_event_id": event["id"]}}}}
        result = materialize([failed_payment_alerts], resources=resources, run_config=run_config,
                             instance=DagsterInstance.ephemeral(), raise_on_error=False)
        assert not result.success
        assert [m for m in sink.accepted if m["type"] == "track"] == []
        # The run retry (same config) finds Stripe answering: the bare charge alerts once.
        again = materialize([failed_payment_alerts], resources=resources, run_config=run_config,
                            instance=DagsterInstance.ephemeral())
        assert again.success
        assert [m["event"] for m in sink.accepted if m["type"] == "track"] == ["Payment Failed"]


def test_the_sensor_filter_fails_open_when_stripe_errors():
    """The sensor launches the run (whose mapping then decides or fails); it never drops an alert."""
    import stripe

    from s2s_pipeline.segment.alert_filter import alert_filter

    class Erroring:
        def charge_belongs_to_invoice(self, charge):
            raise stripe.APIError("boom", http_status=500)

    alerts_on = alert_filter(Erroring())
    event = {"id": "evt_1", "type": "charge.failed", "data": {"object": {"id": "ch_1", "payment_intent": "pi_1"}}}
    assert alerts_on(event) is True
