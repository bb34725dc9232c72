"""The nightly trait refresh: recompute only the customers whose mirror rows changed, or everyone.

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
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

import pandas as pd

from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_customer_frames, load_mirror_frames

#: Cursor holding the last refresh: ``{"now", "fingerprint", "mode", "full_at"}``.
TRAITS_CURSOR = "customer_traits_refresh"


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
    """What one refresh did: its mode and why, the rows it computed, the seconds of each step."""

    mode: str  # "full" | "incremental"
    reason: str
    table: pd.DataFrame  # the recomputed rows (every customer on a full recompute)
    customers_recomputed: int
    seconds_read_mirror: float = 0.0
    seconds_compute: float = 0.0
    seconds_store: float = 0.0
    changes_read: int = 0


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


def refresh_customer_traits(store: StateStore, config: TraitsConfig, now: int, *, full: bool = False,
                            clock=time.perf_counter) -> TraitsRefresh:
    """Bring ``customer_traits`` up to date with the mirror, recomputing as little as is exact.

    Changes recorded while this runs stay pending for the next run (they are
    cleared by the tokens read here, before the mirror is read).
    """
    state = store.cursors.get(TRAITS_CURSOR)
    fingerprint = config_fingerprint(config)
    reason = _full_reason(store, state, fingerprint, full)
    t0 = clock()
    if reason is not None:
        pending = store.changed_objects.pending(with_objects=False)
        frames = load_mirror_frames(store.mirror)
        t1 = clock()
        table = compute_customer_traits(frames, config, now)
        del frames
        t2 = clock()
        store.traits.write(table)
        store.profile_queue.request_full()
        mode, recomputed = "full", len(table)
    else:
        pending = store.changed_objects.pending()
        customers = store.changed_objects.customers_affected(pending)
        customers |= store.changed_objects.customers_crossing_time(int(state.get("now", now)), now)
        frames = load_customer_frames(store.mirror, customers)
        t1 = clock()
        table = compute_customer_traits(frames, config, now) if customers else _empty_like(store)
        del frames
        t2 = clock()
        if customers:
            store.trait_rows.replace_customers(table, customers)
            store.profile_queue.add(customers)
        mode, reason, recomputed = "incremental", "changes", len(customers)
    store.changed_objects.clear(pending)
    store.cursors.set(TRAITS_CURSOR, {
        "now": int(now), "fingerprint": fingerprint, "mode": mode,
        "full_at": int(now) if mode == "full" else (state or {}).get("full_at"),
    })
    t3 = clock()
    return TraitsRefresh(mode=mode, reason=reason, table=table, customers_recomputed=recomputed,
                         seconds_read_mirror=t1 - t0, seconds_compute=t2 - t1, seconds_store=t3 - t2,
                         changes_read=sum(len(v) for v in pending.objects.values()))


def _empty_like(store: StateStore) -> pd.DataFrame:
    return store.trait_rows.read_customers(())
