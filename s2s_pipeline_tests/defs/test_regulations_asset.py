"""segment_regulations in Dagster: filed/pending/finished counts as metadata, the stuck check, the nightly job,
the retention settings of the state store resource and the shipped dagster.yaml's tick retention."""

import time
from pathlib import Path

import yaml
from dagster import DagsterInstance, materialize

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.regulations import STUCK_CHECK, segment_regulations
from s2s_pipeline.defs.segment.resources import SegmentPublicApiResource
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.definitions import defs
from s2s_pipeline.privacy.public_api import RegulationsClient
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.normalize import to_rows
from s2s_pipeline_tests.privacy.public_api_standin import PublicApiStandIn

REPO = Path(__file__).resolve().parents[2]
DAY = 86400


def run(state_url, papi):
    return materialize([segment_regulations], instance=DagsterInstance.ephemeral(), raise_on_error=False,
                       resources={"state_store": StateStoreResource(database_url=state_url),
                                  "segment_public_api": SegmentPublicApiResource(token=papi.token, host=papi.base_url),
                                  "trait_rules": TraitRulesResource()})


def _customer(store, cid, user_id, deleted_at):
    store.mirror.apply(to_rows({"id": cid, "object": "customer", "email": f"{cid}@example.com", "name": cid,
                                "metadata": {"segment_user_id": user_id}, "created": 1}, 100))
    store.mirror.mark_deleted("customer", [cid], deleted_at)


def test_files_regulations_reports_their_standing_and_flags_a_stuck_one(state_url):
    store = StateStore.from_url(state_url)
    now = int(time.time())
    with PublicApiStandIn() as papi:
        _customer(store, "cus_new", "u_new", now)
        # A regulation filed 40 days ago that Segment still runs.
        old_id = RegulationsClient(papi.token, papi.base_url).file("SUPPRESS_WITH_DELETE", ["u_old"])
        papi.set_status(old_id, "RUNNING")
        store.regulations.request([{"stripe_customer_id": "cus_old", "reason": "deleted_in_stripe",
                                    "state": "filed", "regulate_id": old_id, "segment_status": "INITIALIZED",
                                    "requested_at": now - 40 * DAY}])
        result = run(state_url, papi)
        assert papi.subjects() == ["u_new", "u_old"]
    assert result.success  # a failed check does not fail the step; the UI shows it red
    (mat,) = result.asset_materializations_for_node("segment_regulations")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert (meta["filed"], meta["pending"], meta["finished"], meta["customers_purged"]) == (2, 2, 0, 2)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == STUCK_CHECK and not check.passed
    assert check.metadata["stuck"].value == 1
    assert store.regulations.record_for("cus_old")["segment_status"] == "RUNNING"
    store.dispose()


def test_the_check_passes_once_segment_finished(state_url):
    store = StateStore.from_url(state_url)
    with PublicApiStandIn() as papi:
        _customer(store, "cus_1", "u_1", int(time.time()))
        run(state_url, papi)
        (regulate_id,) = papi.regulations
        papi.set_status(regulate_id, "FINISHED")
        result = run(state_url, papi)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    (mat,) = result.asset_materializations_for_node("segment_regulations")
    assert mat.metadata["finished"].value == 1
    store.dispose()


def test_the_nightly_job_files_regulations():
    job = defs.resolve_job_def("nightly_trait_refresh")
    assert "segment_regulations" in job.graph.node_names()


def test_state_store_retention_covers_every_growing_table(state_url):
    resource = StateStoreResource(database_url=state_url)
    out = resource.apply_retention(int(time.time()))
    assert set(out) == {"raw_payloads_dropped", "event_payloads_dropped", "unsent_events_expired",
                        "ledger_events_deleted", "track_sent_deleted", "audit_rows_deleted",
                        "deleted_customers_scrubbed", "forgotten_customers_rescrubbed", "webhook_events_dropped",
                        "quarantine_entries_dropped"}
    assert (resource.event_ledger_retention_days, resource.track_sent_retention_days,
            resource.delivery_audit_retention_days, resource.raw_payload_retention_days) == (90, 730, 400, 30)


def test_the_shipped_dagster_yaml_purges_old_ticks(tmp_path, monkeypatch):
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config.pop("storage")  # Postgres in production; the retention section is what is read here
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    instance = DagsterInstance.get()
    sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
    assert (sensor[TickStatus.SKIPPED], sensor[TickStatus.FAILURE], sensor[TickStatus.SUCCESS]) == (7, 30, 90)
    assert set(instance.get_tick_retention_settings(InstigatorType.SCHEDULE).values()) == {90}
