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

from s2s_pipeline.defs.run_workers import (
    ExecutorSettingsError,
    _FreeingDeadRunSlots,
    executor_freeing_dead_run_slots,
    selected_executor,
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
