"""The nightly path end to end: apply Stripe changes, recompute traits, diff, deliver to a local Segment sink.

    python bench/nightly_bench.py --customers N --changed FRACTION [--postgres URL] [--full] [--seed S]
        [--shard-customers K | --shards N] [--workers W] [--prewarm]
    python bench/nightly_bench.py --customers N [--postgres URL] --build-only

1. **The state store** (built once, then cached; not timed): N synthetic
   customers' mirror (bench/synth_mirror.py: ~10 charges, 1.2 subscriptions
   each), their full trait table, the pushed state Segment acknowledged after
   a first full sync through the real profile sync (to a local sink), and
   the change feed's cursor. Cached under ``--cache-dir`` (default
   ``$S2S_BENCH_CACHE`` or ``/tmp/s2s_bench_cache``) keyed by N, seed and
   the cache version (``nightly_v2_n<N>_s<seed>``): a SQLite file copied per
   run, or with ``--postgres`` a database ``s2s_nightly_v2_n<N>_s<seed>``
   used as the template of a scratch database per run (``CREATE DATABASE
   ... TEMPLATE``, dropped afterwards; the cache database is left in place).
   ``--prewarm`` reads every table and index of the scratch database into
   Postgres' shared buffers (``pg_prewarm``) before timing, as a server that
   has been running would hold them (only meaningful with shared buffers the
   size of the store).

   The build (``_build``) goes by blocks of ``BUILD_BLOCK`` = 100,000
   customers, so its memory does not grow with N: the mirror is generated
   and loaded one block at a time (ids continuing across blocks; COPY from
   a CSV buffer on Postgres; the schema's secondary indexes of the mirror
   tables dropped before the load and built again after it; then VACUUM
   ANALYZE), the full trait refresh runs in shards of 100,000 customers, and
   the first Segment sync compares and sends one block of customers at a
   time (``sync_profiles`` with those customers; a fresh sink process per
   block). The store is built under another name (``..._building`` /
   ``.building``) and renamed when complete, so a cache is whole or absent;
   an interrupted build is resumed from where it stopped (its progress is a
   table of the store being built, written in the transaction of each step,
   dropped at the end). ``--build-only`` builds the cache if missing and
   prints ``cache`` (its name), ``build_seconds`` per phase (``mirror``,
   ``indexes``, ``traits``, ``first_sync``, ``vacuum``; summed over resumed
   attempts, work lost to an interruption not counted) and
   ``build_peak_rss_mb``, and ``peak_rss_mb`` of this process.
2. **The change set**: FRACTION of the customers get one Stripe change each
   (new succeeded charge 35%, subscription seats changed 30%, customer email
   changed 20%, a failed invoice 15%), emitted as events by the Stripe
   stand-in (``devtools/s2s_devtools/fakes/stripe``) in a child process,
   which enforces Stripe's live-mode limit of 100 requests/s; the client
   paces itself at the same limit (``StripeSettings.rate_limit``).
3. **Timed steps**: ``apply`` (``extract.change_feed.sync_changes``:
   listing the events, re-fetching what the events cannot tell, committing),
   ``traits`` (``traits.refresh``: incremental, or full with ``--full``;
   plan, shards, commit), ``diff`` and ``delivery``
   (``segment.profile_sync.sync_pending_profiles``, delivery being its
   ``deliver`` call, to the Segment sink in a child process).

The trait step is ``plan_refresh``, one ``refresh_shard`` per shard and
``commit_refresh`` (``--shard-customers`` customers per shard, default the
pipeline's 250,000; or ``--shards N`` equal shards). With ``--workers W`` the
shards run in a pool of W spawned processes, one fresh process per shard (as
the multiprocess executor runs one process per shard step), and the line adds
``shard_seconds`` (per shard: rows, read / compute / store seconds, wall
seconds in its process, that process's peak RSS) and
``peak_rss_mb_shard_process`` (the largest of them); without it they run one
after another in this process.

Prints one JSON line: ``seconds`` (the four steps), ``peak_rss_mb`` (this
process, the cache build included when it ran in this process: pass
``--build-only`` first to measure runs alone), ``customers_changed``,
``messages_sent``, ``seconds_<step>``, ``cpu_seconds_<step>`` (this
process's CPU time, all its threads, during the step: a shared machine's
noise moves it less than the wall time; shard processes of ``--workers``
are not in it), ``stripe_requests`` (event pages and
re-fetches) and ``stripe_requests_per_changed_customer``, and more.
Subscription events name their discounts by id, as Stripe's event payloads
do (the stand-in renders them so); the discounts are the ones the mirror
holds, so the change feed takes their terms from the mirror and fetches
nothing again: the requests are the event pages (100 events each).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _common import machine, peak_rss_mb  # noqa: E402  (sets the import path)

import numpy as np  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.synth_mirror import NOW, NUMBERED, next_first_ids, synth_mirror_blocks  # noqa: E402
from bench.traits_asset_bench import create_secondary_indexes, drop_secondary_indexes, fill_block  # noqa: E402
from s2s_devtools.fakes.segment_sink import SegmentSink  # noqa: E402
from s2s_devtools.fakes.stripe import StripeStandIn  # noqa: E402
from s2s_pipeline.extract.change_feed import EVENTS_CURSOR, sync_changes  # noqa: E402
from s2s_pipeline.segment import profile_sync  # noqa: E402
from s2s_pipeline.segment.delivery import SegmentSettings  # noqa: E402
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions, sync_pending_profiles, sync_profiles  # noqa: E402
from s2s_pipeline.store.db import normalize_url  # noqa: E402
from s2s_pipeline.store.state_store import StateStore  # noqa: E402
from s2s_pipeline.stripe.client import StripeReader  # noqa: E402
from s2s_pipeline.stripe.settings import LIVE_MODE_LIMIT, StripeSettings  # noqa: E402
from s2s_pipeline.traits.config import TraitsConfig  # noqa: E402
from s2s_pipeline.traits.frames import TABLE_COLUMNS  # noqa: E402
from s2s_pipeline.traits.refresh import (  # noqa: E402
    DEFAULT_SHARD_CUSTOMERS,
    commit_refresh,
    plan_refresh,
    refresh_shard,
    traits_computed_at,
)

#: Bump when the cached store's content changes (synthetic data, schema, the first sync).
CACHE_VERSION = 2
WRITE_KEY = "bench_write_key"
DAY = 86_400
#: The nightly run happens a day after the cached store's last run.
NIGHT = NOW + DAY


# -- child processes: the Segment sink and the Stripe stand-in ------------------------------------

def _serve_sink(ready, stop, counts) -> None:
    with SegmentSink(write_key=WRITE_KEY) as sink:
        ready.put(sink.base_url)
        stop.wait()
        counts.put(len(sink.accepted))


def _serve_stripe(events: list[dict], objects: list[dict], now: int, limit: float, ready, stop) -> None:
    with StripeStandIn(now=now) as standin:
        standin.load(objects, copy=False)
        standin.load_events(events, copy=False)
        # A 10% server-side margin so timer jitter is not mistaken for overshoot (as bench/extract_bench.py).
        standin.rate_limit_per_second = limit * 1.1
        ready.put(standin.base_url)
        stop.wait()


class Child:
    """A server in a spawned process (it does not compete with the measured process for the GIL)."""

    def __init__(self, target, *args) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop, self.counts = ctx.Queue(), ctx.Event(), ctx.Queue()
        extra = (self.counts,) if target is _serve_sink else ()
        self.process = ctx.Process(target=target, args=(*args, self.ready, self.stop, *extra), daemon=True)

    def __enter__(self) -> str:
        self.process.start()
        return self.ready.get(timeout=600)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.process.join(timeout=30)


# -- the cached state store -------------------------------------------------------------------

#: Customers per block of the cache build (generation and load, trait shards, first Segment sync).
#: Part of what the cache holds: the synthetic mirror is drawn block by block (bench/synth_mirror.py).
BUILD_BLOCK = 100_000
#: The build's trait refresh (a fixed plan id, so an interrupted build resumes its shards).
BUILD_PLAN = "bench_cache_build"
#: The build's own bookkeeping in the store being built (dropped when the build is done).
PROGRESS_TABLE = "bench_build_progress"


def _log(message: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')} rss {peak_rss_mb():.0f} MB] {message}", file=sys.stderr, flush=True)


class BuildProgress:
    """How far a cache build got, in the store being built: one JSON row (``mirror_blocks``, ``first_id``,
    ``indexed``, ``synced_blocks``, ``seconds``). Written in the transaction of the step it records."""

    def __init__(self, engine, key: str) -> None:
        self.engine, self.key = engine, key
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (name VARCHAR(64) PRIMARY KEY, "
                              "value TEXT NOT NULL)"))
            row = conn.execute(text(f"SELECT value FROM {PROGRESS_TABLE} WHERE name = :n"), {"n": key}).first()
        self.state = json.loads(row[0]) if row else {"mirror_blocks": 0, "first_id": None, "indexed": False,
                                                     "synced_blocks": 0, "seconds": {}}
        self.resumed = row is not None

    def save(self, conn=None, **changes) -> None:
        self.state.update(changes)
        if conn is None:
            with self.engine.begin() as own:
                return self.save(own)
        value = json.dumps(self.state)
        if not conn.execute(text(f"UPDATE {PROGRESS_TABLE} SET value = :v WHERE name = :n"),
                            {"v": value, "n": self.key}).rowcount:
            conn.execute(text(f"INSERT INTO {PROGRESS_TABLE} (name, value) VALUES (:n, :v)"), {"n": self.key, "v": value})

    def add_seconds(self, phase: str, seconds: float, conn=None) -> None:
        spent = self.state["seconds"]
        spent[phase] = round(spent.get(phase, 0.0) + seconds, 1)
        self.save(conn)

    def drop(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {PROGRESS_TABLE}"))


def _vacuum(engine) -> None:
    """VACUUM ANALYZE (Postgres) / ANALYZE (SQLite) after the bulk writes: the statistics, visibility map and
    hint bits a store that has been running for a while has, so the first nightly run does not pay for them."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM (ANALYZE)" if engine.dialect.name == "postgresql" else "ANALYZE")


def _build(url: str, customers: int, seed: int) -> dict:
    """Mirror, full traits, a first full Segment sync and the change feed's cursor, into an empty store
    (or the store an interrupted build of the same cache left: it carries on where that one stopped).

    Block by block, so memory is bounded by ``BUILD_BLOCK`` customers whatever N:

    1. the synthetic mirror, one block of customers (and everything that is theirs) generated and loaded
       at a time (COPY on Postgres), one transaction per block with the build's progress; the schema's
       secondary indexes of the mirror tables are dropped before the first block and built again after
       the last (the store's migrations made the schema; the build only fills it);
    2. the change feed's cursor, then the full trait refresh in shards of ``BUILD_BLOCK`` customers
       (``plan_refresh`` / ``refresh_shard`` / ``commit_refresh`` under the plan id ``BUILD_PLAN``:
       the shards an interrupted build wrote are kept);
    3. the first full Segment sync, ``sync_profiles`` over each block of customers in turn (the path
       ``sync_pending_profiles`` takes for the queued customers; the full diff of every customer at once
       would hold every message and the whole trait table in memory), to a fresh sink process per
       block, then the profile queue settled as ``sync_pending_profiles`` settles it.

    Returns the seconds of each phase (summed over resumed attempts) and this process's peak RSS.
    """
    store = StateStore.from_url(url)
    engine = store.engine
    progress = BuildProgress(engine, _key(customers, seed))
    if progress.resumed:
        _log(f"resuming: {progress.state}")
    blocks = -(-customers // BUILD_BLOCK)
    postgres = engine.dialect.name == "postgresql"

    # 1. the mirror
    done = progress.state["mirror_blocks"]
    if done < blocks:
        t0 = time.perf_counter()
        if done == 0:
            with engine.begin() as conn:
                drop_secondary_indexes(conn)
        first_id = progress.state["first_id"]
        generated = synth_mirror_blocks(customers, seed=seed, block=BUILD_BLOCK, all_columns=True,
                                        start_block=done, first_id=first_id)
        for index, (frames, _now) in enumerate(generated, start=done):
            t = time.perf_counter()
            first_id = next_first_ids(first_id or dict.fromkeys(NUMBERED, 0), frames)
            with engine.begin() as conn:
                if postgres:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                added = fill_block(conn, frames)
                progress.save(conn, mirror_blocks=index + 1, first_id=first_id)
            del frames
            _log(f"mirror block {index + 1}/{blocks}: {sum(added.values()):,} rows in {time.perf_counter() - t:.1f} s")
        progress.add_seconds("mirror", time.perf_counter() - t0)
    if not progress.state["indexed"]:
        t0 = time.perf_counter()
        with engine.begin() as conn:
            if postgres:
                conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
            create_secondary_indexes(conn)
        _vacuum(engine)
        progress.save(indexed=True)
        progress.add_seconds("indexes", time.perf_counter() - t0)
        _log(f"indexes and vacuum: {time.perf_counter() - t0:.1f} s")

    # 2. the change feed's cursor and the full trait refresh
    if traits_computed_at(store) is None:
        t0 = time.perf_counter()
        store.cursors.set(EVENTS_CURSOR, {"created": NOW, "baseline": NOW, "baseline_ids": [],
                                          "last_full_sync": NOW, "updated_at": NOW})
        plan = store.trait_refresh_plans.get(BUILD_PLAN)
        if plan is None:
            plan = plan_refresh(store, TraitsConfig(), NOW, full=True, shard_customers=BUILD_BLOCK, plan_id=BUILD_PLAN)
        for shard in plan.shards:
            t = time.perf_counter()
            result = refresh_shard(store, TraitsConfig(), plan, shard.key)
            _log(f"trait shard {shard.position + 1}/{len(plan.shards)}: {result.rows:,} customers "
                 f"({'written' if result.written else 'written before'}) in {time.perf_counter() - t:.1f} s")
        commit_refresh(store, plan)
        progress.add_seconds("traits", time.perf_counter() - t0)
    leftover = store.trait_refresh_plans.get(BUILD_PLAN)
    if leftover is not None:  # committed: the nightly run's plan_refresh would drop it (and be timed doing so)
        store.abandon_trait_refresh(leftover)

    # 3. the first full Segment sync, block by block
    scope = store.profile_queue.scope()
    for index in range(progress.state["synced_blocks"], blocks):
        t = time.perf_counter()
        first = index * BUILD_BLOCK
        ids = [f"cus_{i:010d}" for i in range(first, min(first + BUILD_BLOCK, customers))]
        with Child(_serve_sink) as host:
            outcome = sync_profiles(store, SegmentSettings(write_key=WRITE_KEY, host=host, upload_size=500),
                                    None, ProfileSyncOptions(), NOW, customer_ids=ids)
        assert not outcome.report.failed, outcome.report.failed
        progress.add_seconds("first_sync", time.perf_counter() - t)
        progress.save(synced_blocks=index + 1)
        _log(f"first sync block {index + 1}/{blocks}: {len(outcome.report.delivered):,} messages "
             f"in {time.perf_counter() - t:.1f} s")
    if scope.full or scope.tokens:
        store.profile_queue.settle(scope)
    t0 = time.perf_counter()
    _vacuum(engine)
    progress.add_seconds("vacuum", time.perf_counter() - t0)
    seconds = dict(progress.state["seconds"])
    progress.drop()
    store.dispose()
    return {"build_seconds": seconds, "build_resumed": progress.resumed, "build_peak_rss_mb": peak_rss_mb()}


def _key(customers: int, seed: int) -> str:
    return f"nightly_v{CACHE_VERSION}_n{customers}_s{seed}"


def sqlite_store(cache_dir: Path, customers: int, seed: int, workdir: str) -> tuple[str, bool]:
    """A fresh copy of the cached SQLite store (built first if missing), and whether it was built now."""
    cached = cache_dir / f"{_key(customers, seed)}.db"
    built = None
    if not cached.exists():
        partial = cached.with_suffix(".building")  # an interrupted build's is resumed
        built = _build(f"sqlite:///{partial}", customers, seed)
        for suffix in ("-wal", "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)  # checkpointed when the engine closed
        partial.rename(cached)
    copy = Path(workdir) / "state.db"
    shutil.copyfile(cached, copy)
    return f"sqlite:///{copy}", built


class PostgresStore:
    """A scratch database cloned from the cached one (``CREATE DATABASE ... TEMPLATE``), dropped afterwards."""

    def __init__(self, admin_url: str, customers: int, seed: int, prewarm: bool = False) -> None:
        self.admin_url = normalize_url(admin_url)
        self.prewarm = prewarm
        self.cache = f"s2s_{_key(customers, seed)}"
        self.name = f"s2s_nightly_{uuid.uuid4().hex[:8]}"
        self.customers, self.seed = customers, seed
        self.built: dict | None = None  # the build's figures when this run built the cache

    def _url(self, name: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def __enter__(self) -> str:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": self.cache}).first():
                # Built under another name and renamed when complete: the cache is whole or absent. An
                # interrupted build's database is resumed (its progress table says how far it got).
                building = self.cache + "_building"
                if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": building}).first():
                    conn.execute(text(f'CREATE DATABASE "{building}"'))
                # Commits of the build need not wait for the disk (a crash resumes from the progress table).
                conn.execute(text(f'ALTER DATABASE "{building}" SET synchronous_commit = off'))
                self.built = _build(self._url(building), self.customers, self.seed)
                conn.execute(text(f'ALTER DATABASE "{building}" RESET synchronous_commit'))
                conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{self.cache}"'))
            # The cache brought to the current schema once (a build by an older version of the code
            # lacks its newer indexes), so the clones need no migration of their own.
            StateStore.from_url(self._url(self.cache)).dispose()
            # FILE_COPY (Postgres 15+) copies the files instead of writing the whole clone into the WAL
            # (WAL_LOG, the default, made 5 GB of WAL at 1M customers, and the checkpoints it triggered
            # were still writing during the timed run); the CHECKPOINT after it leaves none pending.
            file_copy = conn.dialect.server_version_info >= (15,)
            conn.execute(text(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.cache}"'
                              + (" STRATEGY FILE_COPY" if file_copy else "")))
            conn.execute(text("CHECKPOINT"))
        admin.dispose()
        if self.prewarm:
            self._prewarm()
        return self._url(self.name)

    def _prewarm(self) -> None:
        """Every table and index of the clone read into Postgres' shared buffers (pg_prewarm), untimed: the
        state of a server that has been running (a fresh clone's files are new to the buffer cache, so
        without it every page the run touches is a miss). Meaningful when shared_buffers holds the store.
        TOAST tables (``raw`` values over ~2 kB, which the timed steps write but do not read) are left out."""
        engine = create_engine(self._url(self.name), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
            conn.execute(text("SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')"))
        engine.dispose()

    def __exit__(self, *exc) -> None:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()


# -- the change set ---------------------------------------------------------------------------

def _none(value):
    return None if value is None or value is np.nan or (isinstance(value, float) and value != value) \
        or str(value) in ("<NA>", "nan") else value


def _int(value):
    value = _none(value)
    return None if value is None else int(value)


def _price_object(row) -> dict:
    tiers = row.get("tiers")
    if isinstance(tiers, str):
        tiers = json.loads(tiers)
    return {
        "id": row["id"], "object": "price", "product": row["product"], "currency": row["currency"],
        "nickname": _none(row["nickname"]), "active": True, "type": "recurring",
        "billing_scheme": row["billing_scheme"], "unit_amount": _int(row["unit_amount"]),
        "unit_amount_decimal": _none(row["unit_amount_decimal"]), "tiers_mode": _none(row["tiers_mode"]),
        "tiers": tiers,
        "recurring": {"interval": row["recurring_interval"], "interval_count": _int(row["recurring_interval_count"]),
                      "usage_type": row["recurring_usage_type"]},
        "transform_quantity": ({"divide_by": _int(row["transform_divide_by"]), "round": row["transform_round"]}
                               if _none(row["transform_divide_by"]) else None),
        "created": _int(row["created"]),
    }


def change_set(store: StateStore, customers: int, fraction: float, seed: int) -> tuple[list[dict], list[dict], int]:
    """Stripe events changing ``fraction`` of the customers (one change each), the objects the stand-in
    must also hold (subscriptions it may be asked to re-fetch), and how many customers were changed."""
    rng = np.random.default_rng(seed + 1)
    k = int(round(customers * fraction))
    chosen = sorted(f"cus_{i:010d}" for i in rng.choice(customers, size=k, replace=False))
    frames = store.mirror.read_customer_frames(
        {name: cols for name, cols in TABLE_COLUMNS.items() if name not in ("refunds", "disputes", "invoices",
                                                                             "charges")}, chosen)
    prices = {row["id"]: _price_object(row) for row in frames["prices"].to_dict("records")}
    coupons = {row["id"]: row for row in frames["coupons"].to_dict("records")}
    # In id order: the reads have no ORDER BY, and a scan's order varies (Postgres starts a sequential
    # scan where a concurrent one is), so "the first subscription" must not depend on it.
    def by_id(frame):
        return frame.sort_values("id", kind="stable").reset_index(drop=True)

    subs = by_id(frames["subscriptions"]).groupby("customer", observed=True)
    items = by_id(frames["subscription_items"]).groupby("subscription", observed=True)
    discounts = by_id(frames["discounts"]).groupby("subscription", observed=True)
    customers_by_id = {row["id"]: row for row in frames["customers"].to_dict("records")}
    kinds = rng.choice(4, size=k, p=[0.35, 0.30, 0.20, 0.15])
    events, objects = [], []
    seq = 0
    for customer_id, kind in zip(chosen, kinds):
        seq += 1
        when = NOW + 60 + seq * (DAY - 3600) // (k + 1)  # spread over the day, before the run
        customer = customers_by_id[customer_id]
        currency = _none(customer["currency"]) or "usd"
        sub_rows = subs.get_group(customer_id) if customer_id in subs.groups else None
        if kind == 1 and sub_rows is not None:
            sub = sub_rows.iloc[0]
            sub_items = items.get_group(sub["id"]).to_dict("records") if sub["id"] in items.groups else []
            if not sub_items:
                kind = 0
            else:
                sub_discounts = (discounts.get_group(sub["id"]).to_dict("records")
                                 if sub["id"] in discounts.groups else [])

                def discount_object(d):
                    coupon = coupons.get(d["coupon"]) or {}
                    return {"id": d["id"], "object": "discount", "customer": customer_id,
                            "start": _int(d["start"]), "end": _int(d["end"]),
                            "source": {"type": "coupon", "coupon": {
                                "id": d["coupon"], "object": "coupon", "percent_off": _none(coupon.get("percent_off")),
                                "amount_off": _int(coupon.get("amount_off")), "currency": _none(coupon.get("currency")),
                                "duration": coupon.get("duration"),
                                "duration_in_months": _int(coupon.get("duration_in_months")), "valid": True}}}

                obj = {
                    "id": sub["id"], "object": "subscription", "customer": customer_id, "status": sub["status"],
                    "currency": sub["currency"], "created": _int(sub["created"]),
                    "start_date": _int(sub["start_date"]), "cancel_at_period_end": bool(sub["cancel_at_period_end"]),
                    "cancel_at": _int(sub["cancel_at"]), "canceled_at": _int(sub["canceled_at"]),
                    "ended_at": _int(sub["ended_at"]), "trial_start": _int(sub["trial_start"]),
                    "trial_end": _int(sub["trial_end"]),
                    "pause_collection": ({"behavior": sub["pause_collection_behavior"]}
                                         if _none(sub["pause_collection_behavior"]) else None),
                    "discounts": [discount_object(d) for d in sub_discounts if _none(d["subscription_item"]) is None],
                    "items": {"object": "list", "data": [{
                        "id": it["id"], "object": "subscription_item", "price": prices[it["price"]],
                        "quantity": (_int(it["quantity"]) or 0) + (1 if n == 0 else 0),
                        "current_period_start": _int(it["current_period_start"]),
                        "current_period_end": _int(it["current_period_end"]), "created": _int(it["created"]),
                        "discounts": [discount_object(d) for d in sub_discounts
                                      if _none(d["subscription_item"]) == it["id"]],
                    } for n, it in enumerate(sub_items)]},
                }
                objects.append(obj)
                events.append(_event("customer.subscription.updated", obj, when, seq))
                continue
        if kind == 2:
            obj = {"id": customer_id, "object": "customer", "email": f"changed{seq}@example.org",
                   "name": _none(customer["name"]), "currency": _none(customer["currency"]),
                   "created": _int(customer["created"]), "metadata": customer["metadata"] if isinstance(customer["metadata"], dict) else {},
                   "discount": None}
            events.append(_event("customer.updated", obj, when, seq))
        elif kind == 3 and sub_rows is not None:
            sub = sub_rows.iloc[0]
            amount = int(rng.integers(500, 50_000))
            obj = {"id": f"in_n{seq:010d}", "object": "invoice", "customer": customer_id, "status": "open",
                   "currency": sub["currency"], "amount_due": amount, "amount_paid": 0, "amount_remaining": amount,
                   "total": amount, "subtotal": amount, "attempt_count": 1, "attempted": True,
                   "billing_reason": "subscription_cycle", "collection_method": "charge_automatically",
                   "parent": {"subscription_details": {"subscription": sub["id"]}}, "created": when}
            events.append(_event("invoice.payment_failed", obj, when, seq))
        else:
            amount = int(rng.integers(500, 50_000))
            obj = {"id": f"ch_n{seq:010d}", "object": "charge", "customer": customer_id, "status": "succeeded",
                   "currency": currency, "amount": amount, "amount_captured": amount, "amount_refunded": 0,
                   "captured": True, "paid": True, "refunded": False, "disputed": False,
                   "payment_method_details": {"type": "card", "card": {"brand": "visa"}}, "created": when}
            events.append(_event("charge.succeeded", obj, when, seq))
    return events, objects, k


def _event(kind: str, obj: dict, when: int, seq: int) -> dict:
    return {"id": f"evt_n{when:012d}{seq:08d}", "object": "event", "api_version": "2026-10-28.endive",
            "created": when, "data": {"object": obj}, "livemode": False, "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None}, "type": kind}


# -- the trait step, in shards ------------------------------------------------------------------

def _shard_in_process(url: str, plan_id: str, key: str) -> dict:
    """One shard in a fresh process (the pool's worker): its timings and this process's peak RSS."""
    t0 = time.perf_counter()
    store = StateStore.from_url(url)
    try:
        result = refresh_shard(store, TraitsConfig(), store.trait_refresh_plans.get(plan_id), key)
    finally:
        store.dispose()
    return {"key": key, "rows": result.rows, "rows_read": result.rows_read, **result.seconds,
            "wall": round(time.perf_counter() - t0, 3), "peak_rss_mb": peak_rss_mb(), "pid": os.getpid()}


def sharded_refresh(store: StateStore, url: str, args) -> tuple:
    """``plan_refresh``, the shards (in a pool of ``--workers`` processes, or here), ``commit_refresh``."""
    t0 = time.perf_counter()
    plan = plan_refresh(store, TraitsConfig(), NIGHT, full=args.full, shard_customers=args.shard_customers)
    t1 = time.perf_counter()
    keys = [s.key for s in plan.shards]
    if args.workers:
        # forkserver with the pipeline preloaded, as Dagster's multiprocess executor starts its step
        # processes with ``start_method: forkserver`` (docs/operations.md, "Scaling out"): each shard's
        # process is forked from a server that imported the code once (spawned, each spent 3-5 s
        # importing before it read a row).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["s2s_pipeline.traits.refresh", "s2s_pipeline.store.state_store", "pyarrow",
                                    "adbc_driver_postgresql.dbapi"])
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx, max_tasks_per_child=1) as pool:
            shards = list(pool.map(_shard_in_process, [url] * len(keys), [plan.plan_id] * len(keys), keys))
    else:
        shards = []
        for key in keys:
            t = time.perf_counter()
            result = refresh_shard(store, TraitsConfig(), plan, key)
            shards.append({"key": key, "rows": result.rows, "rows_read": result.rows_read, **result.seconds,
                           "wall": round(time.perf_counter() - t, 3)})
    t2 = time.perf_counter()
    refresh = commit_refresh(store, plan)
    t3 = time.perf_counter()
    return refresh, shards, {"plan": round(t1 - t0, 3), "shards": round(t2 - t1, 3), "commit": round(t3 - t2, 3)}


# -- the run ----------------------------------------------------------------------------------

def run(url: str, args) -> dict:
    store = StateStore.from_url(url)
    events, objects, changed = change_set(store, args.customers, args.changed, args.seed)
    timings: dict[str, float] = {}
    real_deliver = profile_sync.deliver

    def timed_deliver(*a, **kw):
        t, c = time.perf_counter(), time.process_time()
        try:
            return real_deliver(*a, **kw)
        finally:
            timings["delivery"] = time.perf_counter() - t
            timings["cpu_delivery"] = time.process_time() - c

    profile_sync.deliver = timed_deliver
    try:
        with Child(_serve_stripe, events, objects, NIGHT, LIVE_MODE_LIMIT) as stripe_base, \
                Child(_serve_sink) as sink_host:
            reader = StripeReader(StripeSettings(api_key="sk_test_bench", api_base=stripe_base,
                                                 rate_limit=LIVE_MODE_LIMIT))
            t0, c0 = time.perf_counter(), time.process_time()
            synced = sync_changes(reader, store, clock=lambda: NIGHT)
            t1, c1 = time.perf_counter(), time.process_time()
            refresh, shards, phases = sharded_refresh(store, url, args)
            t2, c2 = time.perf_counter(), time.process_time()
            outcome = sync_pending_profiles(store, SegmentSettings(write_key=WRITE_KEY, host=sink_host,
                                                                   upload_size=args.upload_size),
                                            None, ProfileSyncOptions(), NIGHT)
            t3, c3 = time.perf_counter(), time.process_time()
    finally:
        profile_sync.deliver = real_deliver
    store.dispose()
    delivery, cpu_delivery = timings.get("delivery", 0.0), timings.get("cpu_delivery", 0.0)
    return {
        "seconds": round(t3 - t0, 3),
        "peak_rss_mb": peak_rss_mb(),
        "customers": args.customers,
        "changed": args.changed,
        "customers_changed": changed,
        "messages_sent": len(outcome.report.delivered),
        "messages_failed": len(outcome.report.failed),
        "seconds_apply": round(t1 - t0, 3),
        "seconds_traits": round(t2 - t1, 3),
        "seconds_diff": round(t3 - t2 - delivery, 3),
        "seconds_delivery": round(delivery, 3),
        # CPU seconds of this process (all its threads) per step: less noisy than the wall times on a
        # shared machine; the rest of a step's wall time is waiting (the server, the pacing, the sink).
        "cpu_seconds": round(c3 - c0, 3),
        "cpu_seconds_apply": round(c1 - c0, 3),
        "cpu_seconds_traits": round(c2 - c1, 3),
        "cpu_seconds_diff": round(c3 - c2 - cpu_delivery, 3),
        "cpu_seconds_delivery": round(cpu_delivery, 3),
        "traits_mode": refresh.mode,
        "customers_recomputed": refresh.customers_recomputed,
        "seconds_traits_read": round(refresh.seconds_read_mirror, 3),
        "seconds_traits_compute": round(refresh.seconds_compute, 3),
        "seconds_traits_store": round(refresh.seconds_store, 3),
        # mirror rows the trait step read (every table's, over every shard)
        "mirror_rows_read": sum(s.get("rows_read", 0) for s in shards),
        "traits_shards": refresh.shards,
        "shard_customers": args.shard_customers,
        "workers": args.workers,
        "seconds_traits_plan": phases["plan"],
        "seconds_traits_shards": phases["shards"],
        "seconds_traits_commit": phases["commit"],
        "shard_seconds": shards,
        "peak_rss_mb_shard_process": max((s["peak_rss_mb"] for s in shards if "peak_rss_mb" in s), default=None),
        # the largest peak of any child process that has ended (the pool's shard processes, the servers)
        "peak_rss_mb_children": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "customers_identified": outcome.customers_changed,
        "diff_scope": outcome.scope,
        "events": len(events),
        "events_applied": synced.events_applied,
        "stripe_requests": synced.requests,
        "stripe_429s": synced.rate_limited,
        "stripe_requests_per_changed_customer": round(synced.requests / changed, 4) if changed else None,
        "rate_limit": LIVE_MODE_LIMIT,
        "upload_size": args.upload_size,
        "prewarm": args.prewarm,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of customers changed")
    parser.add_argument("--postgres", help="admin URL of a Postgres server (cache and scratch databases)")
    parser.add_argument("--full", action="store_true", help="time a full recompute (and full diff) instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=os.environ.get("S2S_BENCH_CACHE", "/tmp/s2s_bench_cache"))
    parser.add_argument("--build-only", action="store_true", help="build the cached store and exit")
    sharding = parser.add_mutually_exclusive_group()
    sharding.add_argument("--shard-customers", type=int, default=DEFAULT_SHARD_CUSTOMERS,
                          help="customers per shard of a full recompute (the run config's shard_customers)")
    sharding.add_argument("--shards", type=int, help="about N equal shards instead: shard customers = ceil(customers / N)")
    parser.add_argument("--upload-size", type=int, default=SegmentSettings.upload_size,
                        help="messages per Segment batch of the timed delivery (the segment resource's upload_size)")
    parser.add_argument("--prewarm", action="store_true",
                        help="with --postgres: read the scratch store into shared buffers before timing (pg_prewarm)")
    parser.add_argument("--workers", type=int, default=0,
                        help="run the shards in a pool of W processes, a fresh one per shard (0: in this process)")
    args = parser.parse_args(argv)
    if not 0 < args.changed <= 1:
        parser.error("--changed must be a fraction in (0, 1]")
    if args.shards is not None:
        if args.shards < 1:
            parser.error("--shards must be at least 1")
        args.shard_customers = -(-args.customers // args.shards)
    if args.prewarm and not args.postgres:
        parser.error("--prewarm reads a Postgres store into shared buffers: it needs --postgres")
    if args.shard_customers < 1 or args.workers < 0:
        parser.error("--shard-customers must be at least 1 and --workers at least 0")
    cache_dir = Path(args.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.postgres:
        scratch = PostgresStore(args.postgres, args.customers, args.seed, prewarm=args.prewarm)
        with scratch as url:
            built, cache = scratch.built, scratch.cache
            result = {} if args.build_only else {"benchmark": "nightly", "store": "postgres", **run(url, args)}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            url, built = sqlite_store(cache_dir, args.customers, args.seed, tmp)
            cache = str(cache_dir / f"{_key(args.customers, args.seed)}.db")
            result = {} if args.build_only else {"benchmark": "nightly", "store": "sqlite", **run(url, args)}
    if args.build_only:
        result["built"] = built is not None
    else:
        result["cache_built"] = built is not None
    result.update(cache=cache, **(built or {}))
    result.update(wall_seconds=round(time.perf_counter() - started, 1), **machine())
    if args.build_only:
        result.update(seconds=result["wall_seconds"], peak_rss_mb=peak_rss_mb())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
