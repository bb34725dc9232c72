"""The failed-payment alert's ``payment_delinquent`` identify follows ``trait_allow_list`` and
``trait_routing`` like every other identify (finding 7 of issue #11).

Through the Dagster asset, as the sensor launches it: one ``failed_payment_alerts`` run for one
Stripe event id (run config), against the Stripe stand-in and the Segment sink.
"""

import copy
import time

import pytest
from dagster import DagsterInstance, materialize

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.failed_payments import failed_payment_alerts
from s2s_pipeline.defs.segment.resources import SegmentResource
from s2s_pipeline.defs.stripe.assets import stripe_change_feed
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_pipeline.defs.traits.resources import TraitRulesResource

WRITE_KEY = "wk_alert_rules"
SALESFORCE_ONLY = {"All": False, "Salesforce": True}


@pytest.fixture(scope="module")
def account():
    return generate_account(customers=15, seed=21, now=int(time.time()))


def _alert(state_url, account, **segment_settings) -> list[dict]:
    """Mirror the account, fail one invoice payment, run its alert; what the Segment sink accepted."""
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        seed_standin(standin, account, copy=True)
        standin.now = None
        resources = {"stripe": StripeResource(api_key="sk_test_alert", api_base=standin.base_url, rate_limit=1000),
                     "state_store": StateStoreResource(database_url=state_url),
                     "trait_rules": TraitRulesResource(),
                     "segment": SegmentResource(write_key=WRITE_KEY, host=sink.base_url, **segment_settings)}
        instance = DagsterInstance.ephemeral()
        assert materialize([stripe_change_feed], resources=resources, instance=instance).success
        invoice = copy.deepcopy(next(i for i in account.of_type("invoice") if i["status"] == "paid"))
        invoice.update(status="open", attempt_count=1, amount_paid=0, amount_remaining=invoice["amount_due"],
                       next_payment_attempt=int(time.time()) + 3 * 86400)
        event = standin.emit("invoice.payment_failed", invoice)
        config = {"ops": {"failed_payment_alerts": {"config": {"stripe_event_id": event["id"]}}}}
        result = materialize([failed_payment_alerts], resources=resources, instance=instance, run_config=config)
        assert result.success
        return list(sink.accepted)


def _delinquent_identifies(accepted: list[dict]) -> list[dict]:
    return [m for m in accepted if m["type"] == "identify" and "payment_delinquent" in m.get("traits", {})]


def test_an_allow_list_without_payment_delinquent_sends_no_delinquent_identify(state_url, account):
    accepted = _alert(state_url, account, trait_allow_list=["mrr", "plan"])
    assert [m["event"] for m in accepted if m["type"] == "track"] == ["Payment Failed"]
    assert _delinquent_identifies(accepted) == []


def test_a_routed_payment_delinquent_goes_only_to_its_destinations(state_url, account):
    accepted = _alert(state_url, account, trait_routing={"payment_delinquent": SALESFORCE_ONLY})
    (identify,) = _delinquent_identifies(accepted)
    assert identify["traits"] == {"payment_delinquent": True}
    assert identify["integrations"] == SALESFORCE_ONLY


def test_without_rules_the_delinquent_identify_goes_to_every_destination(state_url, account):
    accepted = _alert(state_url, account)
    (identify,) = _delinquent_identifies(accepted)
    assert identify["traits"] == {"payment_delinquent": True}
    assert not identify.get("integrations")
