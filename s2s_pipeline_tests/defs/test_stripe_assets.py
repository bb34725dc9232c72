"""The Dagster layer: code location validity, a backfill range as one run, the change feed asset, config errors."""

import os
import subprocess
import sys
from pathlib import Path
from datetime import datetime, timezone

import pytest
from dagster import DagsterInstance, DagsterInvalidConfigError, EnvVar, materialize
from sqlalchemy import select

from s2s_pipeline.definitions import defs
from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.resources import SegmentResource
from s2s_pipeline.defs.stripe.assets import stripe_change_feed, stripe_mirror_backfill
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.store import schema
from s2s_pipeline.store.db import make_engine

DAY = 86400
REPO = Path(__file__).resolve().parents[2]


def ts(day: str, hour: int = 12) -> int:
    return int(datetime.strptime(day, "%Y-%m-%d").replace(hour=hour, tzinfo=timezone.utc).timestamp())


def customer(cid, created):
    return {"id": cid, "object": "customer", "email": f"{cid}@example.com", "currency": "usd", "created": created,
            "metadata": {}}


@pytest.fixture
def standin():
    with StripeStandIn() as server:
        yield server


SEGMENT = SegmentResource(write_key="wk_test", host="http://127.0.0.1:9")


def resources(standin, state_url):
    return {
        "stripe": StripeResource(api_key="sk_test_defs", api_base=standin.base_url, rate_limit=1000),
        "state_store": StateStoreResource(database_url=state_url),
        "segment": SEGMENT,
    }


def test_definitions_validate_cli(tmp_path):
    # A DAGSTER_HOME without dagster.yaml: the shipped one (repo root) wants Postgres.
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Validation successful" in proc.stderr + proc.stdout


def test_contract_names_exist():
    assert defs.resolve_job_def("stripe_backfill").partitions_def is not None
    assert defs.resolve_job_def("nightly_trait_refresh") is not None
    schedule = defs.resolve_schedule_def("nightly_trait_refresh_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status.value == "RUNNING"


def test_backfill_over_a_date_range_is_one_run_and_fills_only_those_days(standin, state_url):
    days = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06", "2026-03-07",
            "2026-03-08"]
    standin.load(customer(f"cus_{i}", ts(day)) for i, day in enumerate(days))
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [stripe_mirror_backfill],
        resources=resources(standin, state_url),
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2026-03-02", "dagster/asset_partition_range_end": "2026-03-06"},
        selection=["stripe_customers", "stripe_charges"],
    )
    assert result.success
    assert len(instance.get_runs()) == 1
    engine = make_engine(state_url)
    with engine.connect() as conn:
        ids = set(conn.execute(select(schema.customers.c.id)).scalars())
    engine.dispose()
    assert ids == {"cus_1", "cus_2", "cus_3", "cus_4", "cus_5"}  # 2 March up to and including 6 March
    mats = result.asset_materializations_for_node("stripe_mirror_backfill")
    by_key = {m.asset_key.to_user_string(): m.metadata for m in mats}
    assert by_key["stripe_customers"]["objects_listed"].value == 5
    assert by_key["stripe_charges"]["objects_listed"].value == 0
    assert {m.partition for m in mats} >= {"2026-03-02", "2026-03-06"}


def test_change_feed_asset_reports_what_it_did(standin, state_url):
    standin.load([customer("cus_x", ts("2026-03-01"))])
    result = materialize([stripe_change_feed], resources=resources(standin, state_url),
                         instance=DagsterInstance.ephemeral())
    assert result.success
    (mat,) = result.asset_materializations_for_node("stripe_change_feed")
    assert mat.metadata["mode"].value == "initial_full_sync"
    assert mat.metadata["objects_listed"].value == 1
    assert mat.metadata["mirror_rows"].value["customer"] == 1


def test_missing_api_key_fails_the_run_naming_the_setting(monkeypatch, state_url):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    # Dagster resolves EnvVar when the run starts, before any step touches Stripe.
    with pytest.raises(DagsterInvalidConfigError, match='environment variable "STRIPE_API_KEY" which is not set'):
        materialize([stripe_change_feed], instance=DagsterInstance.ephemeral(),
                    resources={"stripe": StripeResource(api_key=EnvVar("STRIPE_API_KEY")),
                               "state_store": StateStoreResource(database_url=state_url), "segment": SEGMENT})


def test_malformed_api_key_fails_naming_the_setting(state_url):
    result = materialize([stripe_change_feed], raise_on_error=False, instance=DagsterInstance.ephemeral(),
                         resources={"stripe": StripeResource(api_key="pk_test_oops"),
                                    "state_store": StateStoreResource(database_url=state_url), "segment": SEGMENT})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "STRIPE_API_KEY is malformed" in str(failure.event_specific_data.error)


def test_unreachable_stripe_fails_clearly(state_url):
    result = materialize([stripe_change_feed], raise_on_error=False, instance=DagsterInstance.ephemeral(),
                         resources={"stripe": StripeResource(api_key="sk_test_x", api_base="http://127.0.0.1:9",
                                                             max_network_retries=0),
                                    "state_store": StateStoreResource(database_url=state_url), "segment": SEGMENT})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "could not reach Stripe at http://127.0.0.1:9" in str(failure.event_specific_data.error)


def test_malformed_segment_host_fails_before_any_stripe_work(standin, state_url):
    result = materialize([stripe_change_feed], raise_on_error=False, instance=DagsterInstance.ephemeral(),
                         resources={**resources(standin, state_url),
                                    "segment": SegmentResource(write_key="wk", host="api.segment.io")})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "SEGMENT_HOST is malformed" in str(failure.event_specific_data.error)
    assert standin.requests == []
