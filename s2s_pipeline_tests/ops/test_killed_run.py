"""A run SIGKILLed while it holds a pool slot blocks nothing (the shipped dagster.yaml on Postgres).

A real ``dagster job execute`` of ``nightly_trait_refresh`` is killed (the whole
process group, as a node restart or an OOM kill would) while its Segment step
holds the ``segment_api`` slot. Then:

- a rerun from the CLI right after completes: the rerun frees the claims of a
  run whose processes are all gone and marks that run failed;
- the daemon's run monitoring (its own iteration functions, as the daemon
  calls them) marks the dead run failed, and its concurrency iteration frees
  the slot; a rerun with ``execute_in_process`` completes too.

Needs S2S_TEST_DATABASE_URL (CI sets it); skipped with a reason otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline_tests.ops.test_instance import (  # noqa: F401 - fixtures
    MODULE,
    REPO,
    SHIPPED_DAGSTER_YAML,
    at,
    charge,
    customer,
    describe,
    new_database,
    pg_home,
    run_cli,
    state_db,
)

pytestmark = pytest.mark.postgres
WRITE_KEY = "wk_killed_run"
POOL = "segment_api"


def stripe_objects() -> list[dict]:
    customers = [customer(f"cus_k{i}", at("2026-11-20", f"0{i}:00:00")) for i in range(3)]
    charges = [charge(f"ch_k{i}", f"cus_k{i}", at("2026-11-21", f"0{i}:00:00")) for i in range(3)]
    return customers + charges


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)  # polling a condition in another process, not timing


def kill_nightly_while_it_holds_the_segment_slot(env: dict[str, str], sink: SegmentSink) -> str:
    """Start the nightly job from the CLI, SIGKILL its process group while it delivers; returns the run id."""
    sink.faults.delay(600)  # Segment "hangs": the step sits in delivery holding the slot
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "job", "execute", "-m", MODULE,
                             "-j", "nightly_trait_refresh"], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with DagsterInstance.get() as instance:
            wait_until(lambda: instance.event_log_storage.get_concurrency_info(POOL).claimed_slots, 240,
                       "the nightly run to claim the segment_api slot")
            (claim,) = instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            # every process of the run is gone, and the slot is still held by it
            assert instance.get_run_by_id(claim.run_id).status == DagsterRunStatus.STARTED
            assert [c.run_id for c in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots] == [
                claim.run_id]
            return claim.run_id
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        sink.faults.clear()


def env_for(pg_home, standin, sink, state_db) -> dict[str, str]:
    return pg_home.env(STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE=standin.base_url, SEGMENT_WRITE_KEY=WRITE_KEY,
                       SEGMENT_HOST=sink.base_url, S2S_DATABASE_URL=state_db)


def test_the_shipped_dagster_yaml_monitors_runs_and_frees_slots_of_ended_runs():
    config = yaml.safe_load(SHIPPED_DAGSTER_YAML.read_text())
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["max_resume_run_attempts"] == 0  # the default launcher cannot resume a run
    assert 0 < monitoring["start_timeout_seconds"] <= 600 and 0 < monitoring["cancel_timeout_seconds"] <= 600
    assert 0 < monitoring["free_slots_after_run_end_seconds"] <= 300
    assert config["run_launcher"]["class"] == "LocalRunLauncher"


def test_a_cli_rerun_right_after_a_killed_run_completes(pg_home, state_db):
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        standin.load(stripe_objects())
        env = env_for(pg_home, standin, sink, state_db)
        killed = kill_nightly_while_it_holds_the_segment_slot(env, sink)
        sink.clear()
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "job", "execute", "-m", MODULE,
                                 "-j", "nightly_trait_refresh"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 0, describe(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
        identified = {m["anonymousId"] for m in sink.accepted if m["type"] == "identify"}
    assert identified == {"cus_k0", "cus_k1", "cus_k2"}
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(killed).status == DagsterRunStatus.FAILURE
        for pool in ("stripe_api", POOL):
            info = instance.event_log_storage.get_concurrency_info(pool)
            assert info.claimed_slots == [] and info.pending_steps == [], info


def test_the_daemon_fails_the_killed_run_and_frees_its_slot_and_execute_in_process_reruns(
        pg_home, state_db, monkeypatch):
    import dagster._daemon  # noqa: F401 - import order, as in test_instance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration
    from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

    # the concurrency iteration waits free_slots_after_run_end_seconds after the run ended; 1 s here
    config = yaml.safe_load((pg_home.home / "dagster.yaml").read_text())
    config["run_monitoring"]["free_slots_after_run_end_seconds"] = 1
    (pg_home.home / "dagster.yaml").write_text(yaml.safe_dump(config))
    log = logging.getLogger("s2s_test_run_monitoring")
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        standin.load(stripe_objects())
        env = env_for(pg_home, standin, sink, state_db)
        killed = kill_nightly_while_it_holds_the_segment_slot(env, sink)
        sink.clear()
        for key in ("STRIPE_API_KEY", "STRIPE_API_BASE", "SEGMENT_WRITE_KEY", "SEGMENT_HOST", "S2S_DATABASE_URL"):
            monkeypatch.setenv(key, env[key])
        monkeypatch.chdir(REPO)
        with DagsterInstance.get() as instance:
            with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])) as ctx:
                list(execute_run_monitoring_iteration(ctx, log))
                assert instance.get_run_by_id(killed).status == DagsterRunStatus.FAILURE

                def freed() -> bool:
                    list(execute_concurrency_slots_iteration(ctx, log))
                    return instance.event_log_storage.get_concurrency_info(POOL).claimed_slots == []

                wait_until(freed, 30, "the daemon to free the killed run's slot")

            from s2s_pipeline.definitions import defs

            result = defs.resolve_job_def("nightly_trait_refresh").execute_in_process(instance=instance)
            assert result.success
        identified = {m["anonymousId"] for m in sink.accepted if m["type"] == "identify"}
    assert identified == {"cus_k0", "cus_k1", "cus_k2"}
