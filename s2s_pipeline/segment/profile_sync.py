"""One pass of trait delivery: identities -> diff against pushed traits -> identify/group -> bookkeeping.

Plain Python; the ``segment_profiles`` asset calls ``sync_profiles``.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Collection, TypeVar

import time

import numpy as np
import pandas as pd

from s2s_pipeline.core.bulk_work import bulk_work
from s2s_pipeline.core.contract import IDENTIFY_TRAITS
from s2s_pipeline.core.kill_points import kill_point
from s2s_pipeline.core.progress import ProgressSink
from s2s_pipeline.segment.audit import audit_rows
from s2s_pipeline.segment.delivery import CompletedGroups, DeliveryReport, SegmentSettings, deliver
from s2s_pipeline.segment.canonical import canonical_column
from s2s_pipeline.segment.diff import TIMED_TRAITS, diff_group, diff_identify, keep_newer_pushed
from s2s_pipeline.segment.identity import resolve_identities
from s2s_pipeline.core.times import utc_datetime
from s2s_pipeline.segment.messages import Message, group_message, identify_messages, native
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.traits.refresh import traits_computed_at

T = TypeVar("T")


@dataclass(frozen=True)
class ProfileSyncOptions:
    allow_list: tuple[str, ...] | None = None
    routing: dict[str, dict] | None = None
    recheck_after_seconds: int = 7 * 86400
    max_lookups: int | None = 10_000


@dataclass
class ProfileSyncOutcome:
    customers: int
    customers_changed: int
    report: DeliveryReport
    identity_sources: dict[str, int] = field(default_factory=dict)
    profiles_lookups: int = 0
    changes: pd.DataFrame | None = None
    #: "full" (every customer compared) or "changed" (the queued ones), set by ``sync_pending_profiles``.
    scope: str = "full"

    def sample_markdown(self, limit: int = 10) -> str:
        """Which customers changed and which traits (names only: no values, no PII)."""
        if self.changes is None or self.changes.empty:
            return "No changes."
        lines = ["| stripe_customer_id | reason | traits changed |", "|---|---|---|"]
        for row in self.changes.head(limit).itertuples():
            lines.append(f"| {row.stripe_customer_id} | {row.reason} | {', '.join(sorted(row.traits))} |")
        return "\n".join(lines)


def _identify_messages(changes: pd.DataFrame, options: ProfileSyncOptions, last_change: pd.Series,
                       now: int) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = {}
    for row in changes.itertuples(index=False):
        anonymous_id = row.anonymous_id
        # A customer who was anonymous and now has a userId: send both so
        # Segment merges the anonymous profile into the user's.
        if row.reason == "identity_changed" and row.user_id is not None and _missing(row.previous_user_id):
            anonymous_id = row.stripe_customer_id
        when = utc_datetime(last_change.get(row.stripe_customer_id, now))
        messages = identify_messages(row.stripe_customer_id, row.user_id, anonymous_id, native(dict(row.traits)),
                                     when, allow_list=options.allow_list, routing=options.routing)
        if messages:  # empty only if the allow-list left none of the traits (the diff applies the same list)
            out[row.stripe_customer_id] = messages
    return out


def _read_in_background(read: Callable[..., T], *args) -> Future[T]:
    """``read(*args)`` started on a thread of its own (the engine's pool gives it its own connection)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-sync-read")
    try:
        return executor.submit(read, *args)
    finally:
        executor.shutdown(wait=False)  # the read runs on; the thread ends with it


def _of_customers(rows: pd.DataFrame, traits: pd.DataFrame) -> pd.DataFrame:
    """The rows of the customers ``traits`` holds (those left once deleted and forgotten ones are out)."""
    kept = rows[rows["stripe_customer_id"].isin(traits["stripe_customer_id"])]
    return kept if len(kept) == len(rows) else kept.reset_index(drop=True)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA


@bulk_work
def sync_profiles(store: StateStore, settings: SegmentSettings, profiles, options: ProfileSyncOptions,
                  now: int, *, progress: ProgressSink | None = None, run_id: str | None = None,
                  customer_ids: Collection[str] | None = None,
                  id_range: tuple[str | None, str | None] | None = None) -> ProfileSyncOutcome:
    """Identify/group calls for the customers whose traits changed; ``run_id`` (the Dagster run) goes
    into the delivery audit. Customers deleted in Stripe or forgotten are never sent.

    ``customer_ids`` limits the pass to those customers (the ones the incremental trait refresh
    recomputed): only their traits, identities and pushed state are read. ``id_range`` ``(lo, hi)``
    limits it to the customers with ``lo <= id < hi`` (None: unbounded), read by range (a block of
    everyone). Neither compares everyone.
    """
    subset = None if customer_ids is None else sorted(set(customer_ids))
    # The identify timestamps of a subset are read while its traits, identities and pushed state are
    # (they depend on nothing the diff finds; at 1M customers, 18,885 queued: about 0.7 s of index reads).
    timestamps = _read_in_background(store.mirror.last_change_of, subset) if subset is not None else None
    # Read before the table: a refresh landing in between makes the table newer than this, never older.
    # A table written without a refresh (tests, tools) counts as computed now.
    as_of = traits_computed_at(store) or now
    # A subset's traits, identities and pushed state in one snapshot (one connection for the three).
    stored = store.profile_rows(subset) if subset is not None and id_range is None else None
    if id_range is not None:
        traits = store.trait_rows.read_range(*id_range)
    else:
        traits = store.traits.read() if stored is None else stored.traits
    if not traits.empty:
        traits = traits[~traits["stripe_customer_id"].isin(store.suppressed_customer_ids())]
    if traits.empty:
        return ProfileSyncOutcome(0, 0, DeliveryReport())
    lookups = {"count": 0}

    def lookup(email: str):
        lookups["count"] += 1
        return profiles.user_id_for_email(email)

    identities = resolve_identities(
        traits[["stripe_customer_id", "email", "user_id"]],
        store.identities.read_range(*id_range) if id_range is not None
        else store.identities.read_all() if stored is None else _of_customers(stored.identities, traits),
        lookup=lookup if profiles is not None else None,
        now=now,
        recheck_after_seconds=options.recheck_after_seconds,
        max_lookups=options.max_lookups,
    )
    current = traits.drop(columns=["user_id"]).merge(
        identities[["stripe_customer_id", "user_id", "anonymous_id"]], on="stripe_customer_id", how="left")
    pushed = (store.pushed_traits.read_range(*id_range) if id_range is not None
              else store.pushed_traits.read_all() if stored is None
              else _of_customers(stored.pushed, traits))
    current = keep_newer_pushed(current, pushed, as_of)
    # A row written only by a delivered group call has no acknowledged identify yet.
    identified = pushed[pushed["identify_pushed_at"].notna()] if not pushed.empty else pushed
    changes = diff_identify(current, identified, allow_list=options.allow_list)
    groups = diff_group(current, pushed)
    changed = set(changes["stripe_customer_id"]) | set(groups["stripe_customer_id"])
    # The identify timestamps of the customers that changed only: by id when they are a few of all
    # customers (a full diff after a full recompute usually finds few), else in one scan of the mirror.
    few = subset is not None or id_range is not None or len(changed) * 4 <= len(traits)
    last_change = (timestamps.result() if timestamps is not None
                   else store.mirror.last_change_of(changed) if few else store.mirror.customer_last_change())

    identify_by_customer = _identify_messages(changes, options, last_change, now)
    group_by_customer: dict[str, Message] = {}
    for row in groups.itertuples(index=False):
        group_by_customer[row.stripe_customer_id] = group_message(
            row.stripe_customer_id, row.user_id, row.anonymous_id, str(row.group_id), native(dict(row.traits)),
            utc_datetime(last_change.get(row.stripe_customer_id, now)))
    messages = [m for ms in identify_by_customer.values() for m in ms] + list(group_by_customer.values())
    completion = CompletedGroups({**{("identify", cid): ms for cid, ms in identify_by_customer.items()},
                                  **{("group", cid): [m] for cid, m in group_by_customer.items()}})

    pushed_rows = _pushed_identify_rows(current.set_index("stripe_customer_id", drop=False),
                                        identify_by_customer, options, now)

    def record_batch(batch: list[Message]) -> None:
        """Pushed state and audit of one acknowledged batch, as Segment acknowledges it (one transaction)."""
        kill_point("profiles.acknowledged")  # crash tests: Segment has the batch, we have not recorded it
        done = completion.acknowledge(batch)
        identified = [pushed_rows[cid] for kind, cid in done if kind == "identify"]
        grouped = _grouped_rows({cid: group_by_customer[cid] for kind, cid in done if kind == "group"}, now)
        store.record_acknowledged_profiles(identified, grouped, audit_rows(batch, run_id, int(time.time())),
                                           as_of=as_of)

    dry_run = bool(settings.dry_run_path)
    if not dry_run:  # the identity the calls go out under, known before any of them is acknowledged
        store.identities.record_resolved(identities, now)
    report = deliver(messages, settings, progress=progress, on_acknowledged=None if dry_run else record_batch)

    sources = identities["source"].value_counts().to_dict()
    changed_customers = set(identify_by_customer) | set(group_by_customer)
    return ProfileSyncOutcome(
        customers=len(traits), customers_changed=len(changed_customers), report=report,
        identity_sources={str(k): int(v) for k, v in sources.items()}, profiles_lookups=lookups["count"],
        changes=changes,
    )


def _pushed_identify_rows(by_customer: pd.DataFrame, identified: dict[str, list[Message]],
                         options: ProfileSyncOptions, now: int) -> dict[str, dict]:
    """Per customer to be identified, the pushed-state row recorded once Segment acknowledged every one of
    its identify messages (compare-and-set on the trait table's computation time). ``by_customer``: the
    compared traits indexed by ``stripe_customer_id``.

    Built once for the whole pass, before delivery, so the bookkeeping of each acknowledged batch only
    looks rows up (building them per batch, row by row through pandas, cost more than the upload).
    """
    if not identified:
        return {}
    compared = [t for t in IDENTIFY_TRAITS if t != "stripe_customer_id"]
    if options.allow_list:
        compared = [t for t in compared if t in options.allow_list]
    traits = [t for t in IDENTIFY_TRAITS if t != "stripe_customer_id"]
    order = sorted(identified)
    n = len(order)
    sent = by_customer.loc[order]
    everyone = np.arange(n)
    # Column by column, then zipped into rows: the canonical columns give plain Python values
    # (None for null) without a look-up or a ``native`` call per value.
    last = [identified[cid][-1] for cid in order]
    columns: dict[str, list] = {
        "stripe_customer_id": order,
        "user_id": [m.user_id for m in last],
        "anonymous_id": [None if m.user_id else cid for m, cid in zip(last, order)],
        "identify_message_id": [m.message_id for m in last],
        "identify_pushed_at": [now] * n,
    }
    for t in traits:
        columns[f"trait_{t}"] = (canonical_column(sent[t] if t in sent.columns else None, t, n).python(everyone)
                                 if t in compared else [None] * n)
    for column in TIMED_TRAITS.values():
        columns[column] = [int(v) for v in sent[column].tolist()]
    names = list(columns)
    return {cid: dict(zip(names, values)) for cid, values in zip(order, zip(*columns.values()))}


def _grouped_rows(grouped: dict[str, Message], now: int) -> list[dict]:
    """Pushed-state rows for customers whose group call Segment acknowledged."""
    return [{"stripe_customer_id": cid, "group_id": message.group_id, "group_name": message.traits.get("name"),
             "group_plan": message.traits.get("plan"), "group_mrr": message.traits.get("mrr"),
             "group_message_id": message.message_id, "group_pushed_at": now}
            for cid, message in grouped.items()]


#: Customers compared per pass when everyone is compared (after a full recompute): a pass holds its
#: customers' traits, identities, pushed values and messages in memory, about 3.7 GB per million
#: customers, so everyone at once does not fit on one machine beyond a few million customers.
FULL_SYNC_BLOCK = 250_000


@bulk_work
def sync_pending_profiles(store: StateStore, settings: SegmentSettings, profiles, options: ProfileSyncOptions,
                          now: int, *, progress: ProgressSink | None = None,
                          run_id: str | None = None) -> ProfileSyncOutcome:
    """The nightly profile pass: every customer after a full trait recompute (or when no refresh
    said otherwise), else only the customers the trait refresh queued (``store.profile_queue``).

    Everyone is compared ``FULL_SYNC_BLOCK`` customers at a time, in ranges of ids (one
    ``sync_profiles`` pass each, memory bounded by the block; the Profiles API look-ups of the run
    share one ``max_lookups``), except in a dry run, whose file holds the whole run's calls.

    Queued customers are settled once the pass is done; a customer with a call Segment did not
    acknowledge is queued again, so the next run re-sends it (same messageId). A dry run settles nothing.
    """
    scope = store.profile_queue.scope()
    if scope.full and not settings.dry_run_path:
        outcome = _sync_everyone_in_blocks(store, settings, profiles, options, now, progress=progress, run_id=run_id)
    else:
        outcome = sync_profiles(store, settings, profiles, options, now, progress=progress, run_id=run_id,
                                customer_ids=None if scope.full else scope.customer_ids)
    if outcome.report.dry_run:
        return outcome
    failed = set(outcome.report.failed)
    retry = {m.stripe_customer_id for m in outcome.report.attempted if m.message_id in failed} \
        if failed else set()
    store.profile_queue.settle(scope, retry)
    outcome.scope = "full" if scope.full else "changed"
    return outcome


def _sync_everyone_in_blocks(store: StateStore, settings: SegmentSettings, profiles, options: ProfileSyncOptions,
                             now: int, *, progress: ProgressSink | None, run_id: str | None) -> ProfileSyncOutcome:
    """``sync_profiles`` of every customer of the trait table, ``FULL_SYNC_BLOCK`` at a time; one outcome."""
    starts = store.trait_rows.block_starts(FULL_SYNC_BLOCK)
    if len(starts) <= 1:
        return sync_profiles(store, settings, profiles, options, now, progress=progress, run_id=run_id)
    outcomes: list[ProfileSyncOutcome] = []
    lookups_left = options.max_lookups
    compared = 0
    # The first block has no lower bound and the last no upper one: a customer whose traits landed
    # after the bounds were read is in exactly one block.
    for lo, hi in zip([None, *starts[1:]], [*starts[1:], None]):
        outcome = sync_profiles(store, settings, profiles, replace(options, max_lookups=lookups_left), now,
                                progress=progress, run_id=run_id, id_range=(lo, hi))
        compared += outcome.customers
        if lookups_left is not None:
            lookups_left = max(0, lookups_left - outcome.profiles_lookups)
        # What the run reports of a block's calls is their kinds, ids and customers: its traits are let go
        # (a first sync sends every customer's, about a kilobyte each).
        outcome.report.attempted = [_without_values(m) for m in outcome.report.attempted]
        outcomes.append(outcome)
        if progress is not None:
            progress(f"profiles: compared {compared:,} customers in {len(outcomes)} of {len(starts)} blocks")
    sources: dict[str, int] = {}
    for outcome in outcomes:
        for source, count in outcome.identity_sources.items():
            sources[source] = sources.get(source, 0) + count
    changes = [o.changes for o in outcomes if o.changes is not None and not o.changes.empty]
    return ProfileSyncOutcome(
        customers=sum(o.customers for o in outcomes),
        customers_changed=sum(o.customers_changed for o in outcomes),
        report=DeliveryReport(attempted=[m for o in outcomes for m in o.report.attempted],
                              failed={k: v for o in outcomes for k, v in o.report.failed.items()}),
        identity_sources=sources,
        profiles_lookups=sum(o.profiles_lookups for o in outcomes),
        changes=pd.concat(changes, ignore_index=True) if changes else None,
    )


_NO_VALUES: dict = {}


def _without_values(message: Message) -> Message:
    """The message with its kind, id, customer, identity and time only (nothing reads it again)."""
    return Message(message.type, message.message_id, message.stripe_customer_id, message.timestamp,
                   user_id=message.user_id, anonymous_id=message.anonymous_id, traits=_NO_VALUES,
                   context=_NO_VALUES, properties=_NO_VALUES, group_id=message.group_id, event=message.event)
