"""Ids at Stripe's limits: a metadata user id / company id of 500 characters (Stripe's maximum metadata
value, docs.stripe.com/metadata) is delivered, recorded, and not re-sent; an error never carries it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_pipeline.segment.delivery import SegmentSettings
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions, sync_profiles
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.normalize import to_rows
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames

pytestmark = pytest.mark.postgres
WRITE_KEY = "wk_long_ids"
NOW = int(time.time())
LONG_USER_ID = "user-" + "u" * 495
LONG_COMPANY_ID = "company-" + "c" * 492


@pytest.fixture
def pg_url(state_url):
    if not state_url.startswith("postgresql"):
        pytest.skip("lengths are enforced by Postgres only")
    return state_url


def long_id_store(url: str) -> StateStore:
    store = StateStore(make_engine(url))
    store.mirror.apply(to_rows({"id": "cus_long", "object": "customer", "email": "l@example.com", "name": "L",
                                "currency": "usd", "created": 100,
                                "metadata": {"segment_user_id": LONG_USER_ID, "company_id": LONG_COMPANY_ID,
                                             "company_name": "Long Co"}}, 100))
    store.traits.write(compute_customer_traits(load_mirror_frames(store.mirror), TraitsConfig(), NOW))
    return store


def test_a_500_character_user_and_company_id_is_delivered_recorded_and_not_resent(pg_url):
    assert len(LONG_USER_ID) == len(LONG_COMPANY_ID) == 500
    store = long_id_store(pg_url)
    try:
        with SegmentSink(write_key=WRITE_KEY) as sink:
            settings = SegmentSettings(write_key=WRITE_KEY, host=sink.base_url, max_retries=1)
            first = sync_profiles(store, settings, None, ProfileSyncOptions(), NOW)
            assert first.report.failed == {}
            sent = {m["type"]: m for m in sink.accepted}
            assert sent["identify"]["userId"] == LONG_USER_ID
            assert sent["group"]["groupId"] == LONG_COMPANY_ID
            sink.clear()
            second = sync_profiles(store, settings, None, ProfileSyncOptions(), NOW + 60)
            assert second.customers_changed == 0 and sink.accepted == []
        (identity,) = store.identities.read_all().to_dict("records")
        assert identity["user_id"] == LONG_USER_ID
        (pushed,) = store.pushed_traits.read_all().to_dict("records")
        assert (pushed["user_id"], pushed["group_id"]) == (LONG_USER_ID, LONG_COMPANY_ID)
    finally:
        store.dispose()


def test_a_store_error_never_carries_the_id_value(pg_url):
    """What the step's failure (the Dagster event log) shows names no user id: SQL parameters are hidden."""
    store = long_id_store(pg_url)
    try:
        with store.engine.begin() as conn:  # a store that still has the old, narrow column
            conn.execute(text("ALTER TABLE segment_identity_map ALTER COLUMN user_id TYPE VARCHAR(255)"))
        with SegmentSink(write_key=WRITE_KEY) as sink:
            settings = SegmentSettings(write_key=WRITE_KEY, host=sink.base_url, max_retries=1)
            with pytest.raises(Exception) as failure:
                sync_profiles(store, settings, None, ProfileSyncOptions(), NOW)
        assert "uuuuuuuuuu" not in str(failure.value) and "l@example.com" not in str(failure.value)
    finally:
        store.dispose()
