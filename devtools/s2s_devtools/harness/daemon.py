"""A real `dagster-daemon` against the code location, a Stripe stand-in and a Segment sink.

Used by `test_daemon.py`, `test_daemon_load.py`, `bench/sensor_latency_bench.py`
and `bench/daemon_load_bench.py`: the path a failed payment takes in
production (sensor tick -> queued run -> run worker subprocess -> Segment),
with nothing mocked.

`daemon_harness()` (a context manager) does, in order:

1. starts a `StripeStandIn` seeded with a small generated account (then
   `standin.now = None`, so new events carry the wall clock) and a
   `SegmentSink`, both on 127.0.0.1 in this process;
2. prepares a throwaway DAGSTER_HOME. By default its own `dagster.yaml`
   (telemetry and nux off, no storage section: SQLite under that directory;
   QueuedRunCoordinator dequeuing every second, like the shipped one, +
   DefaultRunLauncher) and a SQLite state store; the repository's
   `dagster.yaml` is not read. With ``postgres=ADMIN_URL`` it is a copy of the
   shipped `dagster.yaml` (Postgres storage, queue of 4, pools of 1, run
   monitoring, run retries, `LocalRunLauncher`) with Dagster's storage in one
   fresh database (`DAGSTER_PG_URL`) and the state store in another
   (`S2S_DATABASE_URL`), both created on that server and dropped on exit.
   With ``webhooks=True`` it also serves the webhook receiver (s2s-webhooks'
   app, in this process) on the same state store and registers it as the
   stand-in's webhook endpoint for failed payments, so every failure is
   posted, signed, within milliseconds of being emitted;
3. runs `nightly_trait_refresh` once in this process (same env, same
   instance), so the mirror, the event cursor and every customer's identity
   exist before any alert;
4. starts `dagster-daemon run -w workspace.yaml` in its own process group
   (killed as a group on exit; Dagster's children ignore a lone SIGTERM);
5. waits until `failed_payment_sensor` has finished its first tick (its cursor
   is stored), so a failure created afterwards is new, not history.

`fail_a_payment(standin, account)` then makes one realistic failed renewal
attempt in the stand-in and returns `(invoice.payment_failed event id, created)`;
`DaemonHarness.launch_run(job)` submits a run to the run queue the way
`dagster job launch -w workspace.yaml` (and the scheduler) does.

Environment: the Stripe/Segment/state-store variables, DAGSTER_HOME and a
PYTHONPATH naming this checkout (the shared venv's editable install points at
another one) are set in this process for the duration (in-process runs read
them through EnvVar) and restored afterwards; the daemon gets a copy, with
DAGSTER_PG_URL only in Postgres mode.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from s2s_pipeline.core.contract import PAYMENT_FAILED

REPO = Path(__file__).resolve().parents[3]  # devtools/s2s_devtools/harness/ -> repository
SHIPPED_DAGSTER_YAML = REPO / "dagster.yaml"
WORKSPACE_YAML = REPO / "workspace.yaml"

SENSOR_NAME = "failed_payment_sensor"
ALERT_JOB = "failed_payment_alert"
NIGHTLY_JOB = "nightly_trait_refresh"

STRIPE_KEY = "sk_test_s2s_daemon_harness"
WRITE_KEY = "daemon_harness_write_key"

#: Daemon start + code location load + first sensor tick.
FIRST_TICK_DEADLINE_S = 90
SHUTDOWN_DEADLINE_S = 15
#: How often instance state is polled while waiting on a condition (not a timing sleep).
POLL_S = 0.25

DAGSTER_YAML = (
    "# Throwaway test instance: SQLite storage under this directory (no storage section),\n"
    "# QueuedRunCoordinator dequeuing every second as the shipped dagster.yaml does, DefaultRunLauncher.\n"
    "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
    "  config:\n    dequeue_interval_seconds: 1\n"
    "telemetry:\n  enabled: false\n"
    "nux:\n  enabled: false\n"
)

WEBHOOK_SECRET = "whsec_daemon_harness"

DAY = 86400
DECLINE = {
    "code": "card_declined",
    "decline_code": "insufficient_funds",
    "message": "Your card has insufficient funds.",
}


class HarnessError(AssertionError):
    """The daemon, the sensor or a run misbehaved; the message carries the evidence."""


# ----------------------------------------------------------------------------- processes


def kill_group(proc: subprocess.Popen, deadline_s: float = SHUTDOWN_DEADLINE_S) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL whatever is left at the deadline."""
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break  # the whole group is gone (code server, run workers too)
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        pass


def _group_rss_bytes(pgid: int) -> int:
    """Sum of the resident set sizes of every live process in group ``pgid`` (Linux /proc)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # fields after the ")" of the command name: state ppid pgrp ... rss is field 24 overall
        rest = stat.rsplit(")", 1)[-1].split()
        try:
            if int(rest[2]) == pgid:
                total += int(rest[21]) * page
        except (IndexError, ValueError):
            continue
    return total


class GroupRssSampler:
    """Samples the summed RSS of a process group in a background thread; keeps the peak."""

    def __init__(self, pgid: int, interval_s: float = 0.5):
        self.pgid = pgid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="daemon-rss-sampler", daemon=True)

    def start(self) -> GroupRssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, _group_rss_bytes(self.pgid))
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)


@contextlib.contextmanager
def _patched_environ(values: dict[str, str], remove: Collection[str] = ()) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in [*values, *remove]}
    try:
        for k in remove:
            os.environ.pop(k, None)
        os.environ.update(values)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------- Segment sink helpers


def received_at(message: dict) -> float:
    """The sink's ``receivedAt`` of a message as Unix seconds."""
    return datetime.fromisoformat(message["receivedAt"].replace("Z", "+00:00")).timestamp()


def payment_failed_tracks(sink: Any, invoice_id: str) -> list[dict]:
    """Accepted ``Payment Failed`` track calls about ``invoice_id`` (duplicates included). Call under
    ``sink.wait_for`` or accept a racy snapshot."""
    return [m for m in list(sink.accepted)
            if m.get("type") == "track" and m.get("event") == PAYMENT_FAILED
            and (m.get("properties") or {}).get("invoice_id") == invoice_id]


def identity_of(message: dict) -> tuple[str | None, str | None]:
    return message.get("userId"), message.get("anonymousId")


# ----------------------------------------------------------------------------- the harness


@dataclass
class DaemonHarness:
    standin: Any
    sink: Any
    account: Any
    home: Path
    state_url: str
    env: dict[str, str]
    log_path: Path
    instance: Any = None
    proc: subprocess.Popen | None = None
    rss: GroupRssSampler | None = None
    used_customers: set[str] = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)
    receiver: Any = None  # the webhook receiver (``webhooks=True``)
    endpoint: Any = None  # the stand-in's webhook endpoint pointing at it
    dagster_pg_url: str | None = None  # Dagster's storage database (``postgres=...``), else SQLite under home
    stack: contextlib.ExitStack | None = None  # the harness's own clean-ups (closed when the harness exits)
    workspace: Any = None  # a WorkspaceProcessContext on workspace.yaml in this process (``launch_run``)

    # -- the daemon ----------------------------------------------------------------------

    def start_daemon(self) -> None:
        exe = Path(sys.executable).parent / "dagster-daemon"
        if not exe.exists():
            raise HarnessError(f"dagster-daemon not found next to {sys.executable}")
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed right after Popen (the child keeps its copy)
        try:
            self.proc = subprocess.Popen(
                [str(exe), "run", "-w", "workspace.yaml"],
                cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.rss = GroupRssSampler(self.proc.pid).start()

    def stop_daemon(self) -> None:
        if self.rss is not None:
            self.rss.stop()
        if self.proc is not None:
            kill_group(self.proc)

    def daemon_log(self, n: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no daemon log)"

    def check_daemon_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f"dagster-daemon exited with {self.proc.returncode}:\n{self.daemon_log()}")

    def pause(self) -> None:
        """One poll interval; returns early if the daemon dies (then the caller's check reports it)."""
        if self.proc is None:
            threading.Event().wait(POLL_S)
            return
        try:
            self.proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass

    # -- the sensor ----------------------------------------------------------------------

    def sensor_state(self):
        from dagster._core.scheduler.instigation import InstigatorType

        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.name == SENSOR_NAME:
                return state
        return None

    def sensor_cursor(self) -> str | None:
        state = self.sensor_state()
        data = state.instigator_data if state is not None else None
        return getattr(data, "cursor", None)

    def sensor_ticks(self, limit: int = 20) -> list:
        state = self.sensor_state()
        if state is None:
            return []
        return list(self.instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=limit))

    def sensor_tick_errors(self) -> list[str]:
        return [t.error.to_string() for t in self.sensor_ticks() if getattr(t, "error", None) is not None]

    def wait_for_first_tick(self, deadline_s: float = FIRST_TICK_DEADLINE_S) -> None:
        """Until the sensor stored its first cursor (a successful tick); raises with the evidence otherwise."""
        started = time.monotonic()
        deadline = started + deadline_s
        while True:
            self.check_daemon_alive()
            if self.sensor_cursor():
                self.timings["first_tick_seconds"] = round(time.monotonic() - started, 2)
                return
            errors = self.sensor_tick_errors()
            if errors:
                raise HarnessError(f"{SENSOR_NAME} tick failed:\n{errors[0]}\n--- daemon log ---\n{self.daemon_log()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{SENSOR_NAME} did not complete a tick within {deadline_s} s "
                                   f"(ticks: {[t.status for t in self.sensor_ticks()]})\n"
                                   f"--- daemon log ---\n{self.daemon_log()}")
            self.pause()

    # -- runs ----------------------------------------------------------------------------

    def alert_runs(self) -> list:
        from dagster import RunsFilter

        return list(self.instance.get_runs(filters=RunsFilter(job_name=ALERT_JOB)))

    def run_errors(self, run_id: str) -> list[str]:
        """Error texts of a run's event log: step failures, run failure, engine errors."""
        out = []
        for record in self.instance.all_logs(run_id):
            event = record.dagster_event
            if event is None:
                if record.error_info is not None:
                    out.append(record.error_info.to_string())
                continue
            data = event.event_specific_data
            error = getattr(data, "error", None)
            if error is not None:
                out.append(f"{event.event_type_value} {event.step_key or ''}: {error.to_string()}")
            elif event.is_failure or event.event_type_value in ("RUN_FAILURE", "PIPELINE_FAILURE"):
                out.append(f"{event.event_type_value}: {record.message}")
        return out

    def wait_for_alert_runs(self, run_keys: Collection[str], timeout_s: float = 90) -> list:
        """Until every run with these run keys exists and finished; raises on a failed run (with its errors)."""
        from dagster import DagsterRunStatus

        done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_daemon_alive()
            runs = [r for r in self.alert_runs() if r.tags.get("dagster/run_key") in run_keys]
            if {r.tags.get("dagster/run_key") for r in runs} >= set(run_keys) and all(r.status in done for r in runs):
                break
            if time.monotonic() > deadline:
                states = {r.tags.get("dagster/run_key"): r.status.value for r in runs}
                raise HarnessError(f"{ALERT_JOB} runs for {sorted(run_keys)} not finished within {timeout_s} s: "
                                   f"{states}; sensor tick errors: {self.sensor_tick_errors()[:1]}\n"
                                   f"--- daemon log ---\n{self.daemon_log()}")
            self.pause()
        failed = [r for r in runs if r.status != DagsterRunStatus.SUCCESS]
        if failed:
            details = "\n".join(f"run {r.run_id} (run_key {r.tags.get('dagster/run_key')}) {r.status.value}:\n  "
                                + "\n  ".join(self.run_errors(r.run_id)) for r in failed)
            raise HarnessError(f"{ALERT_JOB} run(s) failed:\n{details}")
        return runs

    def run_job_in_process(self, name: str = NIGHTLY_JOB):
        """Run a job of the code location in this process, on the harness's instance and env."""
        from s2s_pipeline.definitions import defs

        job = defs.resolve_job_def(name)
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        result = job.execute_in_process(instance=self.instance, raise_on_error=False, run_config=quiet)
        if not result.success:
            raise HarnessError(f"{name} failed in process:\n" + "\n".join(self.run_errors(result.run_id)))
        return result

    def launch_run(self, name: str = NIGHTLY_JOB, *, run_config: dict | None = None,
                   tags: dict[str, str] | None = None) -> str:
        """Submit a run of ``name`` to the instance's run coordinator as `dagster job launch -w
        workspace.yaml` does (and the scheduler: a run created from the code location's remote job,
        with its origin, then ``submit_run``). With the queued coordinator the run waits in the queue
        for the daemon. Returns the run id.

        The first call loads workspace.yaml in this process (its own code server, a few seconds), so
        call ``open_workspace()`` beforehand when the moment of the launch matters.
        """
        from dagster._core.definitions.selector import JobSubsetSelector

        workspace = self.open_workspace().create_request_context()
        (location_name,) = workspace.get_code_location_entries()
        location = workspace.get_code_location(location_name)
        (repo,) = location.get_repositories().values()
        job = location.get_job(JobSubsetSelector(location_name=location_name, repository_name=repo.name,
                                                 job_name=name, op_selection=None))
        run_config = run_config or {}
        plan = location.get_execution_plan(job, run_config, step_keys_to_execute=None, known_state=None,
                                           instance=self.instance).execution_plan_snapshot
        run = self.instance.create_run(
            job_name=name, run_id=None, run_config=run_config, resolved_op_selection=job.resolved_op_selection,
            step_keys_to_execute=plan.step_keys_to_execute, op_selection=None, status=None, root_run_id=None,
            parent_run_id=None, tags={**job.tags, **(tags or {})}, job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan, parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(), job_code_origin=job.get_python_origin(),
            asset_selection=None, asset_check_selection=None, asset_graph=repo.asset_graph,
        )
        return self.instance.submit_run(run.run_id, workspace).run_id

    def open_workspace(self):
        """workspace.yaml loaded in this process (once; closed with the harness)."""
        if self.workspace is None:
            from dagster._core.workspace.context import WorkspaceProcessContext
            from dagster._core.workspace.load_target import WorkspaceFileTarget

            context = WorkspaceProcessContext(self.instance, WorkspaceFileTarget(paths=[str(WORKSPACE_YAML)]),
                                             code_server_log_level="WARNING")
            stack = self.stack if self.stack is not None else contextlib.ExitStack()
            self.workspace = stack.enter_context(context)
            errors = [e.load_error for e in self.workspace.create_request_context()
                      .get_code_location_entries().values() if e.load_error is not None]
            if errors:
                raise HarnessError(f"workspace.yaml did not load in this process: {errors[0]}")
        return self.workspace

    def alert_run_timeline(self, run_keys: Collection[str]) -> dict[str, dict]:
        """Per run key: when the run was created (sensor tick), started (worker up) and ended (Unix s)."""
        from dagster import RunsFilter

        out = {}
        for rec in self.instance.get_run_records(filters=RunsFilter(job_name=ALERT_JOB)):
            key = rec.dagster_run.tags.get("dagster/run_key")
            if key in run_keys:
                out[key] = {"run_id": rec.dagster_run.run_id, "status": rec.dagster_run.status.value,
                            "created": rec.create_timestamp.timestamp(), "started": rec.start_time,
                            "ended": rec.end_time}
        return out

    def run_stages(self, run_id: str) -> dict[str, float]:
        """Unix time of the first event of each type in a run's event log (RUN_ENQUEUED, RUN_DEQUEUED,
        RUN_STARTING, RUN_START, STEP_START, STEP_SUCCESS, RUN_SUCCESS, ...)."""
        out: dict[str, float] = {}
        for record in self.instance.all_logs(run_id):
            if record.dagster_event is not None:
                out.setdefault(record.dagster_event.event_type_value, record.timestamp)
        return out

    # -- Stripe --------------------------------------------------------------------------

    def failed_payment_event_ids(self, since: int) -> list[str]:
        """Ids of the stand-in's failed-payment events created at or after ``since`` (via its HTTP API)."""
        import json
        import urllib.parse
        import urllib.request

        from s2s_pipeline.core.alert_rule import FAILED_PAYMENT_EVENT_TYPES

        ids: list[str] = []
        while True:  # every page (a burst of 50 declines is 100 such events)
            params = [("types[]", t) for t in FAILED_PAYMENT_EVENT_TYPES] + [("created[gte]", str(since)),
                                                                            ("limit", "100")]
            if ids:
                params.append(("starting_after", ids[-1]))
            req = urllib.request.Request(f"{self.standin.base_url}/v1/events?{urllib.parse.urlencode(params)}",
                                         headers={"Authorization": f"Bearer {STRIPE_KEY}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                page = json.load(resp)
            ids += [e["id"] for e in page["data"]]
            if not page.get("has_more") or not page["data"]:
                return ids

    def alerting_event_ids(self, since: int) -> list[str]:
        """Those of ``failed_payment_event_ids`` that yield an alert (core.alert_rule): an invoice's own
        declined ``charge.failed`` does not (its ``invoice.payment_failed`` alerts), a one-off charge's does."""
        import json
        import urllib.parse
        import urllib.request

        from s2s_pipeline.core.alert_rule import is_failed_payment_alert

        def pays_invoice(charge: dict) -> bool:
            intent = charge.get("payment_intent")
            intent = intent.get("id") if isinstance(intent, dict) else intent
            if not intent:
                return False
            query = urllib.parse.urlencode({"payment[type]": "payment_intent", "payment[payment_intent]": intent})
            req = urllib.request.Request(f"{self.standin.base_url}/v1/invoice_payments?{query}",
                                         headers={"Authorization": f"Bearer {STRIPE_KEY}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                return bool(json.load(resp)["data"])

        return [i for i in self.failed_payment_event_ids(since)
                if is_failed_payment_alert(self.standin.get("events", i), pays_invoice)]

    def webhook_posted_at(self, event_id: str) -> float | None:
        """When the stand-in first started posting ``event_id`` to the receiver (Unix s), None if never."""
        if self.endpoint is None:
            return None
        starts = [a.at - a.seconds for a in list(self.endpoint.attempts) if a.event_id == event_id]
        return min(starts) if starts else None

    def wait_for_webhook(self, event_id: str, timeout_s: float = 10) -> float:
        """Until the receiver answered 2xx for ``event_id``; returns when the first POST started."""
        deadline = time.monotonic() + timeout_s
        while event_id not in self.endpoint.delivered():
            if time.monotonic() > deadline:
                raise HarnessError(f"webhook for {event_id} not accepted within {timeout_s} s: "
                                   f"{[a for a in self.endpoint.attempts if a.event_id == event_id]}")
            self.pause()
        return self.webhook_posted_at(event_id)

    def fail_a_payment(self) -> tuple[str, int]:
        """``fail_a_payment`` on a customer this harness has not failed yet (when there is one)."""
        event_id, created = fail_a_payment(self.standin, self.account, exclude=self.used_customers)
        event = self.standin.get("events", event_id)
        self.used_customers.add(event["data"]["object"]["customer"])
        return event_id, created


@contextlib.contextmanager
def daemon_harness(*, customers: int = 20, seed: int = 7, first_tick_deadline_s: float = FIRST_TICK_DEADLINE_S,
                   webhooks: bool = False, postgres: str | None = None) -> Iterator[DaemonHarness]:
    """Stand-in + sink + instance + initial nightly run + running daemon whose sensor has ticked once
    (+ the webhook receiver and the stand-in's endpoint with ``webhooks=True``).

    ``postgres``: an admin URL of a Postgres server (e.g. ``postgresql://postgres@127.0.0.1:5432/test``):
    the instance is the shipped ``dagster.yaml`` on a fresh database there, the state store another one.
    """
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from s2s_devtools.demo.generator import generate_account, seed_standin
    from s2s_devtools.fakes.segment_sink import SegmentSink
    from s2s_devtools.fakes.stripe import StripeStandIn

    t0 = time.monotonic()
    account = generate_account(customers=customers, seed=seed)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s2s-daemon-")))
        home = tmp / "dagster_home"
        home.mkdir()
        dagster_pg_url = None
        if postgres:
            from s2s_devtools.harness.postgres import fresh_databases

            dagster_pg_url, state_url = stack.enter_context(
                fresh_databases(postgres, ["s2s_daemon_dagster", "s2s_daemon_state"]))
            shutil.copy(SHIPPED_DAGSTER_YAML, home / "dagster.yaml")
        else:
            state_url = f"sqlite:///{tmp / 's2s_state.db'}"
            (home / "dagster.yaml").write_text(DAGSTER_YAML)
        standin = stack.enter_context(StripeStandIn())
        seed_standin(standin, account)
        standin.now = None  # the wall clock from here on: new events are newer than the generated history
        sink = stack.enter_context(SegmentSink(write_key=WRITE_KEY))
        values = {
            "DAGSTER_HOME": str(home),
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": standin.base_url,
            "SEGMENT_WRITE_KEY": WRITE_KEY,
            "SEGMENT_HOST": sink.base_url,
            "S2S_DATABASE_URL": state_url,
            # The daemon, its code server and the run workers import this checkout's product (the shared
            # venv's editable install may point at another checkout).
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "devtools"),
                                           *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
        if webhooks:
            values["STRIPE_WEBHOOK_SECRET"] = WEBHOOK_SECRET
        if dagster_pg_url:
            values["DAGSTER_PG_URL"] = dagster_pg_url
        stack.enter_context(_patched_environ(values, remove=[] if dagster_pg_url else ["DAGSTER_PG_URL"]))
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        instance = stack.enter_context(DagsterInstance.from_ref(InstanceRef.from_dir(str(home))))
        h = DaemonHarness(standin=standin, sink=sink, account=account, home=home, state_url=state_url, env=env,
                          log_path=tmp / "daemon.log", instance=instance, dagster_pg_url=dagster_pg_url,
                          stack=stack)
        if webhooks:
            from s2s_devtools.harness.receiver import running_receiver
            from s2s_pipeline.core.alert_rule import FAILED_PAYMENT_EVENT_TYPES

            h.receiver = stack.enter_context(running_receiver(WEBHOOK_SECRET, state_url))
            h.endpoint = standin.add_webhook_endpoint(h.receiver.url, WEBHOOK_SECRET, FAILED_PAYMENT_EVENT_TYPES)
        h.timings["account_seconds"] = round(time.monotonic() - t0, 2)
        t1 = time.monotonic()
        h.run_job_in_process(NIGHTLY_JOB)
        h.timings["initial_sync_seconds"] = round(time.monotonic() - t1, 2)
        stack.callback(h.stop_daemon)
        t2 = time.monotonic()
        h.start_daemon()
        h.wait_for_first_tick(first_tick_deadline_s)
        h.timings["daemon_ready_seconds"] = round(time.monotonic() - t2, 2)
        yield h


# ----------------------------------------------------------------------------- a failed payment


def _sub_id(invoice: dict) -> str | None:
    details = ((invoice.get("parent") or {}).get("subscription_details") or {})
    sub = details.get("subscription")
    return sub.get("id") if isinstance(sub, dict) else sub


def _intent_id(invoice: dict) -> str | None:
    for payment in ((invoice.get("payments") or {}).get("data") or []):
        target = (payment.get("payment") or {}).get("payment_intent")
        return target.get("id") if isinstance(target, dict) else target
    return None


def _candidates(standin: Any, account: Any, exclude: Collection[str]) -> list[tuple[dict, dict, dict]]:
    """(invoice, subscription, customer) in their current stand-in state: invoices of live subscriptions
    that are waiting for a retry (open) or paid, newest first; retries first."""
    out = []
    for stale in account.of_type("invoice"):
        inv = standin.get("invoices", stale["id"])
        if not inv or inv.get("status") not in ("open", "paid") or not inv.get("amount_due"):
            continue
        if inv["status"] == "open" and not inv.get("next_payment_attempt"):
            continue  # retries exhausted: Stripe will not try again
        sub = standin.get("subscriptions", _sub_id(inv) or "")
        cust = standin.get("customers", inv.get("customer") or "")
        if not sub or sub.get("status") not in ("active", "past_due") or not cust or cust.get("deleted"):
            continue
        if not _intent_id(inv) or not standin.get("payment_intents", _intent_id(inv)):
            continue
        out.append((inv, sub, cust))
    # one candidate per subscription: its newest invoice
    newest: dict[str, tuple[dict, dict, dict]] = {}
    for c in out:
        key = c[1]["id"]
        if key not in newest or (c[0]["created"], c[0]["id"]) > (newest[key][0]["created"], newest[key][0]["id"]):
            newest[key] = c
    ranked = sorted(newest.values(), key=lambda c: (c[0]["status"] != "open", -c[0]["created"], c[0]["id"]))
    fresh = [c for c in ranked if c[2]["id"] not in exclude]
    return fresh or ranked


def fresh_customers(standin: Any, account: Any, exclude: Collection[str] = ()) -> int:
    """How many customers not in ``exclude`` ``fail_a_payment`` can still fail a payment for."""
    return len({c[2]["id"] for c in _candidates(standin, account, ()) if c[2]["id"] not in exclude})


def _rid(rng: random.Random, prefix: str, lead: str = "1", n: int = 24) -> str:
    from s2s_devtools.fakes.stripe import random_alnum

    return f"{prefix}_{lead}{random_alnum(rng, n - 1)}"


def _failed_charge(template: dict | None, intent: dict, invoice: dict, customer: dict, when: int,
                   rng: random.Random) -> dict:
    """A declined card charge for the invoice's amount, shaped like the account's other charges."""
    ch_id = _rid(rng, "ch", lead="3")
    charge = copy.deepcopy(template) if template else {"object": "charge", "payment_method_details": {"type": "card"}}
    amount = int(invoice["amount_due"])
    charge.update({
        "id": ch_id, "object": "charge", "amount": amount, "amount_captured": 0, "amount_refunded": 0,
        "balance_transaction": None, "captured": False, "created": when, "currency": invoice["currency"],
        "customer": customer["id"], "description": intent.get("description") or "Subscription update",
        "disputed": False, "failure_balance_transaction": None,
        "failure_code": DECLINE["code"], "failure_message": DECLINE["message"],
        "outcome": {
            "advice_code": "try_again_later", "network_advice_code": None, "network_decline_code": "51",
            "network_status": "declined_by_network", "reason": DECLINE["decline_code"], "risk_level": "normal",
            "risk_score": rng.randint(5, 60), "type": "issuer_declined",
            "seller_message": "The bank returned the decline code `insufficient_funds`.",
        },
        "paid": False, "payment_intent": intent["id"], "payment_method": intent.get("payment_method"),
        "receipt_email": None, "receipt_number": None, "refunded": False,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/test_{ch_id[3:]}",
        "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                    "url": f"/v1/charges/{ch_id}/refunds"},
        "review": None, "status": "failed",
    })
    card = (charge.get("payment_method_details") or {}).get("card")
    if isinstance(card, dict):
        card.update(amount_authorized=None, authorization_code=None, network_transaction_id=None)
        if isinstance(card.get("overcapture"), dict):
            card["overcapture"] = dict(card["overcapture"], maximum_amount_capturable=amount)
    return charge


def _new_renewal(paid: dict, sub: dict, customer: dict, when: int, rng: random.Random,
                 template_intent: dict) -> tuple[dict, dict, dict]:
    """A new subscription_cycle invoice (open), its PaymentIntent and InvoicePayment, built from the
    subscription's last paid invoice."""
    inv_id = _rid(rng, "in")
    items = (sub.get("items") or {}).get("data") or []
    start = min([int(i.get("current_period_start") or when) for i in items] or [when])
    end = max([int(i.get("current_period_end") or when) for i in items] or [when])
    seq = int(customer.get("next_invoice_sequence") or 1)
    inv = copy.deepcopy(paid)
    lines = []
    for line in ((inv.get("lines") or {}).get("data") or []):
        line = dict(line, id=_rid(rng, "il"), invoice=inv_id)
        if isinstance(line.get("period"), dict):
            line["period"] = {"start": start, "end": end}
        lines.append(line)
    amount = int(inv["amount_due"])
    pi_id = _rid(rng, "pi", lead="3")
    intent = copy.deepcopy(template_intent)
    intent.update({
        "id": pi_id, "amount": amount, "amount_received": 0, "created": when, "currency": inv["currency"],
        "client_secret": f"{pi_id}_secret_{_rid(rng, 'x', n=25)[2:]}", "description": "Subscription update",
        "last_payment_error": None, "latest_charge": None, "status": "requires_payment_method",
        "canceled_at": None, "cancellation_reason": None,
    })
    inpay = {
        "id": _rid(rng, "inpay"), "object": "invoice_payment", "amount_paid": None, "amount_requested": amount,
        "created": when, "currency": inv["currency"], "invoice": inv_id, "is_default": True, "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": pi_id}, "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }
    inv.update({
        "id": inv_id, "amount_paid": 0, "amount_remaining": amount, "attempt_count": 0, "attempted": False,
        "billing_reason": "subscription_cycle", "created": when, "effective_at": when,
        "number": f"{customer.get('invoice_prefix') or 'DEMO'}-{seq:04d}", "next_payment_attempt": None,
        "period_start": start, "period_end": end, "status": "open",
        "status_transitions": {"finalized_at": when, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_demo/test_{inv_id[3:]}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/acct_demo/test_{inv_id[3:]}/pdf",
        "lines": dict(inv.get("lines") or {}, data=lines, total_count=len(lines), url=f"/v1/invoices/{inv_id}/lines"),
        "payments": {"object": "list", "data": [inpay], "has_more": False, "total_count": 1,
                     "url": f"/v1/invoices/{inv_id}/payments"},
        "webhooks_delivered_at": when,
    })
    return inv, intent, inpay


def fail_a_payment(standin: Any, account: Any, *, exclude: Collection[str] = (), now: int | None = None,
                   rng: random.Random | None = None) -> tuple[str, int]:
    """A card decline on a subscription invoice, emitted into the stand-in the way Stripe records it.

    Picks a live subscription whose newest invoice is open awaiting a retry (the retry fails) or
    paid (a new renewal invoice is created and its first attempt fails), preferring customers not in
    ``exclude``. Emits, all at ``now``: for a new renewal ``invoice.created``/``invoice.finalized`` and
    ``payment_intent.created``; then ``charge.failed`` (the declined charge), ``payment_intent.payment_failed``
    (``last_payment_error``: card_declined / insufficient_funds), ``invoice.payment_failed`` (status open,
    ``attempt_count`` + 1, ``next_payment_attempt`` in 3 days), ``customer.subscription.updated`` to
    ``past_due`` when it was active, and ``customer.updated`` (``delinquent``) when it was not delinquent.

    Returns ``(invoice.payment_failed event id, its created time)``.
    """
    rng = rng or random.Random()
    when = int(now if now is not None else time.time())
    candidates = _candidates(standin, account, exclude)
    if not candidates:
        raise HarnessError("no subscription with an open or paid invoice to fail a payment on")
    inv, sub, cust = candidates[0]
    inv, sub, cust = copy.deepcopy(inv), copy.deepcopy(sub), copy.deepcopy(cust)
    intent = copy.deepcopy(standin.get("payment_intents", _intent_id(inv)))
    templates = [c for c in account.of_type("charge") if c.get("customer") == cust["id"]] or account.of_type("charge")
    template = copy.deepcopy(standin.get("charges", templates[-1]["id"]) or templates[-1]) if templates else None

    if inv["status"] == "paid":
        inv, intent, inpay = _new_renewal(inv, sub, cust, when, rng, intent)
        standin.load([inpay])  # Stripe sends no event for an open InvoicePayment
        draft = dict(inv, status="draft", number=None, effective_at=None, hosted_invoice_url=None, invoice_pdf=None,
                     status_transitions=dict(inv["status_transitions"], finalized_at=None))
        standin.emit("invoice.created", draft, created=when)
        standin.emit("invoice.finalized", inv, created=when)
        standin.emit("payment_intent.created", intent, created=when)
        cust["next_invoice_sequence"] = int(cust.get("next_invoice_sequence") or 1) + 1
        customer_changed = True
    else:
        customer_changed = False

    charge = _failed_charge(template, intent, inv, cust, when, rng)
    previous_intent = {"last_payment_error": intent.get("last_payment_error"), "latest_charge": intent.get("latest_charge"),
                       "status": intent.get("status")}
    intent.update({
        "latest_charge": charge["id"], "status": "requires_payment_method",
        "last_payment_error": {
            "type": "card_error", "charge": charge["id"], **DECLINE,
            "advice_code": "try_again_later",
            "doc_url": "https://docs.stripe.com/error-codes/card-declined",
            "payment_method": {"id": intent.get("payment_method"), "object": "payment_method", "type": "card"},
        },
    })
    previous_invoice = {"attempt_count": inv.get("attempt_count"), "attempted": inv.get("attempted"),
                        "next_payment_attempt": inv.get("next_payment_attempt")}
    inv.update({"attempt_count": int(inv.get("attempt_count") or 0) + 1, "attempted": True, "status": "open",
                "next_payment_attempt": when + 3 * DAY, "webhooks_delivered_at": when})

    standin.emit("charge.failed", charge, created=when)
    standin.emit("payment_intent.payment_failed", intent, created=when, previous_attributes=previous_intent)
    failed = standin.emit("invoice.payment_failed", inv, created=when, previous_attributes=previous_invoice)
    if sub.get("status") == "active":
        sub["status"] = "past_due"
        standin.emit("customer.subscription.updated", sub, created=when, previous_attributes={"status": "active"})
    if not cust.get("delinquent"):
        cust["delinquent"] = True
        standin.emit("customer.updated", cust, created=when, previous_attributes={"delinquent": False})
    elif customer_changed:
        standin.load([cust])  # next_invoice_sequence moved on (Stripe sends no event for that alone)
    return failed["id"], when


__all__ = [
    "ALERT_JOB", "NIGHTLY_JOB", "PAYMENT_FAILED", "SENSOR_NAME", "WEBHOOK_SECRET", "DaemonHarness", "HarnessError",
    "daemon_harness", "fail_a_payment", "fresh_customers", "identity_of", "kill_group", "payment_failed_tracks",
    "received_at",
]
