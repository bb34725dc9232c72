"""Runs whose processes are gone: recognised, marked failed, and their pool slots given back.

A run killed outright (SIGKILL, an OOM kill, a node restart) never reports
its end, so Dagster keeps it STARTED and keeps its pool claims: every later
step of that pool (the nightly's Segment steps, every failed-payment alert)
waits for ever. Three things undo that:

- each run worker tags its run with the machine it runs on
  (``s2s/run_worker_host``), and every Dagster event records the pid of the
  process that logged it, so a run on this machine is *dead* when none of
  those processes is alive any more;
- before a run claims any slot (the executor of the code location, and a
  resource for ``execute_in_process``, which initialises resources before
  its steps claim), it frees the claims of runs that have ended or are dead,
  and marks a dead run failed;
- ``LocalRunLauncher`` (the shipped ``dagster.yaml``) answers the daemon's run
  monitoring with the same test, so the daemon fails dead runs too, and its
  ``free_slots_after_run_end_seconds`` frees their slots.

A run on another machine (or not yet tagged) is never judged from here: its
pids mean nothing on this host; Dagster's run monitoring of that launcher
(Kubernetes, Docker, ECS check their workers) fails it, and its claims are
freed once it has ended.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import socket
from collections.abc import Iterator, Mapping

import yaml

from dagster import (
    DagsterInstance,
    DagsterRun,
    Definitions,
    ExecutorDefinition,
    definitions,
    multi_or_in_process_executor,
)
from dagster._core.executor.base import Executor
from dagster._core.executor.init import InitExecutorContext
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

from s2s_pipeline.defs.resources import RUN_SETUP_HOOKS

RUN_WORKER_HOST_TAG = "s2s/run_worker_host"


def this_host() -> str:
    return socket.gethostname()


def tag_run_worker(instance: DagsterInstance, run: DagsterRun) -> None:
    """Record on the run which machine its processes run on (once)."""
    if run.tags.get(RUN_WORKER_HOST_TAG) != this_host():
        instance.add_run_tags(run.run_id, {RUN_WORKER_HOST_TAG: this_host()})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_worker_status(instance: DagsterInstance, run: DagsterRun) -> WorkerStatus:
    """RUNNING while a process of the run is alive, FAILED when all are gone, UNKNOWN if not judged here."""
    if run.tags.get(RUN_WORKER_HOST_TAG) != this_host():
        return WorkerStatus.UNKNOWN
    pids = {entry.dagster_event.pid for entry in instance.all_logs(run.run_id)
            if entry.dagster_event is not None and entry.dagster_event.pid}
    if not pids:
        return WorkerStatus.UNKNOWN
    return WorkerStatus.RUNNING if any(_alive(pid) for pid in pids) else WorkerStatus.FAILED


def free_slots_of_dead_runs(instance: DagsterInstance, current_run_id: str | None = None) -> list[str]:
    """Free every pool claim (and pending step) of a run that has ended or whose processes are gone.

    Returns the run ids freed; a dead run is marked failed first.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    holders: set[str] = set()
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        holders |= {slot.run_id for slot in info.claimed_slots} | {step.run_id for step in info.pending_steps}
    holders.discard(current_run_id)
    freed = []
    for run_id in sorted(holders):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            if run_worker_status(instance, run) != WorkerStatus.FAILED:
                continue
            instance.report_run_failed(run, "Every process of this run is gone (killed); marked failed and its "
                                            "pool slots freed by a later run.")
        storage.free_concurrency_slots_for_run(run_id)
        freed.append(run_id)
    return freed


def prepare_run(instance: DagsterInstance, run: DagsterRun) -> list[str]:
    """What a run does before its steps claim pool slots: tag its worker's host, free dead runs' slots."""
    tag_run_worker(instance, run)
    return free_slots_of_dead_runs(instance, current_run_id=run.run_id)


class _FreeingDeadRunSlots(Executor):
    """An executor (the default, Celery's, Kubernetes') that first frees the pool slots dead runs hold."""

    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        # Executors read their own settings off the plan context's executor (Celery: ``app_args()``),
        # which is this wrapper: everything but ``execute`` is the inner executor's.
        return getattr(self._inner, name)

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator:
        freed = prepare_run(plan_context.instance, plan_context.dagster_run)
        if freed:
            plan_context.log.warning(f"Freed the pool slots of runs whose processes are gone: {', '.join(freed)}")
        yield from self._inner.execute(plan_context, execution_plan)


#: How the default executor starts step processes when neither the run nor ``S2S_EXECUTOR_CONFIG`` says:
#: forked from a server that imported the code location once (Dagster preloads the module the job was
#: loaded from), instead of Dagster's default ``spawn``, which imports Dagster and the whole code
#: location again in every step's process (a few seconds each on a 2-core machine; docs/performance.md).
DEFAULT_START_METHOD = "forkserver"


def with_default_start_method(init_context: InitExecutorContext) -> InitExecutorContext:
    """``init_context`` with ``start_method: forkserver`` added to a multiprocess config that names none
    (where the platform has forkserver; not on Windows). A start method given anywhere is kept."""
    config = init_context.executor_config
    multiprocess = config.get("multiprocess")
    if (not isinstance(multiprocess, Mapping) or multiprocess.get("start_method")
            or DEFAULT_START_METHOD not in multiprocessing.get_all_start_methods()):
        return init_context
    chosen = {**multiprocess, "start_method": {DEFAULT_START_METHOD: {}}}
    return init_context._replace(executor_config={**config, "multiprocess": chosen})


def freeing_dead_run_slots(inner: ExecutorDefinition, name: str | None = None) -> ExecutorDefinition:
    """``inner`` (same config and requirements) freeing the pool slots of dead runs before each run; the
    multiprocess executor starts its step processes with ``DEFAULT_START_METHOD`` unless told otherwise."""
    return ExecutorDefinition(
        name=name or f"{inner.name}_freeing_dead_run_slots",
        config_schema=inner.config_schema,
        requirements=inner._requirements_fn,  # noqa: SLF001 - the inner executor's requirements, unchanged
        executor_creation_fn=lambda init_context: _FreeingDeadRunSlots(
            inner.executor_creation_fn(with_default_start_method(init_context))),
        description=f"{inner.description or inner.name}, after freeing the pool slots of runs whose processes "
                    "are gone.",
    )


executor_freeing_dead_run_slots = freeing_dead_run_slots(multi_or_in_process_executor,
                                                         name="multi_or_in_process_freeing_dead_run_slots")

#: Which executor runs the steps of every job, and its config (docs/operations.md, "Scaling out").
EXECUTOR_ENV = "S2S_EXECUTOR"
EXECUTOR_CONFIG_ENV = "S2S_EXECUTOR_CONFIG"
#: ``S2S_EXECUTOR`` value -> (module, executor definition, distribution to install at dagster's release).
EXECUTORS = {
    "multiprocess": ("dagster", "multi_or_in_process_executor", "dagster"),
    "celery": ("dagster_celery", "celery_executor", "dagster-celery"),
    "k8s": ("dagster_k8s", "k8s_job_executor", "dagster-k8s"),
}


class ExecutorSettingsError(ValueError):
    """``S2S_EXECUTOR`` / ``S2S_EXECUTOR_CONFIG`` cannot be used; the message says which and why."""


def selected_executor(env: Mapping[str, str] = os.environ) -> ExecutorDefinition:
    """The executor ``S2S_EXECUTOR`` names (default ``multiprocess``: Dagster's default executor), freeing
    dead runs' pool slots first, configured with ``S2S_EXECUTOR_CONFIG`` (YAML or JSON) when set.

    A configured executor takes no ``execution`` run config: every run (schedules, sensors, the UI)
    uses the deployment's settings; ``{"env": "VAR"}`` values (a broker URL with a password) are read
    when a run starts, never stored with the run.
    """
    name = (env.get(EXECUTOR_ENV) or "multiprocess").strip()
    if name not in EXECUTORS:
        raise ExecutorSettingsError(f"{EXECUTOR_ENV}={name!r} is not one of {', '.join(EXECUTORS)}")
    module, attribute, distribution = EXECUTORS[name]
    try:
        inner = getattr(importlib.import_module(module), attribute)
    except ImportError as exc:
        raise ExecutorSettingsError(f"{EXECUTOR_ENV}={name} needs the {distribution} package, at the release "
                                    f"matching dagster's ({exc})") from exc
    executor = executor_freeing_dead_run_slots if name == "multiprocess" else freeing_dead_run_slots(inner)
    raw = env.get(EXECUTOR_CONFIG_ENV)
    if not raw or not raw.strip():
        return executor
    try:
        config = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ExecutorSettingsError(f"{EXECUTOR_CONFIG_ENV} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ExecutorSettingsError(f"{EXECUTOR_CONFIG_ENV} must be a mapping (the executor's config), "
                                    f"got {type(config).__name__}")
    return executor.configured(config, name=executor.name)


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher (runs as processes of the code server's machine) with a worker health
    check, so the daemon's run monitoring fails a run whose processes were killed."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        status = run_worker_status(self._instance, run)
        if status == WorkerStatus.UNKNOWN:
            # not judged from this machine: report running, so monitoring leaves it alone
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker not on this machine or not tagged yet")
        return CheckRunHealthResult(status, "no process of the run is alive" if status == WorkerStatus.FAILED
                                    else None)


RUN_SETUP_HOOKS.append(prepare_run)  # runs started with execute_in_process (in-process executor)


@definitions
def run_worker_defs() -> Definitions:
    """Every job of the code location without its own executor runs on the executor ``S2S_EXECUTOR`` names
    (Dagster's default executor unless set), after freeing the pool slots of dead runs."""
    return Definitions(executor=selected_executor())
