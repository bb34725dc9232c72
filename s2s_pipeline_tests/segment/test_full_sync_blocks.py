"""Everyone compared in blocks of customers (after a full recompute) sends what one pass over everyone sends.

A 40-customer demo account is synced and its traits refreshed (a first run: a full recompute, which
queues everyone for the diff) in two stores; one delivers with ``FULL_SYNC_BLOCK`` = 7 (six blocks),
the other in one pass. The calls Segment receives (ids and bodies), the pushed state left behind and
the run's figures must be the same; the queue is settled in both. """

from __future__ import annotations

import shutil

import pandas as pd

from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_pipeline.segment import profile_sync
from s2s_pipeline.segment.delivery import SegmentSettings
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions, sync_pending_profiles
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.refresh import refresh_customer_traits
from s2s_pipeline_tests.demo_store import sync_demo_account

WRITE_KEY = "wk_blocks"


def _pushed(store: StateStore) -> pd.DataFrame:
    frame = store.pushed_traits.read_all().drop(columns=["identify_pushed_at", "group_pushed_at"])
    return frame.sort_values("stripe_customer_id", ignore_index=True)


def test_everyone_compared_in_blocks_gets_the_calls_of_one_pass(tmp_path, monkeypatch):
    runs = {}
    real = profile_sync.sync_profiles
    synced = tmp_path / "synced.db"
    account = sync_demo_account(f"sqlite:///{synced}", customers=40, seed=5)
    for block in (7, 1_000_000):
        copy = tmp_path / f"state_{block}.db"  # the same synced store for both
        shutil.copyfile(synced, copy)
        store = StateStore.from_url(f"sqlite:///{copy}")
        monkeypatch.setattr(profile_sync, "FULL_SYNC_BLOCK", block)
        passes = []
        def counted(*args, **kwargs):  # each pass: its range of ids and how many customers it compared
            outcome = real(*args, **kwargs)
            passes.append((kwargs.get("id_range"), outcome.customers))
            return outcome

        monkeypatch.setattr(profile_sync, "sync_profiles", counted)
        try:
            refresh_customer_traits(store, TraitsConfig(), account.now, full=True)
            assert store.profile_queue.scope().full
            with SegmentSink(write_key=WRITE_KEY) as sink:
                outcome = sync_pending_profiles(store, SegmentSettings(write_key=WRITE_KEY, host=sink.base_url),
                                                None, ProfileSyncOptions(), account.now)
                calls = sink.accepted_by_message_id()
            runs[block] = (calls, _pushed(store), outcome, passes)
            assert not store.profile_queue.scope().full and not store.profile_queue.scope().customer_ids
        finally:
            store.dispose()
    (blocked, blocked_pushed, blocked_outcome, blocked_passes) = runs[7]
    (whole, whole_pushed, whole_outcome, whole_passes) = runs[1_000_000]
    # 40 customers in blocks of 7: six passes over consecutive ranges of ids, the first and last open;
    # one pass of everyone otherwise
    assert [n for _, n in blocked_passes] == [7, 7, 7, 7, 7, 5]
    ranges = [r for r, _ in blocked_passes]
    assert ranges[0][0] is None and ranges[-1][1] is None
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert whole_passes == [(None, 40)]
    # the calls' bodies without the times of sending and receiving them
    for calls in (blocked, whole):
        for call in calls.values():
            call.pop("sentAt", None), call.pop("receivedAt", None)
    assert len(whole) > 40 and blocked == whole  # every identify (and group) call, byte for byte
    pd.testing.assert_frame_equal(blocked_pushed, whole_pushed)
    assert (blocked_outcome.customers, blocked_outcome.customers_changed, blocked_outcome.scope) == \
        (whole_outcome.customers, whole_outcome.customers_changed, whole_outcome.scope) == (40, 40, "full")
    assert blocked_outcome.report.count("identify") == whole_outcome.report.count("identify")
    assert blocked_outcome.report.count("group") == whole_outcome.report.count("group")
    assert blocked_outcome.identity_sources == whole_outcome.identity_sources
    assert not blocked_outcome.report.failed
