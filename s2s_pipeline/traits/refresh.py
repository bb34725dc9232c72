"""The nightly trait refresh: recompute only the customers whose mirror rows changed, or everyone, in shards.

Incremental by default: the mirror records what every write touched
(``store.changed_objects``); those changes become customers (a price change
reaches every customer on it), plus the customers whose clock-dependent
traits may have moved since the last run (a payment leaving the 365-day
frequency window, a discount starting or ending). Only their traits are
computed and replaced in ``customer_traits``, and only they are queued for
the Segment diff. Their values are those a full recompute gives them: no
trait looks across customers (``s2s_pipeline_tests/traits/test_incremental.py``).

A full recompute happens when asked (``full=True``: the run config
``full_recompute``, the weekly safety net), on the first run, when the trait
table is missing, and when the trait rules changed (``config_fingerprint``):
new rules can change every customer's values.

A refresh has three parts, so that its shards can run as parallel steps of
one Dagster run, in other processes or on other machines (``defs/traits``):

- ``plan_refresh`` decides the mode and the clock, snapshots the pending
  changes (changes recorded later stay pending for the next run) and splits
  the customers into shards: ranges of ids of about ``shard_customers``
  customers each for a full recompute, one shard of the changed customers
  otherwise (read and computed ``INCREMENTAL_CHUNK_CUSTOMERS`` at a time, so
  a change reaching most customers, such as a popular price's, needs no
  more memory than a full recompute's shard); it creates the refresh's
  staging table;
- ``refresh_shard`` computes one shard from its own rows of the mirror and
  the whole catalogue (memory is bounded by the shard, not by the mirror)
  and writes its rows to the staging table, with its summary;
- ``commit_refresh`` swaps the staging table in as the trait table (a full
  recompute) or replaces the changed customers' rows with it, clears the
  snapshot's changes, queues the Segment diff and moves the refresh cursor,
  all in one transaction.

``refresh_customer_traits`` runs the three in this process, one shard after another.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass

import pandas as pd

from s2s_pipeline.core.bulk_work import bulk_work
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.store.trait_refresh_plans import CHANGED_SHARD, PlannedShard, RefreshPlan
from s2s_pipeline.store.traits_table import staging_name
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.frames import MirrorFrames, apply_fast_dtypes, empty_frame
from s2s_pipeline.traits.loading import load_customer_frames, load_shard_frames
from s2s_pipeline.traits.shard_summary import ShardSummary, merge, summarize

#: Cursor holding the last refresh: ``{"now", "fingerprint", "mode", "full_at"}``.
TRAITS_CURSOR = "customer_traits_refresh"
#: Customers per shard of a full recompute by default: a step's peak of about 2.9 GB (docs/operations.md).
DEFAULT_SHARD_CUSTOMERS = 250_000
#: Customers read and computed at a time by the shard of an incremental refresh: a change set reaching
#: more customers than a full shard holds is done in pieces of one full shard's memory.
INCREMENTAL_CHUNK_CUSTOMERS = DEFAULT_SHARD_CUSTOMERS
#: A plan not committed this long after it was made belongs to a run that failed for good (a nightly run and
#: its retries take hours at most): the next plan drops it and its staging table, which may be table-sized.
STALE_PLAN_SECONDS = 86_400


def traits_computed_at(store: StateStore) -> int | None:
    """The Stripe-clock time (Unix seconds) the stored trait table is current as of: its last refresh
    (rows a refresh did not recompute had no change up to then). None before the first refresh."""
    state = store.cursors.get(TRAITS_CURSOR)
    return None if not state or state.get("now") is None else int(state["now"])


def config_fingerprint(config: TraitsConfig) -> str:
    """A stable hash of the trait rules: a different one means every customer must be recomputed."""
    rules = asdict(config)
    rules["tier_thresholds"] = {k: list(v) for k, v in sorted(rules["tier_thresholds"].items())}
    return hashlib.sha256(json.dumps(rules, sort_keys=True, default=list).encode()).hexdigest()[:16]


@dataclass
class TraitsRefresh:
    """What one refresh did: its mode and why, the summary of the rows it computed, the seconds of each step
    (summed over shards: the work done, not the wall time of parallel shards)."""

    mode: str  # "full" | "incremental"
    reason: str
    summary: ShardSummary  # of the recomputed rows (every customer on a full recompute)
    customers_recomputed: int
    shards: int = 1
    shard_seconds: tuple[dict, ...] = ()  # per shard, in id order: {"key", "read", "compute", "store", "rows"}
    seconds_read_mirror: float = 0.0
    seconds_compute: float = 0.0
    seconds_store: float = 0.0
    changes_read: int = 0


@dataclass(frozen=True)
class ShardResult:
    """One shard step's outcome: rows written (0 when an earlier attempt had written them), its seconds and
    how many mirror rows it read (every table's, summed: the cost that grows with the account)."""

    key: str
    rows: int
    written: bool
    seconds: dict
    rows_read: int = 0


def _full_reason(store: StateStore, state: dict | None, fingerprint: str, full: bool) -> str | None:
    if full:
        return "requested"
    if state is None:
        return "first_run"
    if not store.trait_rows.exists():
        return "no_trait_table"
    if state.get("fingerprint") != fingerprint:
        return "trait_rules_changed"
    return None


def _empty_traits(config: TraitsConfig, now: int):
    """A trait table without rows, with every column's dtype (the staging table's template)."""
    tables = {name: empty_frame(name) for name in MirrorFrames.__dataclass_fields__}
    apply_fast_dtypes(tables)
    return compute_customer_traits(MirrorFrames(**tables), config, now)


def plan_refresh(store: StateStore, config: TraitsConfig, now: int, *, full: bool = False,
                 shard_customers: int = DEFAULT_SHARD_CUSTOMERS, plan_id: str | None = None) -> RefreshPlan:
    """Decide what the refresh recomputes and split it into shards (see the module docstring).

    ``plan_id`` names the refresh (a Dagster run id; planning again under the same id starts it over).
    Also drops committed plans and what refreshes abandoned more than ``STALE_PLAN_SECONDS`` ago left.
    """
    if shard_customers < 1:
        raise ValueError(f"shard_customers must be at least 1, got {shard_customers}")
    plan_id = plan_id or uuid.uuid4().hex
    for finished in store.trait_refresh_plans.finished(int(time.time()) - STALE_PLAN_SECONDS):
        if finished.plan_id != plan_id:
            store.abandon_trait_refresh(finished)
    state = store.cursors.get(TRAITS_CURSOR)
    fingerprint = config_fingerprint(config)
    reason = _full_reason(store, state, fingerprint, full)
    if reason is not None:
        starts = store.mirror.customer_shard_starts(shard_customers)
        bounds = list(zip([None, *starts], [*starts, None]))
        shards = tuple(PlannedShard(key=f"shard_{i:04d}", position=i, lo=lo, hi=hi)
                       for i, (lo, hi) in enumerate(bounds))
        mode = "full"
    else:
        shards = (PlannedShard(key=CHANGED_SHARD, position=0),)
        mode, reason = "incremental", "changes"
    plan = RefreshPlan(plan_id=plan_id, mode=mode, reason=reason, now=int(now),
                       since=None if state is None else int(state.get("now", now)), fingerprint=fingerprint,
                       full_at=int(now) if mode == "full" else (state or {}).get("full_at"),
                       staging=staging_name(plan_id), changes=0, shards=shards)
    return store.start_trait_refresh(plan, _empty_traits(config, now))


@bulk_work
def refresh_shard(store: StateStore, config: TraitsConfig, plan: RefreshPlan, key: str,
                  clock=time.perf_counter) -> ShardResult:
    """Compute one shard of a planned refresh and write its rows and summary to the refresh's staging table.

    A shard an earlier attempt already wrote (a step retried after its process died past the
    commit) is left as it is: its rows went in with its mark, in one transaction.
    """
    shard = next((s for s in plan.shards if s.key == key), None)
    if shard is None:
        raise KeyError(f"refresh {plan.plan_id} has no shard {key!r}")
    if shard.done:
        return ShardResult(key=key, rows=int(shard.rows or 0), written=False, seconds=shard.seconds or {})
    t0 = clock()
    customers = None
    if plan.mode == "full":
        frames = load_shard_frames(store.mirror, shard.lo, shard.hi)
        t1 = clock()
        rows_read = sum(frames.row_counts().values())
        table = compute_customer_traits(frames, config, plan.now)
        del frames
        read, compute = t1 - t0, clock() - t1
    else:
        pending = store.changed_objects.pending_in_snapshot(plan.plan_id)
        customers = store.changed_objects.customers_affected(pending)
        if plan.since is not None:
            customers |= store.changed_objects.customers_crossing_time(plan.since, plan.now)
        table, rows_read, compute = _compute_in_chunks(store, config, plan.now, sorted(customers), clock)
        read = clock() - t0 - compute  # the change look-ups count as reading
    t2 = clock()
    summary = summarize(table)
    compute += clock() - t2
    seconds = {"read": round(read, 3), "compute": round(compute, 3)}
    t3 = clock()
    written = store.write_trait_shard(plan, key, table, summary.to_json(), seconds, customers=customers)
    seconds["store"] = round(clock() - t3, 3)
    if written:
        store.trait_refresh_plans.record_seconds(plan.plan_id, key, seconds)
    rows = len(customers) if customers is not None else len(table)
    return ShardResult(key=key, rows=rows, written=written, seconds=seconds, rows_read=rows_read)


def _compute_in_chunks(store: StateStore, config: TraitsConfig, now: int, customers: list[str], clock):
    """The traits of ``customers``, read and computed ``INCREMENTAL_CHUNK_CUSTOMERS`` at a time (no trait
    looks across customers, so the pieces together are the whole table); with the mirror rows read and
    the seconds spent computing. The pieces' reads are not one snapshot: a change landing
    between two is recorded as pending and recomputed by the next refresh, as any change after the plan."""
    if not customers:
        return _empty_traits(config, now), 0, 0.0
    tables, rows_read, compute = [], 0, 0.0
    for start in range(0, len(customers), INCREMENTAL_CHUNK_CUSTOMERS):
        frames = load_customer_frames(store.mirror, customers[start:start + INCREMENTAL_CHUNK_CUSTOMERS])
        t = clock()
        rows_read += sum(frames.row_counts().values())
        tables.append(compute_customer_traits(frames, config, now))
        del frames
        compute += clock() - t
    table = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)
    return table, rows_read, compute


@bulk_work
def commit_refresh(store: StateStore, plan: RefreshPlan) -> TraitsRefresh:
    """Make the shards' rows the trait table and close the refresh (one transaction; see the module docstring).

    A refresh committed already (the commit step run again after its transaction went through) is
    only reported. Raises ``RuntimeError`` naming the shards not written yet (nothing is changed then).
    """
    written = store.trait_refresh_plans.get(plan.plan_id)
    if written is None:
        raise RuntimeError(f"trait refresh {plan.plan_id} is not planned (or a later refresh replaced it)")
    missing = [s.key for s in written.shards if not s.done]
    if missing:
        raise RuntimeError(f"trait refresh {plan.plan_id}: shards not written: {', '.join(missing)}")
    recomputed = (sum(int(s.rows or 0) for s in written.shards) if written.mode == "full"
                  else len(store.trait_refresh_plans.customers(plan.plan_id)))
    if not written.committed:
        store.commit_trait_refresh(written, (TRAITS_CURSOR, {
            "now": written.now, "fingerprint": written.fingerprint, "mode": written.mode,
            "full_at": written.full_at,
        }))
    seconds = [{"key": s.key, "rows": int(s.rows or 0), **(s.seconds or {})} for s in written.shards]
    return TraitsRefresh(
        mode=written.mode, reason=written.reason,
        summary=merge([ShardSummary.from_json(s.summary or {}) for s in written.shards]),
        customers_recomputed=recomputed, shards=len(written.shards), shard_seconds=tuple(seconds),
        seconds_read_mirror=sum(float(s.get("read", 0)) for s in seconds),
        seconds_compute=sum(float(s.get("compute", 0)) for s in seconds),
        seconds_store=sum(float(s.get("store", 0)) for s in seconds),
        changes_read=written.changes,
    )


def refresh_customer_traits(store: StateStore, config: TraitsConfig, now: int, *, full: bool = False,
                            shard_customers: int = DEFAULT_SHARD_CUSTOMERS, clock=time.perf_counter
                            ) -> TraitsRefresh:
    """Bring ``customer_traits`` up to date with the mirror, recomputing as little as is exact, in this process.

    Changes recorded while this runs stay pending for the next run (the snapshot that clears
    them is taken before the mirror is read).
    """
    plan = plan_refresh(store, config, now, full=full, shard_customers=shard_customers)
    for shard in plan.shards:
        refresh_shard(store, config, plan, shard.key, clock=clock)
    return commit_refresh(store, plan)
