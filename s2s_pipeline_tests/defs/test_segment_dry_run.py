"""A dry run of the nightly job's Segment assets (finding 8 of issue #11).

One file per run and asset (``<dry_run_path>/<run_id>-<asset>.jsonl``), readable by its owner only
(the calls carry emails), nothing sent, and no state written: the state store's tables are the same
after the dry run as before it.
"""

import copy
import json
import os
import stat
import time

import pytest
from dagster import DagsterInstance, materialize
from sqlalchemy import inspect, text

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.profiles import segment_profiles
from s2s_pipeline.defs.segment.resources import SegmentResource
from s2s_pipeline.defs.segment.track_events import segment_track_events
from s2s_pipeline.defs.stripe.assets import stripe_change_feed
from s2s_pipeline.defs.stripe.resources import StripeResource
from s2s_pipeline.defs.traits.assets import customer_traits
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.store.db import make_engine

WRITE_KEY = "wk_dry"


@pytest.fixture(scope="module")
def account():
    return generate_account(customers=25, seed=11, now=int(time.time()))


def _resources(standin, state_url, segment):
    return {"stripe": StripeResource(api_key="sk_test_dry", api_base=standin.base_url, rate_limit=1000),
            "state_store": StateStoreResource(database_url=state_url),
            "trait_rules": TraitRulesResource(),
            "segment": segment}


def _state(state_url) -> dict[str, list[str]]:
    """Every row of every state store table, as sortable text."""
    engine = make_engine(state_url)
    try:
        out = {}
        with engine.connect() as conn:
            for table in sorted(inspect(engine).get_table_names()):
                out[table] = sorted(repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{table}"')))
        return out
    finally:
        engine.dispose()


def _new_events(standin, account):
    """A paid order and a failed invoice since the first sync: track calls (and an identify) await."""
    now = int(time.time())
    charge = copy.deepcopy(next(c for c in account.of_type("charge")
                                if c["status"] == "succeeded" and not c["amount_refunded"] and c.get("customer")))
    charge.update(id="ch_dry_run_order", created=now)
    standin.emit("charge.succeeded", charge)
    invoice = copy.deepcopy(next(i for i in account.of_type("invoice") if i["status"] == "paid"))
    invoice.update(status="open", attempt_count=1, amount_paid=0, amount_remaining=invoice["amount_due"],
                   next_payment_attempt=now + 3 * 86400)
    standin.emit("invoice.payment_failed", invoice)


def test_dry_run_writes_one_private_file_per_asset_and_no_state(state_url, account, tmp_path):
    dry_dir = tmp_path / "dry-run"
    with StripeStandIn() as standin, SegmentSink(write_key=WRITE_KEY) as sink:
        seed_standin(standin, account, copy=True)
        standin.now = None
        live = SegmentResource(write_key=WRITE_KEY, host=sink.base_url)
        baseline = materialize([stripe_change_feed, customer_traits], resources=_resources(standin, state_url, live),
                               instance=DagsterInstance.ephemeral())
        assert baseline.success
        _new_events(standin, account)
        assert materialize([stripe_change_feed], resources=_resources(standin, state_url, live),
                           instance=DagsterInstance.ephemeral()).success
        before = _state(state_url)

        dry = SegmentResource(write_key=WRITE_KEY, host=sink.base_url, dry_run_path=str(dry_dir))
        result = materialize([segment_profiles, segment_track_events],
                             resources=_resources(standin, state_url, dry), instance=DagsterInstance.ephemeral())
        assert result.success
        assert sink.requests == []

    files = {p.name: p for p in dry_dir.iterdir()}
    profiles_file = f"{result.run_id}-segment_profiles.jsonl"
    track_file = f"{result.run_id}-segment_track_events.jsonl"
    assert set(files) == {profiles_file, track_file}
    for path in files.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path.name
    profile_calls = [json.loads(line) for line in files[profiles_file].read_text().splitlines()]
    track_calls = [json.loads(line) for line in files[track_file].read_text().splitlines()]
    assert profile_calls and {c["type"] for c in profile_calls} <= {"identify", "group"}
    assert {c.get("event") for c in track_calls if c["type"] == "track"} >= {"Order Completed", "Payment Failed"}
    assert _state(state_url) == before
