"""The sharded full recompute fanned out on a real distributed executor: dagster-celery with two workers.

The shipped ``dagster.yaml`` on Postgres (workers are separate processes: they
read the run and write its events through the instance), this machine's
RabbitMQ as the broker and Redis as the result backend. The test starts two
Celery workers with the documented command (``dagster-celery worker start``)
on a queue of its own (so parallel test sessions never take each other's
tasks), then runs ``nightly_trait_refresh`` from the CLI with
``S2S_EXECUTOR=celery`` and the executor config in ``S2S_EXECUTOR_CONFIG``,
as a deployment sets them, a full recompute in 3 shards. Every step runs in
a worker; both workers must have executed shard steps (the worker's hostname
is in each step's "Executing steps ... in celery worker" event), and the
trait table must be the one the unsharded computation builds from the same
mirror (which the multiprocess run, test_sharded_traits_run.py, stores too).
The workers are killed (whole process groups) and the queue deleted at teardown.

Needs Postgres (S2S_TEST_DATABASE_URL), RabbitMQ on 127.0.0.1:5672 and Redis on
127.0.0.1:6379: skipped with the reason when one is unreachable, a failure when
CI=true.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline_tests.defs.test_sharded_traits_run import SHARD_STEPS, comparable, unsharded_table
from s2s_pipeline_tests.ops.test_instance import (  # noqa: F401 - fixtures
    MODULE,
    REPO,
    describe,
    new_database,
    pg_home,
    run_cli,
    state_db,
)

pytestmark = [pytest.mark.postgres, pytest.mark.celery]
BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
BACKEND = "redis://127.0.0.1:6379/0"
BIN = Path(sys.executable).parent
WRITE_KEY = "wk_celery_test"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def broker_and_backend():
    missing = [name for name, port in (("RabbitMQ", 5672), ("Redis", 6379)) if not _reachable("127.0.0.1", port)]
    if missing:
        reason = f"the Celery test needs {' and '.join(missing)} on 127.0.0.1"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


def wait_until(predicate, timeout: float, what: str, describe_failure=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{describe_failure()}")
        time.sleep(0.2)


class Workers:
    """Celery workers started as a deployment starts them, each in a process group of its own."""

    def __init__(self, env: dict[str, str], config_yaml: Path, queue: str, logs: Path) -> None:
        self.env, self.config_yaml, self.queue, self.logs = env, config_yaml, queue, logs
        self.names: list[str] = []
        self.processes: list[subprocess.Popen] = []

    def start(self, count: int) -> None:
        for n in range(count):
            name = f"{self.queue}_w{n}"
            log = open(self.logs / f"{name}.log", "w")
            # One step at a time per worker; the code location imported before the pool forks.
            self.processes.append(subprocess.Popen(
                [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y",
                 str(self.config_yaml), "-q", self.queue, "-n", name, "-i", MODULE, "--", "--concurrency=1"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            self.names.append(f"{name}@{socket.gethostname()}")

    def wait_ready(self, timeout: float) -> None:
        from celery import Celery

        app = Celery("s2s_test_ping", broker=BROKER, backend=BACKEND)
        try:
            def all_answer() -> bool:
                replies = app.control.ping(destination=self.names, timeout=1.0)
                return {name for reply in replies for name in reply} == set(self.names)

            wait_until(all_answer, timeout, f"workers {self.names} to answer a ping", self.log_tail)
        finally:
            app.close()

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _delete_queue(queue: str) -> None:
    from kombu import Connection

    with Connection(BROKER) as conn:
        conn.default_channel.queue_delete(queue)


def celery_workers_of_steps(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """Per step key, the Celery worker (hostname) that executed it, from the task's engine event."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        metadata = event.event_specific_data.metadata if event.event_specific_data else {}
        worker = metadata.get("Celery worker")
        if worker is not None and event.step_key:
            out[event.step_key] = worker.value
    return out


def test_sharded_full_recompute_on_two_celery_workers(broker_and_backend, pg_home, state_db, tmp_path):
    queue = f"s2s_test_{uuid.uuid4().hex[:12]}"
    executor_config = {"broker": BROKER, "backend": BACKEND, "config_source": {"task_default_queue": queue}}
    worker_yaml = tmp_path / "celery.yaml"
    worker_yaml.write_text(yaml.safe_dump({"execution": {"config": {"broker": BROKER, "backend": BACKEND}}}))
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump(
        {"ops": {"customer_traits": {"config": {"full_recompute": True, "shard_customers": 20}}}}))
    # The instance's schema first: two workers creating it at once in a fresh database would collide.
    with DagsterInstance.get():
        pass
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        env = pg_home.env(STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE=standin.base_url, SEGMENT_WRITE_KEY=WRITE_KEY,
                          SEGMENT_HOST=sink.base_url, S2S_DATABASE_URL=state_db, S2S_EXECUTOR="celery",
                          S2S_EXECUTOR_CONFIG=json.dumps(executor_config),
                          PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        workers = Workers(env, worker_yaml, queue, tmp_path)
        try:
            workers.start(2)  # they boot while the demo account is generated
            seed_standin(standin, generate_account(customers=60, seed=13), copy=True)
            workers.wait_ready(timeout=90)
            proc = run_cli(["job", "execute", "-m", MODULE, "-j", "nightly_trait_refresh", "-c", str(run_yaml)], env)
            assert proc.returncode == 0, describe(proc) + workers.log_tail()
        finally:
            workers.stop()
            _delete_queue(queue)
        identified = {m["traits"]["stripe_customer_id"] for m in sink.accepted if m["type"] == "identify"}

    with DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        by_step = celery_workers_of_steps(instance, run.run_id)
        # every step of the run went through a worker, the three shards to both of them
        planned = {e.dagster_event.step_key for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START)}
        assert planned <= set(by_step) and SHARD_STEPS <= planned, (planned, by_step)
        assert {by_step[step] for step in SHARD_STEPS} == set(workers.names), by_step
        checks = instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        assert all(e.dagster_event.event_specific_data.passed for e in checks) and len(checks) == 6

    store = StateStore.from_url(state_db)
    try:
        stored, unsharded = store.traits.read(), unsharded_table(store)
        pd.testing.assert_frame_equal(comparable(stored), comparable(unsharded), check_dtype=False)
        assert len(stored) == store.mirror.live_count("customer") > 40
        assert identified == set(stored["stripe_customer_id"])  # and every customer's first identify was sent
    finally:
        store.dispose()
