"""Bad settings fail at the start with a message naming the setting, never silently or as a bare ValueError."""

from __future__ import annotations

import pytest
from dagster import Failure

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.resources import SegmentResource
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.store.db import StateStoreConfigError, make_engine


@pytest.mark.parametrize("days", [-1, 0])
def test_a_retention_that_would_drop_every_raw_payload_is_refused(days):
    with pytest.raises(Exception, match="raw_payload_retention_days"):
        StateStoreResource(raw_payload_retention_days=days)


def test_retention_none_and_positive_days_are_accepted():
    assert StateStoreResource(raw_payload_retention_days=None).raw_payload_retention_days is None
    assert StateStoreResource(raw_payload_retention_days=1).raw_payload_retention_days == 1


@pytest.mark.parametrize("minimums", [[100, 100, 1000], [100, 1000, 1000], [1000, 100, 10000], [100, 1000]])
def test_tier_thresholds_must_be_three_strictly_increasing_minimums(minimums):
    with pytest.raises(Exception, match="tier_thresholds"):
        TraitRulesResource(tier_thresholds={"usd": minimums})


def test_increasing_tier_thresholds_are_accepted():
    assert TraitRulesResource(tier_thresholds={"usd": [1, 2, 3]}).config().thresholds_for("usd") == (1, 2, 3)


@pytest.mark.parametrize("url", ["postgresql://u@db.internal:abc/s2s", "postgresql://u@db.internal:99999999/s2s"])
def test_a_malformed_port_in_the_database_url_names_the_setting(url):
    with pytest.raises(StateStoreConfigError, match="S2S_DATABASE_URL") as failure:
        make_engine(url)
    assert "port" in str(failure.value)


def test_a_dry_run_path_naming_a_file_is_refused_naming_the_setting(tmp_path):
    calls = tmp_path / "calls.jsonl"
    calls.write_text("")
    with pytest.raises(Failure, match="dry_run_path"):
        SegmentResource(write_key="wk", dry_run_path=str(calls)).settings()
    settings = SegmentResource(write_key="wk", dry_run_path=str(tmp_path)).settings(run_id="r1", asset="segment_profiles")
    assert settings.dry_run_path == str(tmp_path / "r1-segment_profiles.jsonl")
