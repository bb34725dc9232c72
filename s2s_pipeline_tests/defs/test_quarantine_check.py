"""The change feed's quarantine check (ids and reasons in the UI) and the retry run config."""

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.resources import SegmentResource
from s2s_pipeline.defs.stripe.assets import stripe_change_feed
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_devtools.fakes.stripe import StripeStandIn

SEGMENT = SegmentResource(write_key="wk_test", host="http://127.0.0.1:9")


def customer(cid, name="N"):
    return {"id": cid, "object": "customer", "email": f"{cid}@example.com", "name": name, "currency": "usd",
            "created": 1_770_000_000, "metadata": {}}


@pytest.fixture
def standin():
    with StripeStandIn() as server:
        yield server


def _run(standin, state_url, **config):
    resources = {"stripe": StripeResource(api_key="sk_test_defs", api_base=standin.base_url, rate_limit=1000),
                 "state_store": StateStoreResource(database_url=state_url), "segment": SEGMENT}
    run_config = {"ops": {"stripe_change_feed": {"config": config}}} if config else None
    return materialize([stripe_change_feed], resources=resources, instance=DagsterInstance.ephemeral(),
                       run_config=run_config)


def test_a_quarantined_object_warns_with_its_id_and_reason_and_a_retry_releases_it(standin, state_url):
    standin.load([customer("cus_ok"), customer("cus_bad", name="Ann\ud800")])
    first = _run(standin, state_url)
    assert first.success  # the bad customer does not stop the run
    (check,) = first.get_asset_check_evaluations()
    assert check.check_name == "quarantine_empty" and not check.passed
    assert check.severity == AssetCheckSeverity.WARN
    (held,) = check.metadata["objects"].value
    assert (held["object_type"], held["object_id"]) == ("customer", "cus_bad") and "refused" in held["reason"]
    (mat,) = first.asset_materializations_for_node("stripe_change_feed")
    assert mat.metadata["objects_quarantined"].value == 1 and mat.metadata["mirror_rows"].value["customer"] == 1

    standin.load([customer("cus_bad", name="Ann Lee")])  # fixed in Stripe
    retried = _run(standin, state_url, retry_quarantined=True)
    (check,) = retried.get_asset_check_evaluations()
    assert check.passed and check.metadata["quarantined_objects"].value == 0
    (mat,) = retried.asset_materializations_for_node("stripe_change_feed")
    assert mat.metadata["quarantine_released"].value == 1 and mat.metadata["mirror_rows"].value["customer"] == 2


def test_quarantine_retention_is_a_state_store_setting():
    assert StateStoreResource().quarantine_retention_days == 90
    with pytest.raises(Exception, match="quarantine_retention_days must be at least 1"):
        StateStoreResource(quarantine_retention_days=0)
