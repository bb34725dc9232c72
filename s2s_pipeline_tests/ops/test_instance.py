"""The shipped `dagster.yaml` as production runs it: Dagster's storage on Postgres, launched from the CLI.

Each test gets its own DAGSTER_HOME holding a copy of the repository's
`dagster.yaml` and a fresh Postgres database for the Dagster instance
(`DAGSTER_PG_URL`), created on the server of the session's `postgres_url`
and dropped afterwards; the state store (`S2S_DATABASE_URL`) gets another
fresh database where a test needs one. The Stripe stand-in and the Segment
sink run in this process on 127.0.0.1; the CLI runs as a subprocess from the
repository root with only the documented environment variables.

- the instance: run/event-log/schedule storage are dagster-postgres, the
  queued run coordinator, at most 4 concurrent runs, pools limited to 1 step,
  run retries on;
- a 7-day backfill with `dagster asset materialize --partition-range` is one
  run, records exactly those partitions and fills the mirror with exactly the
  objects created on those days (boundary seconds included/excluded);
- the schedule: evaluates to a run of `nightly_trait_refresh`, ticks at 02:00
  UTC, and the scheduler daemon's own iteration queues the 02:00 tick on an
  instance where nobody started the schedule (on by default);
- `dagster job execute -j nightly_trait_refresh`: the run, its asset
  materializations and check results are in Postgres, pool slots are released,
  and Segment received the identify calls.

Needs S2S_TEST_DATABASE_URL (CI sets it); skipped with a reason otherwise.
`dagster asset materialize` and `dagster job execute` have no `-w` option in
Dagster 1.13, so they load the code location with `-m s2s_pipeline.definitions`
(what `workspace.yaml` loads).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    build_schedule_context,
)
from sqlalchemy import create_engine, func, select, text

from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.store import schema
from s2s_pipeline.store.db import make_engine

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DAGSTER_YAML = REPO / "dagster.yaml"
MODULE = "s2s_pipeline.definitions"
CLI_TIMEOUT_S = 180
UTC = timezone.utc

NIGHTLY_ASSETS = ["stripe_change_feed", "customer_traits", "segment_profiles", "segment_track_events",
                  "segment_regulations"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def new_database(postgres_url):
    """Factory of fresh, empty databases on the session's Postgres server; all dropped at teardown."""
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    base = postgres_url.rpartition("/")[0]
    created: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return f"{base}/{name}"  # postgresql+psycopg2:// (conftest normalizes the URL)

    yield make
    with admin.connect() as conn:
        for name in created:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                         {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@dataclass
class PgInstanceHome:
    home: Path
    pg_url: str

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a CLI subprocess: this instance plus ``extra``, nothing inherited from the project."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STRIPE_", "SEGMENT_", "S2S_", "DAGSTER_"))}
        env.update(DAGSTER_HOME=str(self.home), DAGSTER_PG_URL=self.pg_url, PYTHONUNBUFFERED="1", **extra)
        return env


@pytest.fixture
def pg_home(new_database, tmp_path, monkeypatch) -> PgInstanceHome:
    """DAGSTER_HOME = a copy of the shipped dagster.yaml; DAGSTER_PG_URL = a fresh database (also in os.environ)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(SHIPPED_DAGSTER_YAML, home / "dagster.yaml")
    pg_url = new_database("s2s_dagster")
    assert pg_url.startswith("postgresql+psycopg2://")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", pg_url)
    return PgInstanceHome(home, pg_url)


@pytest.fixture
def state_db(new_database) -> str:
    """S2S_DATABASE_URL: another fresh database, separate from the Dagster instance's."""
    return new_database("s2s_state")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dagster", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"


# ----------------------------------------------------------------------------- Stripe objects (current API shape)


def at(day: str, hms: str = "12:00:00") -> int:
    return int(datetime.fromisoformat(f"{day}T{hms}+00:00").timestamp())


def customer(cid: str, created: int) -> dict:
    return {"id": cid, "object": "customer", "email": f"{cid}@example.com", "currency": "usd",
            "created": created, "metadata": {}}


def charge(chid: str, cid: str, created: int, amount: int = 2500) -> dict:
    return {"id": chid, "object": "charge", "status": "succeeded", "amount": amount,
            "amount_captured": amount, "amount_refunded": 0, "currency": "usd", "customer": cid,
            "created": created, "payment_method_details": {"type": "card", "card": {"brand": "visa"}}}


def ten_days_of_objects() -> tuple[list[dict], dict[str, str]]:
    """Customers and charges created on 2026-03-01..10, including each day's first and last second.

    Returns the objects and, per object id, the UTC day it was created.
    """
    objects, day_of = [], {}
    for n in range(10):
        day = (datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=n)).date().isoformat()
        for tag, cus_time, ch_time in (("a", "00:00:00", "11:30:00"), ("b", "12:00:00", "23:59:59")):
            cid, chid = f"cus_{day}_{tag}", f"ch_{day}_{tag}"
            objects += [customer(cid, at(day, cus_time)), charge(chid, cid, at(day, ch_time))]
            day_of[cid] = day_of[chid] = day
    return objects, day_of


# ----------------------------------------------------------------------------- 1. the instance


def test_shipped_dagster_yaml_gives_a_postgres_instance_with_queue_pools_and_retries(pg_home):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    with DagsterInstance.get() as instance:
        assert instance.root_directory == str(pg_home.home)
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        # the storage really is the database named by DAGSTER_PG_URL, schema created and empty
        assert instance.run_storage.postgres_url == pg_home.pg_url
        assert instance.event_log_storage.postgres_url == pg_home.pg_url
        assert instance.get_runs() == []

        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 4  # what the daemon's queue uses
        assert concurrency.pool_config.default_pool_limit == 1
        assert instance.global_op_concurrency_default_limit == 1
        assert instance.event_log_storage.supports_global_concurrency_limits
        for pool in ("stripe_api", "segment_api"):
            info = instance.event_log_storage.get_concurrency_info(pool)
            assert (info.limit, info.using_default_limit) == (1, True), info

        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2


# ----------------------------------------------------------------------------- 2. backfill from the CLI


def test_seven_day_backfill_from_the_cli_is_one_run_and_fills_exactly_those_days(pg_home, state_db):
    objects, day_of = ten_days_of_objects()
    days = [f"2026-03-{d:02d}" for d in range(2, 9)]  # 2 March .. 8 March, both included
    with StripeStandIn() as standin:
        standin.load(objects)
        proc = run_cli(
            ["asset", "materialize", "-m", MODULE, "--select", "stripe_customers,stripe_charges",
             "--partition-range", f"{days[0]}...{days[-1]}"],
            pg_home.env(STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE=standin.base_url, SEGMENT_WRITE_KEY="x",
                        S2S_DATABASE_URL=state_db),
        )
        assert proc.returncode == 0, describe(proc)
        listed = [r for r in standin.requests if r["path"] in ("/v1/customers", "/v1/charges")]
    assert listed, "the backfill never called the Stripe stand-in"

    with DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 1, [(r.run_id, r.job_name, r.tags) for r in runs]
        (run,) = runs
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags["dagster/asset_partition_range_start"] == days[0]
        assert run.tags["dagster/asset_partition_range_end"] == days[-1]
        for key in ("stripe_customers", "stripe_charges"):
            assert instance.get_materialized_partitions(AssetKey(key)) == set(days), key
        # only the selected assets: the multi-asset's other outputs were not materialized
        assert instance.get_materialized_partitions(AssetKey("stripe_invoices")) == set()

    engine = make_engine(state_db)
    try:
        with engine.connect() as conn:
            customer_ids = set(conn.execute(select(schema.customers.c.id)).scalars())
            charge_ids = set(conn.execute(select(schema.charges.c.id)).scalars())
            invoices = conn.execute(select(func.count()).select_from(schema.invoices)).scalar_one()
    finally:
        engine.dispose()
    expected = {oid for oid, day in day_of.items() if day in days}
    assert customer_ids == {oid for oid in expected if oid.startswith("cus_")}
    assert charge_ids == {oid for oid in expected if oid.startswith("ch_")}
    assert len(customer_ids) == len(charge_ids) == 14
    assert invoices == 0


# ----------------------------------------------------------------------------- 3. the schedule


def test_schedule_evaluates_to_a_nightly_trait_refresh_run_at_0200_utc():
    from dagster._utils.schedules import cron_string_iterator  # what the scheduler daemon iterates with

    from s2s_pipeline.definitions import defs

    schedule = defs.resolve_schedule_def("nightly_trait_refresh_schedule")
    assert schedule.job_name == "nightly_trait_refresh"
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    context = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 28, 2, 0, tzinfo=UTC))
    data = schedule.evaluate_tick(context)
    assert data.skip_message is None
    (request,) = data.run_requests
    assert isinstance(request, RunRequest)
    assert request.job_name in (None, "nightly_trait_refresh")  # None: the schedule's own job
    assert request.tags["dagster/schedule_name"] == "nightly_trait_refresh_schedule"

    ticks = cron_string_iterator(datetime(2026, 11, 27, 2, 0, 1, tzinfo=UTC).timestamp(),
                                 schedule.cron_schedule, schedule.execution_timezone)
    upcoming = [next(ticks).astimezone(UTC) for _ in range(3)]
    assert upcoming == [datetime(2026, 11, d, 2, 0, tzinfo=UTC) for d in (28, 29, 30)]
    # and across the end of European/US summer time: still 02:00 UTC
    ticks = cron_string_iterator(datetime(2026, 10, 24, 12, 0, tzinfo=UTC).timestamp(),
                                 schedule.cron_schedule, schedule.execution_timezone)
    assert [next(ticks).astimezone(UTC).hour for _ in range(10)] == [2] * 10


def test_scheduler_daemon_queues_the_0200_tick_without_anyone_starting_the_schedule(pg_home, monkeypatch):
    """One iteration of the scheduler daemon's own loop body against workspace.yaml and the Postgres instance.

    First at 01:59:30 UTC (the daemon picks the schedule up: on by default),
    then at 02:00:20 UTC: the 02:00 tick is submitted, and the queued run
    coordinator leaves the run QUEUED for the run queue.
    """
    import dagster._daemon  # noqa: F401 - import order: dagster._scheduler imports the daemon package
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._scheduler.scheduler import launch_scheduled_runs

    # The code server the workspace starts resolves EnvVar("STRIPE_API_KEY") etc. to build the run.
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("SEGMENT_WRITE_KEY", "x")
    monkeypatch.chdir(REPO)
    log = logging.getLogger("s2s_test_scheduler")

    with DagsterInstance.get() as instance:
        assert list(instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)) == []
        with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])) as ctx:
            entries = ctx.create_request_context().get_code_location_entries()
            assert [e.load_error for e in entries.values()] == [None]

            before = list(launch_scheduled_runs(ctx, log, end_datetime_utc=datetime(2026, 11, 28, 1, 59, 30,
                                                                                     tzinfo=UTC),
                                                iteration_times={}))
            assert [e for e in before if e is not None] == []
            states = {st.instigator_name: st for st in
                      instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)}
            # the nightly refresh and its weekly full-recompute safety net, both on by default
            assert set(states) == {"nightly_trait_refresh_schedule", "weekly_full_trait_recompute"}
            state = states["nightly_trait_refresh_schedule"]
            assert state.status == InstigatorStatus.DECLARED_IN_CODE  # running because the code says so
            assert instance.get_runs() == []

            after = list(launch_scheduled_runs(ctx, log, end_datetime_utc=datetime(2026, 11, 28, 2, 0, 20,
                                                                                    tzinfo=UTC),
                                               iteration_times={}))
            assert [e for e in after if e is not None] == []

        (run,) = instance.get_runs()
        assert run.job_name == "nightly_trait_refresh"
        assert run.status == DagsterRunStatus.QUEUED  # QueuedRunCoordinator: the run queue starts it
        assert run.tags["dagster/schedule_name"] == "nightly_trait_refresh_schedule"
        assert run.tags[".dagster/scheduled_execution_time"] == "2026-11-28T02:00:00+00:00"


# ----------------------------------------------------------------------------- 4. a real run on Postgres


def test_nightly_job_from_the_cli_records_its_run_and_materializations_in_postgres(pg_home, state_db):
    customers = [customer(f"cus_n{i}", at("2026-11-20", f"0{i}:00:00")) for i in range(3)]
    charges = [charge(f"ch_n{i}", f"cus_n{i}", at("2026-11-21", f"0{i}:00:00"), amount=1000 * (i + 1))
               for i in range(3)]
    with StripeStandIn() as standin, SegmentSink(write_key="wk_instance_test") as sink:
        standin.load(customers + charges)
        proc = run_cli(
            ["job", "execute", "-m", MODULE, "-j", "nightly_trait_refresh"],
            pg_home.env(STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE=standin.base_url,
                        SEGMENT_WRITE_KEY="wk_instance_test", SEGMENT_HOST=sink.base_url,
                        S2S_DATABASE_URL=state_db),
        )
        assert proc.returncode == 0, describe(proc)
        accepted = list(sink.accepted)

    identifies = {m["anonymousId"]: m for m in accepted if m["type"] == "identify"}
    assert set(identifies) == {"cus_n0", "cus_n1", "cus_n2"}
    assert identifies["cus_n1"]["traits"]["lifetime_value"] == 20.0
    assert identifies["cus_n1"]["traits"]["payment_count"] == 1

    with DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=RunsFilter(job_name="nightly_trait_refresh"))
        assert len(runs) == 1 and len(instance.get_runs()) == 1
        (run,) = runs
        assert run.status == DagsterRunStatus.SUCCESS
        for key in NIGHTLY_ASSETS:
            event = instance.get_latest_materialization_event(AssetKey(key))
            assert event is not None, f"{key} has no materialization in the Postgres event log"
            assert event.run_id == run.run_id, key
        checks = instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        names = {e.dagster_event.event_specific_data.check_name for e in checks}
        assert names == {"one_row_per_customer", "non_negative_money", "refund_rate_within_bounds",
                         "spend_tier_valid", "no_stuck_regulations", "quarantine_empty"}, names
        assert len(checks) == 6 and all(e.dagster_event.event_specific_data.passed for e in checks)
        # the pools were used and every slot given back (a leaked slot would block all later runs)
        for pool in ("stripe_api", "segment_api"):
            info = instance.event_log_storage.get_concurrency_info(pool)
            assert info.limit == 1 and info.claimed_slots == [] and info.pending_steps == [], info
