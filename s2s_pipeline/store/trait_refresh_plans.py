"""Trait refreshes in progress (``trait_refresh_plans``): what each one recomputes, shard by shard.

A refresh of ``customer_traits`` runs in three kinds of steps, possibly in
different processes or machines: it is *planned* (its mode, its clock, its
shards: ranges of customer ids, or for an incremental run the one shard of the
changed customers), each shard is *computed* into the refresh's staging table,
and it is *committed* (the staging table becomes the trait table). This
module keeps what those steps tell each other: the plan, which shards are
written (with their row count, summary and timings), and, for an incremental
refresh, the customers it recomputed. A committed plan stays until the next
plan (a commit step run again finds it committed and only reports); one
abandoned by a failed run is replaced when its run is re-executed, and
dropped by a later plan once it is stale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import JSON, BigInteger, Column, Connection, Engine, Integer, String, Table, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.statements import chunks

plans = Table(
    "trait_refresh_plans",
    schema.metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),  # full | incremental
    Column("reason", String(32), nullable=False),
    Column("now", BigInteger, nullable=False),  # the Stripe-clock time every shard computes at
    Column("since", BigInteger),  # the previous refresh's time (clock-dependent traits moved since)
    Column("fingerprint", String(32), nullable=False),
    Column("full_at", BigInteger),  # the last full recompute's time, as the refresh cursor keeps it
    Column("staging", String(64), nullable=False),
    Column("changes", BigInteger, nullable=False),  # change entries pending when it was planned
    Column("created_at", BigInteger, nullable=False),  # wall clock, for dropping abandoned plans
    Column("committed_at", BigInteger),  # set by the commit; the plan is dropped by the next one
)

shards = Table(
    "trait_refresh_shards",
    schema.metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("shard_key", String(64), primary_key=True),  # the Dagster mapping key of its step
    Column("shard_order", Integer, nullable=False),  # order of the shards (ids ascending)
    Column("lo", String(255)),  # first customer id of the shard (None: unbounded)
    Column("hi", String(255)),  # first customer id of the next shard (None: unbounded)
    Column("row_count", BigInteger),
    Column("summary", JSON(none_as_null=True)),  # traits.shard_summary.ShardSummary, as JSON
    Column("seconds", JSON(none_as_null=True)),  # {"read", "compute", "store"}
    Column("done_at", BigInteger),  # None until its rows are in the staging table
)

customers = Table(
    "trait_refresh_customers",
    schema.metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("stripe_customer_id", String(255), primary_key=True),
)

#: The key of an incremental refresh's only shard.
CHANGED_SHARD = "changed_customers"


@dataclass(frozen=True)
class PlannedShard:
    """One shard of a refresh: customers with ``lo <= id < hi`` (None: unbounded), or the changed ones."""

    key: str
    position: int
    lo: str | None = None
    hi: str | None = None
    rows: int | None = None
    summary: dict | None = None
    seconds: dict | None = None
    done: bool = False


@dataclass(frozen=True)
class RefreshPlan:
    """What a refresh recomputes and at which clock; ``shards`` in id order."""

    plan_id: str
    mode: str
    reason: str
    now: int
    since: int | None
    fingerprint: str
    full_at: int | None
    staging: str
    changes: int
    shards: tuple[PlannedShard, ...] = ()
    committed: bool = False


class TraitRefreshPlans:
    """The plans of the trait refreshes not committed yet."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, plan: RefreshPlan, conn: Connection) -> None:
        """Store a plan and its shards (replacing a plan of the same id), in ``conn``'s transaction."""
        self.delete(plan.plan_id, conn)
        conn.execute(plans.insert().values(
            plan_id=plan.plan_id, mode=plan.mode, reason=plan.reason, now=plan.now, since=plan.since,
            fingerprint=plan.fingerprint, full_at=plan.full_at, staging=plan.staging, changes=plan.changes,
            created_at=int(time.time())))
        conn.execute(shards.insert(), [{"plan_id": plan.plan_id, "shard_key": s.key, "shard_order": s.position,
                                        "lo": s.lo, "hi": s.hi} for s in plan.shards])

    def get(self, plan_id: str) -> RefreshPlan | None:
        """The plan with its shards as written so far (None: no such plan, e.g. already committed)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(plans).where(plans.c.plan_id == plan_id)).mappings().first()
            if row is None:
                return None
            parts = conn.execute(select(shards).where(shards.c.plan_id == plan_id).order_by(shards.c.shard_order)
                                 ).mappings().all()
        planned = tuple(PlannedShard(key=p["shard_key"], position=p["shard_order"], lo=p["lo"], hi=p["hi"], rows=p["row_count"],
                                     summary=p["summary"], seconds=p["seconds"], done=p["done_at"] is not None)
                        for p in parts)
        return RefreshPlan(plan_id=row["plan_id"], mode=row["mode"], reason=row["reason"], now=int(row["now"]),
                           since=None if row["since"] is None else int(row["since"]), fingerprint=row["fingerprint"],
                           full_at=None if row["full_at"] is None else int(row["full_at"]), staging=row["staging"],
                           changes=int(row["changes"]), shards=planned, committed=row["committed_at"] is not None)

    def mark_written(self, plan_id: str, key: str, rows: int, summary: dict, seconds: dict, conn: Connection) -> bool:
        """Record a shard's rows as written (in the transaction that wrote them); False if it already was."""
        updated = conn.execute(shards.update().where(
            shards.c.plan_id == plan_id, shards.c.shard_key == key, shards.c.done_at.is_(None),
        ).values(row_count=rows, summary=summary, seconds=seconds, done_at=int(time.time()))).rowcount
        return bool(updated)

    def record_seconds(self, plan_id: str, key: str, seconds: dict) -> None:
        """The shard's timings once its write is committed (the write's own time included)."""
        with self.engine.begin() as conn:
            conn.execute(shards.update().where(shards.c.plan_id == plan_id, shards.c.shard_key == key)
                         .values(seconds=seconds))

    def record_customers(self, plan_id: str, customer_ids: Iterable[str], conn: Connection) -> None:
        """The customers an incremental refresh recomputed (a deleted one among them loses its row)."""
        rows = [{"plan_id": plan_id, "stripe_customer_id": str(c)} for c in sorted(set(customer_ids))]
        for chunk in chunks(rows):
            conn.execute(customers.insert(), list(chunk))

    def customers(self, plan_id: str, conn: Connection | None = None) -> list[str]:
        if conn is None:
            with self.engine.connect() as own:
                return self.customers(plan_id, own)
        return list(conn.execute(select(customers.c.stripe_customer_id).where(customers.c.plan_id == plan_id)
                                 .order_by(customers.c.stripe_customer_id)).scalars())

    def customers_query(self, plan_id: str):
        """A subquery of the plan's customers (for statements that replace their rows)."""
        return select(customers.c.stripe_customer_id).where(customers.c.plan_id == plan_id)

    def mark_committed(self, plan_id: str, conn: Connection) -> None:
        conn.execute(plans.update().where(plans.c.plan_id == plan_id).values(committed_at=int(time.time())))

    def delete(self, plan_id: str, conn: Connection) -> None:
        for table in (customers, shards, plans):
            conn.execute(table.delete().where(table.c.plan_id == plan_id))

    def finished(self, abandoned_before: int) -> list[RefreshPlan]:
        """Plans committed, and plans created before ``abandoned_before`` (wall clock) never committed."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(plans.c.plan_id).where(
                (plans.c.committed_at.is_not(None)) | (plans.c.created_at < abandoned_before))).scalars().all()
        return [p for p in (self.get(i) for i in ids) if p is not None]
