"""A full recompute of customer_traits in 3 shards, as parallel steps of one run on the multiprocess executor.

A demo account is synced into a SQLite state store; then the real code
location's ``customer_traits`` is materialized with ``execute_job`` (the
code location reconstructed from ``s2s_pipeline.definitions`` in every step
process, as ``dagster asset materialize`` does), with ``full_recompute`` and
``shard_customers: 20`` (3 shards of the demo's ~56 live customers). The run
must map exactly three shard steps between the plan and the commit, each in a
process of its own, and store the table the unsharded computation builds from
the same mirror. The executor forks its step processes from a forkserver that
preloaded the code location (one import instead of one per step).
"""

from __future__ import annotations

import os
from multiprocessing import forkserver
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository

from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline_tests.demo_store import sync_demo_account as sync_account
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames
from s2s_pipeline.traits.refresh import TRAITS_CURSOR

REPO = Path(__file__).resolve().parents[2]
SHARD_STEPS = {f"customer_traits.compute_trait_shard[shard_{i:04d}]" for i in range(3)}


def sync_demo_account(url: str, customers: int = 60, seed: int = 13) -> None:
    sync_account(url, customers=customers, seed=seed)


def unsharded_table(store: StateStore) -> pd.DataFrame:
    """What the unsharded computation builds from the store's mirror, at the clock the refresh used."""
    now = store.cursors.get(TRAITS_CURSOR)["now"]
    return compute_customer_traits(load_mirror_frames(store.mirror), TraitsConfig(), now)


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    out = table.sort_values("stripe_customer_id", ignore_index=True).astype(object)
    return out.where(out.notna(), None)


def shard_step_pids(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    """Per shard step of the run, the pid of the process that executed it (its STEP_START event)."""
    starts = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
    return {e.dagster_event.step_key: e.dagster_event.pid for e in starts
            if "compute_trait_shard" in (e.dagster_event.step_key or "")}


@pytest.fixture
def fresh_forkserver():
    """The executor's forkserver is one per process and keeps the environment (and preloads) it started
    with: stop one an earlier test left (test_kill_points starts one), so the step processes fork from
    a server with this test's settings, and stop it afterwards (nothing is left running)."""
    forkserver._forkserver._stop()  # noqa: SLF001 - the stdlib's own way to stop it (its tests use it)
    yield
    forkserver._forkserver._stop()  # noqa: SLF001


def test_full_recompute_in_three_shards_on_the_multiprocess_executor(tmp_path, monkeypatch, fresh_forkserver):
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    sync_demo_account(state_url)
    # What the step processes read: the code location's settings (they inherit this environment).
    monkeypatch.setenv("S2S_DATABASE_URL", state_url)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("SEGMENT_WRITE_KEY", "wk_x")
    for name in ("S2S_EXECUTOR", "S2S_EXECUTOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    job = ReconstructableRepository.for_module("s2s_pipeline.definitions", "defs", str(REPO)
                                               ).get_reconstructable_job("__ASSET_JOB")
    run_config = {
        "ops": {"customer_traits": {"config": {"full_recompute": True, "shard_customers": 20}}},
        "execution": {"config": {"multiprocess": {"max_concurrent": 3, "start_method": {"forkserver": {}}}}},
    }
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as instance:
        with execute_job(job, instance, run_config=run_config,
                         asset_selection=[AssetKey("customer_traits")]) as result:
            assert result.success
            run_id = result.run_id
        pids = shard_step_pids(instance, run_id)
        assert set(pids) == SHARD_STEPS
        assert len(set(pids.values())) == 3 and os.getpid() not in pids.values(), pids  # a process per shard
        mats = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        (mat,) = [e.dagster_event.event_specific_data.materialization for e in mats]
        meta = {k: v.value for k, v in mat.metadata.items()}
        assert (meta["mode"], meta["shards"]) == ("full", 3)
        checks = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        assert len(checks) == 4 and all(e.dagster_event.event_specific_data.passed for e in checks)

    store = StateStore.from_url(state_url)
    try:
        stored, unsharded = store.traits.read(), unsharded_table(store)
        assert meta["customers"] == len(unsharded) == store.mirror.live_count("customer") > 40
        pd.testing.assert_frame_equal(comparable(stored), comparable(unsharded), check_dtype=False)
        assert store.changed_objects.pending().empty
    finally:
        store.dispose()
