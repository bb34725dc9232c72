"""``bulk_work``: the collector's thresholds raised while a step runs, restored after, nested and threaded."""

from __future__ import annotations

import gc
import threading

import pytest

from s2s_pipeline.core.bulk_work import BULK_THRESHOLDS, bulk_work, bulk_work_block


@pytest.fixture(autouse=True)
def default_thresholds():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults, whatever the test process set
    yield
    gc.set_threshold(*saved)


def test_block_raises_thresholds_and_restores_them():
    with bulk_work_block():
        assert gc.get_threshold() == BULK_THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_step_raises():
    @bulk_work
    def failing_step():
        assert gc.get_threshold() == BULK_THRESHOLDS
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        failing_step()
    assert gc.get_threshold() == (700, 10, 10)


def test_nested_blocks_restore_only_when_the_outer_one_ends():
    @bulk_work
    def inner():
        return gc.get_threshold()

    with bulk_work_block():
        assert inner() == BULK_THRESHOLDS
        assert gc.get_threshold() == BULK_THRESHOLDS  # the inner step's end did not restore them
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_of_the_process_is_kept():
    gc.set_threshold(100_000, 5, 10)
    with bulk_work_block():
        # 100,000 kept for the first generation; the others raised to the bulk values.
        assert gc.get_threshold() == (100_000, BULK_THRESHOLDS[1], BULK_THRESHOLDS[2])
    assert gc.get_threshold() == (100_000, 5, 10)


def test_overlapping_blocks_on_two_threads():
    """Thread A enters, thread B enters, A leaves (still raised for B), B leaves (restored)."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple] = {}

    def a():
        with bulk_work_block():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with bulk_work_block():
            b_in.set()
            a_out.wait(5)
            seen["b_after_a_left"] = gc.get_threshold()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["b_after_a_left"] == BULK_THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)


def test_the_step_entry_points_run_in_a_bulk_block():
    """The entry points whose working set is large are wrapped (what the bench and the assets call)."""
    from s2s_pipeline.extract.backfill import backfill
    from s2s_pipeline.extract.change_feed import sync_changes
    from s2s_pipeline.segment.profile_sync import sync_pending_profiles, sync_profiles
    from s2s_pipeline.segment.track_sync import deliver_calls, send_track_events
    from s2s_pipeline.traits.refresh import commit_refresh, refresh_shard

    for step in (backfill, sync_changes, sync_pending_profiles, sync_profiles, deliver_calls, send_track_events,
                 commit_refresh, refresh_shard):
        assert step.__wrapped__.__name__ == step.__name__  # functools.wraps of bulk_work's wrapper
        assert step.__code__ is bulk_work(lambda: None).__code__, step.__name__


def test_the_change_feed_reads_stripe_inside_the_block(tmp_path):
    """Behaviour, not structure: what the change feed does runs with the raised thresholds."""
    from s2s_pipeline.extract.change_feed import sync_changes
    from s2s_pipeline.store.state_store import StateStore

    class Reader:
        seen = None

        def newest_events(self):
            Reader.seen = gc.get_threshold()
            raise RuntimeError("stop here")

    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with pytest.raises(RuntimeError, match="stop here"):
            sync_changes(Reader(), store)
    finally:
        store.dispose()
    assert Reader.seen == BULK_THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)
