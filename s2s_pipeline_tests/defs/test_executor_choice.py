"""S2S_EXECUTOR picks the code location's executor; S2S_EXECUTOR_CONFIG configures it; mistakes name the setting.

Every choice is wrapped so the pool slots of dead runs are freed before a run
starts (issue 11), and the wrapper hands the inner executor's own attributes
through (Celery's execution loop reads ``app_args()`` off the plan context's
executor, which is the wrapper).
"""

from __future__ import annotations

import importlib.util

import pytest
from dagster._core.execution.retries import RetryMode

from dagster import DagsterInstance, job, op, reconstructable
from dagster._core.executor.init import InitExecutorContext

from s2s_pipeline.defs.run_workers import (
    ExecutorSettingsError,
    _FreeingDeadRunSlots,
    executor_freeing_dead_run_slots,
    selected_executor,
    with_default_start_method,
)


def test_the_default_is_dagsters_default_executor_freeing_dead_runs_slots():
    assert selected_executor({}) is executor_freeing_dead_run_slots
    assert selected_executor({"S2S_EXECUTOR": "multiprocess"}) is executor_freeing_dead_run_slots


def test_celery_configured_from_the_environment():
    executor = selected_executor({"S2S_EXECUTOR": "celery", "S2S_EXECUTOR_CONFIG": (
        "broker: {env: S2S_CELERY_BROKER_URL}\nbackend: redis://127.0.0.1:6379/0\n"
        "config_source: {task_default_queue: s2s}\n")})
    assert executor.name == "celery_freeing_dead_run_slots"
    # configured: runs take no execution config of their own
    assert executor.config_schema.as_field().is_required is False


def test_the_wrapper_hands_the_inner_executors_attributes_through():
    from dagster_celery.executor import CeleryExecutor

    inner = CeleryExecutor(retries=RetryMode.DISABLED, broker="pyamqp://guest@127.0.0.1//", backend="rpc://")
    wrapped = _FreeingDeadRunSlots(inner)
    assert wrapped.app_args()["broker"] == "pyamqp://guest@127.0.0.1//"
    assert wrapped.retries is inner.retries


@pytest.mark.parametrize(("env", "message"), [
    ({"S2S_EXECUTOR": "dask"}, "S2S_EXECUTOR='dask' is not one of multiprocess, celery, k8s"),
    ({"S2S_EXECUTOR": "celery", "S2S_EXECUTOR_CONFIG": "broker: [unclosed"}, "S2S_EXECUTOR_CONFIG is not valid"),
    ({"S2S_EXECUTOR": "celery", "S2S_EXECUTOR_CONFIG": "- a list"}, "S2S_EXECUTOR_CONFIG must be a mapping"),
])
def test_a_wrong_setting_is_named(env, message):
    with pytest.raises(ExecutorSettingsError, match=message.replace("[", r"\[")):
        selected_executor(env)


@pytest.mark.skipif(importlib.util.find_spec("dagster_k8s") is not None, reason="dagster-k8s is installed")
def test_an_executor_whose_package_is_missing_names_the_package():
    with pytest.raises(ExecutorSettingsError, match="S2S_EXECUTOR=k8s needs the dagster-k8s package"):
        selected_executor({"S2S_EXECUTOR": "k8s"})


@op
def _nothing():
    return None


@job
def _one_step():
    _nothing()


def _executor_for(config: dict, tmp_path):
    """The executor the code location's default executor definition creates for a run with ``config``."""
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        context = InitExecutorContext(job=reconstructable(_one_step), executor_def=executor_freeing_dead_run_slots,
                                      executor_config=config, instance=instance)
        return executor_freeing_dead_run_slots.executor_creation_fn(context)._inner


def _parsed(multiprocess: dict) -> dict:
    return {"multiprocess": {"max_concurrent": None, "retries": {"enabled": {}}, **multiprocess}}


def test_step_processes_fork_from_a_preloaded_server_unless_a_start_method_is_given(tmp_path):
    # Dagster's own default is spawn: every step's process imports Dagster and the code location again.
    assert _executor_for(_parsed({}), tmp_path)._start_method == "forkserver"
    assert _executor_for(_parsed({"start_method": {"spawn": {}}}), tmp_path)._start_method == "spawn"
    chosen = _executor_for(_parsed({"start_method": {"forkserver": {"preload_modules": ["dagster"]}}}), tmp_path)
    assert (chosen._start_method, chosen._explicit_forkserver_preload) == ("forkserver", ["dagster"])


def test_the_start_method_default_leaves_other_executors_config_alone():
    in_process = InitExecutorContext._make([None, None, {"in_process": {}}, None])
    assert with_default_start_method(in_process) is in_process
    celery = InitExecutorContext._make([None, None, {"broker": "pyamqp://guest@127.0.0.1//"}, None])
    assert with_default_start_method(celery) is celery
