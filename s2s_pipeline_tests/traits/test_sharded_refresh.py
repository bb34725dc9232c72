"""A full recompute in customer shards == the unsharded computation, and the refresh's steps are safe to repeat.

A demo account is synced from the Stripe stand-in through the real change feed;
then ``refresh_customer_traits`` with a small ``shard_customers`` (4 shards of
about 14 customers) must store exactly the table ``compute_customer_traits``
builds from the whole mirror, with the same summary metadata (SQLite and
Postgres). The plan / shard / commit steps are then driven one by one, as
separate Dagster steps would (SQLite; the statements are the same):
a change recorded after planning stays pending, a shard whose write was
already committed is not written twice, a commit with a shard missing changes
nothing and a commit run again only reports, planning again under the same id
starts over, and an abandoned plan's staging table is dropped by a later plan.
"""

from __future__ import annotations

import shutil
import time

import pandas as pd
import pytest
from sqlalchemy import inspect, text

from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.store import trait_refresh_plans as plans_module
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames, load_shard_frames
from s2s_pipeline.traits.refresh import (
    TRAITS_CURSOR,
    commit_refresh,
    plan_refresh,
    refresh_customer_traits,
    refresh_shard,
)
from s2s_pipeline_tests.demo_store import sync_demo_account
from s2s_pipeline.traits.shard_summary import merge, summarize, summary_metadata_of
from s2s_pipeline.traits.summary import summary_metadata

CONFIG = TraitsConfig()


def _sync_demo_account(url: str) -> int:
    """Sync a 60-customer demo account into the store at ``url`` (the first change-feed run); its ``now``."""
    return sync_demo_account(url, customers=60, seed=11).now


@pytest.fixture(scope="module")
def synced_file(tmp_path_factory):
    """A SQLite state store holding the synced demo account, built once for the module's SQLite tests."""
    path = tmp_path_factory.mktemp("synced") / "state.db"
    return path, _sync_demo_account(f"sqlite:///{path}")


@pytest.fixture
def synced(synced_file, tmp_path):
    """A copy of the synced SQLite store, for one test."""
    path, now = synced_file
    copy = tmp_path / "state.db"
    shutil.copyfile(path, copy)
    store = StateStore.from_url(f"sqlite:///{copy}")
    yield store, now
    store.dispose()


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    out = table.sort_values("stripe_customer_id", ignore_index=True).astype(object)
    return out.where(out.notna(), None)


def _unsharded(store: StateStore, now: int) -> pd.DataFrame:
    return compute_customer_traits(load_mirror_frames(store.mirror), CONFIG, now)


def _staging_tables(store: StateStore) -> list[str]:
    return [t for t in inspect(store.engine).get_table_names() if t.startswith("customer_traits_staging_")]


def test_sharded_full_recompute_stores_the_unsharded_table_and_summary(state_url):
    now = _sync_demo_account(state_url)
    store = StateStore.from_url(state_url)
    try:
        live = store.mirror.live_count("customer")
        # ceil(live / 15) shards of equal counts (ntile): 4 for the demo's 55-odd live customers
        expected_shards = -(-live // 15)
        refresh = refresh_customer_traits(store, CONFIG, now, shard_customers=15)
        assert (refresh.mode, refresh.reason, refresh.shards) == ("full", "first_run", expected_shards)
        assert expected_shards > 3
        assert refresh.customers_recomputed == live == sum(s["rows"] for s in refresh.shard_seconds)
        sizes = [s["rows"] for s in refresh.shard_seconds]
        assert max(sizes) - min(sizes) <= 1, sizes  # equal-count ranges

        full = _unsharded(store, now)
        stored = store.traits.read()
        assert list(stored.columns) == list(full.columns)
        pd.testing.assert_frame_equal(_comparable(stored), _comparable(full), check_dtype=False)
        # the summary merged from the shards is the whole table's (preview rows, top lists, counts)
        assert summary_metadata_of(refresh.summary) == summary_metadata(full)
        assert store.changed_objects.pending().empty
        assert store.cursors.get(TRAITS_CURSOR)["mode"] == "full"
        assert store.profile_queue.scope().full
        assert _staging_tables(store) == []  # the staging table became the trait table

        # the next run, nothing changed: incremental, one shard of no customers, the same table
        plan = plan_refresh(store, CONFIG, now + 60, plan_id="run-quiet")
        assert (plan.mode, [s.key for s in plan.shards]) == ("incremental", ["changed_customers"])
        refresh_shard(store, CONFIG, store.trait_refresh_plans.get(plan.plan_id), "changed_customers")
        quiet = commit_refresh(store, plan)
        assert (quiet.mode, quiet.customers_recomputed, quiet.shards) == ("incremental", 0, 1)
        pd.testing.assert_frame_equal(_comparable(store.traits.read()), _comparable(full), check_dtype=False)
        assert _staging_tables(store) == [] and store.trait_refresh_plans.get("run-quiet").committed
    finally:
        store.dispose()


def test_merging_shard_summaries_is_summarising_the_whole_table(synced):
    store, now = synced
    full = _unsharded(store, now)
    parts = [full.iloc[i:i + 5] for i in range(0, len(full), 5)]
    assert summary_metadata_of(merge([summarize(p) for p in parts])) == summary_metadata(full)
    assert merge([summarize(p) for p in parts]) == summarize(full)
    assert summary_metadata_of(merge([])) == summary_metadata(full.iloc[0:0])


def test_a_change_recorded_after_planning_stays_pending(synced):
    store, now = synced
    plan = plan_refresh(store, CONFIG, now, shard_customers=20, plan_id="run-1")
    first = sorted(store.mirror.read_frames({"customers": ("id",)})["customers"]["id"])[0]
    with store.engine.begin() as conn:  # what a change-feed write during the refresh records
        store.changed_objects.record({"customer": {first}}, conn)
    for shard in plan.shards:
        refresh_shard(store, CONFIG, store.trait_refresh_plans.get(plan.plan_id), shard.key)
    commit_refresh(store, plan)
    assert store.changed_objects.pending().objects == {"customer": {first}}


def test_a_shard_written_once_is_not_written_again_and_a_commit_needs_every_shard(synced):
    store, now = synced
    plan = plan_refresh(store, CONFIG, now, shard_customers=25, plan_id="run-2")
    assert len(plan.shards) >= 2
    first, *others = plan.shards
    done = refresh_shard(store, CONFIG, store.trait_refresh_plans.get(plan.plan_id), first.key)
    assert done.written and done.rows > 0
    # the step ran again (its process died after the commit): the shard is as the first attempt left it
    again = refresh_shard(store, CONFIG, store.trait_refresh_plans.get(plan.plan_id), first.key)
    assert not again.written and again.rows == done.rows
    # a lost race: the write itself refuses a shard already marked
    assert not store.write_trait_shard(plan, first.key, _unsharded(store, now).head(3), {}, {})

    with pytest.raises(RuntimeError, match=others[0].key):
        commit_refresh(store, plan)
    assert not store.trait_rows.exists() and store.cursors.get(TRAITS_CURSOR) is None  # nothing changed

    results = [refresh_shard(store, CONFIG, store.trait_refresh_plans.get(plan.plan_id), shard.key)
               for shard in others]
    # the mirror rows each shard read: its customers' rows and the prices, products and coupons they refer
    # to (so the shards together read every customer's rows once and shared ones more than once); the
    # shard written before reads nothing
    assert done.rows_read == sum(load_shard_frames(store.mirror, first.lo, first.hi).row_counts().values()) > 0
    assert again.rows_read == 0
    whole = load_mirror_frames(store.mirror).row_counts()
    shared = whole["prices"] + whole["products"] + whole["coupons"]
    assert sum(whole.values()) - shared < done.rows_read + sum(r.rows_read for r in results) <= \
        sum(whole.values()) + len(plan.shards) * shared
    commit_refresh(store, plan)
    stored = store.traits.read()
    assert len(stored) == store.mirror.live_count("customer") == stored["stripe_customer_id"].nunique()
    # the commit step run again after its transaction went through: it reports, and changes nothing
    cursor = store.cursors.get(TRAITS_CURSOR)
    again = commit_refresh(store, plan)
    assert again.customers_recomputed == len(stored) and store.cursors.get(TRAITS_CURSOR) == cursor
    pd.testing.assert_frame_equal(store.traits.read(), stored)
    # once a later refresh is planned, the committed one is gone
    plan_refresh(store, CONFIG, now, plan_id="run-2-next")
    with pytest.raises(RuntimeError, match="not planned"):
        commit_refresh(store, plan)


def test_planning_again_under_the_same_id_starts_over_and_stale_plans_are_dropped(synced, monkeypatch):
    store, now = synced
    two_days_ago = time.time() - 2 * 86_400
    with monkeypatch.context() as patch:  # a plan made 2 days ago by a run that then failed for good
        patch.setattr(plans_module.time, "time", lambda: two_days_ago)
        plan = plan_refresh(store, CONFIG, now, shard_customers=25, plan_id="run-3")
    refresh_shard(store, CONFIG, store.trait_refresh_plans.get(plan.plan_id), plan.shards[0].key)
    assert _staged_rows(store, plan.staging) > 0

    again = plan_refresh(store, CONFIG, now, shard_customers=25, plan_id="run-3")  # its run re-executed whole
    assert again.staging == plan.staging
    assert not any(s.done for s in store.trait_refresh_plans.get("run-3").shards)
    assert _staged_rows(store, again.staging) == 0

    with monkeypatch.context() as patch:
        patch.setattr(plans_module.time, "time", lambda: two_days_ago)
        plan_refresh(store, CONFIG, now, shard_customers=25, plan_id="run-3")
    an_hour_ago = time.time() - 3600
    with monkeypatch.context() as patch:  # a run planned an hour ago may still be computing its shards
        patch.setattr(plans_module.time, "time", lambda: an_hour_ago)
        running = plan_refresh(store, CONFIG, now, shard_customers=25, plan_id="run-5")
    fresh = plan_refresh(store, CONFIG, now, shard_customers=25, plan_id="run-4")
    assert store.trait_refresh_plans.get("run-3") is None
    assert sorted(_staging_tables(store)) == sorted([fresh.staging, running.staging])
    assert fresh.changes == again.changes > 0  # dropping run-3 cleared no change


def _staged_rows(store: StateStore, staging: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text(f"SELECT COUNT(*) FROM {staging}")).scalar_one()
