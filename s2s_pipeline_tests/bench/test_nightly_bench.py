"""Smoke test of bench/nightly_bench.py at a tiny size: it runs, and its JSON line says what the contract says.

Not a timed test: the figures are benchmarks (docs/performance.md); this only
checks the bench still drives the real nightly path end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from s2s_pipeline_tests.conftest import REPO

BENCH = REPO / "bench" / "nightly_bench.py"


def _run(tmp_path, *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'devtools'}"}
    done = subprocess.run([sys.executable, str(BENCH), "--customers", "300", "--changed", "0.05",
                           "--cache-dir", str(tmp_path / "cache"), *extra],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    from s2s_pipeline.store.db import normalize_url

    engine = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_nightly_bench_runs_the_incremental_path_and_the_full_one(tmp_path, store, request):
    extra = ()
    if store == "postgres":
        from s2s_pipeline_tests.conftest import _pg_admin_url

        admin = _pg_admin_url()
        if admin is None:
            pytest.skip("Postgres tests need S2S_TEST_DATABASE_URL (CI sets it)")
        seed = str(os.getpid())
        extra = ("--postgres", admin, "--seed", seed)  # a cache database of its own, dropped afterwards
        request.addfinalizer(lambda: _drop_database(admin, f"s2s_nightly_v2_n300_s{seed}"))
    incremental = _run(tmp_path, *extra)
    assert incremental["cache_built"] is True
    for key in ("seconds", "peak_rss_mb", "customers_changed", "messages_sent", "seconds_apply",
                "seconds_traits", "seconds_diff", "seconds_delivery"):
        assert key in incremental
    assert incremental["customers_changed"] == 15
    assert incremental["events_applied"] == 15
    assert incremental["traits_mode"] == "incremental" and incremental["diff_scope"] == "changed"
    assert 15 <= incremental["customers_recomputed"] < 300
    assert 0 < incremental["messages_sent"] and incremental["messages_failed"] == 0
    assert incremental["stripe_429s"] == 0

    # 3 shards of 100 customers; on SQLite in a pool of 2 processes, a fresh one per shard; on Postgres
    # with the scratch store read into shared buffers first (pg_prewarm)
    per_store = ("--workers", "2") if store == "sqlite" else ("--prewarm",)
    full = _run(tmp_path, *extra, "--full", "--shard-customers", "100", *per_store)
    assert full["cache_built"] is False  # the cached store is reused
    assert full["prewarm"] is (store == "postgres")
    assert (full["traits_mode"], full["customers_recomputed"], full["diff_scope"]) == ("full", 300, "full")
    assert full["traits_shards"] == 3 and [s["rows"] for s in full["shard_seconds"]] == [100, 100, 100]
    if store == "sqlite":
        assert len({s["pid"] for s in full["shard_seconds"]}) == 3 and full["peak_rss_mb_shard_process"] > 0
    # The same changes reach Segment whether 15 customers or all 300 were recomputed.
    assert full["messages_sent"] == incremental["messages_sent"]


def _bench_module(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import nightly_bench

    return nightly_bench


def _contents(url: str) -> dict:
    """Every table of a built store that the build wrote, as sorted rows (times of acknowledgement left out)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    out = {}
    with engine.connect() as conn:
        for name in sorted(inspect(conn).get_table_names()):
            rows = conn.execute(text(f'SELECT * FROM "{name}"')).mappings().all()
            drop = {"acknowledged_at", "id"} if name == "segment_delivery_audit" else set()
            drop |= {"updated_at"} if name == "sync_cursors" else set()
            out[name] = sorted(repr(sorted((k, v) for k, v in row.items() if k not in drop)) for row in rows)
    engine.dispose()
    return out


def _progress(url: str) -> tuple:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        (value,) = conn.execute(text("SELECT value FROM bench_build_progress")).one()
        shards = conn.execute(text("SELECT COUNT(*) FROM trait_refresh_shards WHERE done_at IS NOT NULL")).scalar()
    engine.dispose()
    state = json.loads(value)
    return state["mirror_blocks"], state["indexed"], shards, state["synced_blocks"]


def test_an_interrupted_cache_build_resumes_where_it_stopped(tmp_path, monkeypatch):
    # 250 customers in blocks of 100: 3 mirror blocks, 3 trait shards, 3 first-sync blocks. The build is
    # stopped in each phase in turn (after 2 mirror blocks, after 1 trait shard, after 1 sync block) and
    # started again each time; the store it ends with is the one an uninterrupted build makes.
    bench = _bench_module(monkeypatch)
    monkeypatch.setattr(bench, "BUILD_BLOCK", 100)
    clean = f"sqlite:///{tmp_path / 'clean.db'}"
    first = bench._build(clean, 250, 3)
    assert first["build_resumed"] is False

    class Stop(Exception):
        pass

    def stopping(real, after: int):
        calls = {"n": 0}

        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > after:
                raise Stop(real.__name__)
            return real(*args, **kwargs)
        return wrapper

    url = f"sqlite:///{tmp_path / 'resumed.db'}"
    stops = [("fill_block", 2, (2, False, 0, 0)), ("refresh_shard", 1, (3, True, 1, 0)),
             ("sync_profiles", 1, (3, True, 0, 1))]  # the committed plan is dropped
    for name, after, expected in stops:
        with monkeypatch.context() as patch:
            patch.setattr(bench, name, stopping(getattr(bench, name), after))
            with pytest.raises(Stop):
                bench._build(url, 250, 3)
        assert _progress(url) == expected  # (mirror blocks, indexed, trait shards written, sync blocks)
    resumed = bench._build(url, 250, 3)
    assert resumed["build_resumed"] is True
    assert set(resumed["build_seconds"]) == {"mirror", "indexes", "traits", "first_sync", "vacuum"}
    clean_tables, resumed_tables = _contents(clean), _contents(url)
    assert "bench_build_progress" not in resumed_tables
    assert len(clean_tables["stripe_customers"]) == 250 and len(clean_tables["segment_pushed_traits"]) > 0
    assert resumed_tables == clean_tables
