"""A nightly run SIGKILLed at each kill point, then rerun: nothing lost, nothing under a new messageId.

Issue 11 (integrity), the contract's delivery guarantees: "A run killed at any point loses nothing
and, when rerun within Segment's deduplication window, sends nothing under a new messageId;
acknowledged messages are recorded as they are acknowledged, not only at the end of a run."

Each case: a state store that has had its first run (full sync, traits, identifies); Stripe then
changes (an upgrade, a new userId, two failed invoice payments, a refund, new payments). A real
child process runs the nightly path (change feed, track calls, trait refresh, profile sync: the
plain functions the job's assets call, in an order the job's dependencies allow) against the
Stripe stand-in and the Segment sink served by this process, and dies by SIGKILL exactly at the
kill point:

| kill point | how |
|---|---|
| track / profiles: Segment acknowledged a batch, its bookkeeping not begun | ``*.acknowledged`` |
| track / profiles: in the middle of a batch's bookkeeping | ``*.bookkeeping`` |
| track / profiles: in the middle of a batch (Segment has it, no answer yet) | sink holds the answer |
| change feed: mirror and ledger written, cursor not (one transaction) | ``change_feed.mirror_written`` |
| first sync: everything listed into the mirror, cursor not started | ``change_feed.listed`` |

``S2S_TEST_KILL_AT=<point>[@<n>]`` (``core/kill_points.py``) makes the child kill itself at the
n-th pass through a named point; for "in the middle of a batch" the sink stores the batch and
holds its answer back, and the test SIGKILLs the child while it waits for it.

Then the rerun (this process) completes, and

(a) nothing is lost: the messageIds Segment got (killed run and rerun) are exactly those of a run
    never killed, and the state store afterwards equals that run's (mirror, event ledger, cursors,
    traits, identities, pushed traits, track calls sent, profile queue; the delivery audit holds
    every acknowledged messageId);
(b) no content under two messageIds: grouping what Segment accepted by content (type, identity,
    event, traits / properties, group) gives one messageId per content (the same messageId twice is
    fine: Segment deduplicates it).
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import re
import shutil
import signal
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from s2s_devtools.demo.changes import simulate_changes
from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_devtools.fakes.segment_sink import SegmentSink
from s2s_devtools.fakes.stripe import StripeStandIn
from sqlalchemy import MetaData, select

from s2s_pipeline.core.kill_points import KILL_AT_ENV
from s2s_pipeline.extract.change_feed import EVENTS_CURSOR, sync_changes
from s2s_pipeline.segment.delivery import SegmentSettings
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions, sync_pending_profiles
from s2s_pipeline.segment.track_sync import send_track_events
from s2s_pipeline.store.privacy_schema import delivery_audit
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.refresh import refresh_customer_traits

WRITE_KEY = "wk_kill_points"
#: Stripe-clock time of the nightly run (and of its rerun: same inputs, so state compares exactly).
NOW = 1_780_000_000
#: The first run, a day earlier.
FIRST_RUN = NOW - 86400
#: Small batches, so every pass has several and a kill can land between them.
UPLOAD_SIZE = 2
CHILD_TIMEOUT = 90
#: Columns stamped with the wall clock (not the run's Stripe-clock ``now``): never equal across runs.
WALL_CLOCK_COLUMNS = {"segment_delivery_audit": {"acknowledged_at", "run_id", "id"},
                      "sync_cursors": {"updated_at"}}
#: Each trait refresh's own bookkeeping (its random plan id, shard timings, wall-clock times): what the
#: refresh wrote is compared in ``customer_traits``, the cursors and the profile queue.
RUN_BOOKKEEPING_TABLES = {"trait_refresh_plans", "trait_refresh_shards", "trait_refresh_customers"}

STEPS = ("change_feed", "track", "traits", "profiles")


def nightly(url: str, stripe_base: str, sink_base: str, now: int, after_step=None) -> None:
    """The nightly job's work, as its assets do it (``stripe_change_feed``, ``segment_track_events``,
    ``customer_traits``, ``segment_profiles``), in one order their dependencies allow."""
    store = StateStore.from_url(url)
    reader = StripeReader(StripeSettings(api_key="sk_test_kill", api_base=stripe_base, rate_limit=1000))
    segment = SegmentSettings(write_key=WRITE_KEY, host=sink_base, max_retries=1, upload_size=UPLOAD_SIZE)
    try:
        for step in STEPS:
            if step == "change_feed":
                sync_changes(reader, store, clock=lambda: now)
            elif step == "track":
                send_track_events(store, segment, reader=reader, now=now)
            elif step == "traits":
                refresh_customer_traits(store, TraitsConfig(), now)
            else:
                sync_pending_profiles(store, segment, None, ProfileSyncOptions(), now)
            if after_step is not None:
                after_step(step)
    finally:
        store.dispose()


def killed_nightly(url: str, stripe_base: str, sink_base: str, now: int, kill_at: str | None) -> None:
    """The child process: the nightly run, told where to die (None: the test kills it from outside)."""
    if kill_at:
        os.environ[KILL_AT_ENV] = kill_at
    nightly(url, stripe_base, sink_base, now)


def stripe_changes(standin: StripeStandIn, account) -> tuple[str, str]:
    """A day of Stripe activity after the first run: the demo's changes (an upgrade, a userId added,
    a failed invoice payment, a partial refund), a new one-off payment by most customers, and a
    failed invoice payment of a customer nothing else happens to (so its nightly identify would
    carry ``payment_delinquent`` alone). Returns that customer's id and invoice."""
    at = NOW - 1200
    touched = set(re.findall(r"cus_\w+", " ".join(simulate_changes(standin, account, at=at))))
    customers = sorted((c for c in account.of_type("customer") if not c.get("deleted")), key=lambda c: c["id"])
    quiet = next(c["id"] for c in customers if c["id"] not in touched)
    for n, cust in enumerate(c for c in customers if c["id"] != quiet):
        standin.emit("charge.succeeded", {
            "id": f"ch_kill{n}", "object": "charge", "status": "succeeded", "amount": 4200 + n,
            "amount_captured": 4200 + n, "amount_refunded": 0, "captured": True, "paid": True,
            "currency": cust.get("currency") or "usd", "customer": cust["id"], "created": at + 10 + n,
            "livemode": False, "payment_method_details": {"type": "card", "card": {"brand": "visa"}}},
            created=at + 10 + n)
    invoice = copy.deepcopy(max((i for i in account.of_type("invoice")
                                 if i.get("customer") == quiet and i.get("status") == "paid"),
                                key=lambda i: i["created"]))
    previous = {"status": invoice["status"], "attempt_count": invoice.get("attempt_count")}
    invoice.update(status="open", attempt_count=int(invoice.get("attempt_count") or 0) + 1, amount_paid=0,
                   amount_remaining=invoice.get("amount_due"), next_payment_attempt=at + 3 * 86400)
    standin.emit("invoice.payment_failed", invoice, created=at + 20, previous_attributes=previous)
    standin.now = NOW - 600
    return quiet, invoice["id"]


_tables: list = []


def state_of(url: str) -> dict[str, list]:
    """Every table of the state store, rows sorted, wall-clock columns left out; the delivery audit
    as the set of messageIds it holds (a batch acknowledged twice is audited twice)."""
    store = StateStore.from_url(url)
    try:
        if not _tables:  # every store has the same tables (the trait tables too, after a first run)
            meta = MetaData()
            meta.reflect(store.engine)
            _tables.extend(sorted(meta.tables.items()))
        out: dict[str, list] = {}
        with store.engine.connect() as conn:
            for name, table in _tables:
                if name.startswith("alembic") or name in RUN_BOOKKEEPING_TABLES:
                    continue
                skip = WALL_CLOCK_COLUMNS.get(name, set())
                rows = [{k: v for k, v in r._mapping.items() if k not in skip} for r in conn.execute(select(table))]
                if name == "segment_delivery_audit":
                    out[name] = sorted({r["message_id"] for r in rows})
                else:
                    out[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
        return out
    finally:
        store.dispose()


def content(message: dict) -> str:
    """What a message says, without its messageId or times (Segment dedupes by messageId only)."""
    return json.dumps({k: message.get(k) for k in ("type", "userId", "anonymousId", "event", "traits",
                                                   "properties", "groupId")}, sort_keys=True)


def described(message: dict) -> str:
    """A message in a failure report: its kind and the names of what it carries."""
    names = sorted(message.get("traits") or message.get("properties") or {})
    identity = message.get("userId") or message.get("anonymousId")
    return f"{message['type']} {message.get('event') or ''} {identity} {names}"


@dataclass
class World:
    """Module-wide: the account, Stripe before and after the day's changes, the sink, and the run
    never killed (its state and what Segment got, per step)."""

    account: object
    #: The customer whose only change is a failed invoice payment.
    quiet: str
    quiet_invoice: str
    before: StripeStandIn
    after: StripeStandIn
    sink: SegmentSink
    #: A SQLite state store right after its first run, copied for each SQLite case.
    first_run_db: Path
    reference_state: dict
    first_run_messages: list[dict]
    reference_messages: list[dict]
    step_messages: dict[str, list[dict]]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    account = generate_account(customers=6, seed=9, now=FIRST_RUN - 3600)
    with StripeStandIn() as before, StripeStandIn() as after, SegmentSink(write_key=WRITE_KEY) as sink:
        seed_standin(before, account, copy=True)
        seed_standin(after, account, copy=True)
        quiet, quiet_invoice = stripe_changes(after, account)
        directory = tmp_path_factory.mktemp("reference")
        url = f"sqlite:///{directory / 'state.db'}"
        nightly(url, before.base_url, sink.base_url, FIRST_RUN)
        first_messages = list(sink.accepted)
        shutil.copy(directory / "state.db", directory / "first_run.db")  # closed: no WAL left to copy
        sink.clear()
        steps: dict[str, list[dict]] = {}
        seen = [0]

        def record(step: str) -> None:
            steps[step] = list(sink.accepted[seen[0]:])
            seen[0] = len(sink.accepted)

        nightly(url, after.base_url, sink.base_url, NOW, after_step=record)
        world = World(account, quiet, quiet_invoice, before, after, sink, directory / "first_run.db",
                      state_of(url), first_messages, list(sink.accepted), steps)
        sink.clear()
        yield world


@pytest.fixture
def first_run_store(world, state_url) -> str:
    """A state store (each backend) after its first run: SQLite a copy of the module's, Postgres run."""
    if state_url.startswith("sqlite:///"):
        shutil.copy(world.first_run_db, state_url.removeprefix("sqlite:///"))
    else:
        first_run(world, state_url)
    return state_url


@pytest.fixture
def first_run_sqlite(world, tmp_path) -> str:
    """A SQLite state store after its first run (a copy of the module's): for the cases whose
    recovery involves no database transaction that could behave differently on Postgres."""
    shutil.copy(world.first_run_db, tmp_path / "state.db")
    return f"sqlite:///{tmp_path / 'state.db'}"


def first_run(world: World, url: str, keep_messages: bool = False) -> None:
    """The store's first run (full sync, traits, every customer identified), done in this process."""
    world.sink.clear()
    nightly(url, world.before.base_url, world.sink.base_url, FIRST_RUN)
    if not keep_messages:
        world.sink.clear()


def _processes():
    """Child processes forked from a clean server process that has imported this module: a fresh
    process per case without paying for the imports each time (a spawned child takes seconds)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def run_child(world: World, url: str, kill_at: str | None = None, hold: str | None = None, *,
              first: bool = False) -> list[dict]:
    """The nightly run (``first``: the first run) in a child process, SIGKILLed at ``kill_at`` (by
    itself) or while it waits for the sink's answer to the batch carrying ``hold``; returns what
    Segment had got by then."""
    sink = world.sink
    sink.clear()
    if hold is not None:
        sink.faults.hold_answer_to([hold])
    stripe, now = (world.before, FIRST_RUN) if first else (world.after, NOW)
    child = _processes().Process(target=killed_nightly, args=(url, stripe.base_url, sink.base_url, now, kill_at))
    child.start()
    try:
        if hold is not None:
            assert sink.wait_for(lambda: sink.faults.holding > 0, timeout=CHILD_TIMEOUT), "no batch was held"
            child.kill()
        child.join(CHILD_TIMEOUT)
        assert child.exitcode == -signal.SIGKILL, f"the child was not killed at the kill point: {child.exitcode}"
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        sink.faults.release_held()
    return list(sink.accepted)


def assert_rerun_completes_it(world: World, url: str) -> None:
    """The rerun completes the killed run: (a) and (b) of the module docstring."""
    nightly(url, world.after.base_url, world.sink.base_url, NOW)
    got = world.sink.accepted
    # (a) nothing lost, nothing new: the never-killed run's messageIds, no other
    expected = {m["messageId"] for m in world.reference_messages}
    new = [described(m) for m in got if m["messageId"] not in expected]
    lost = [described(m) for m in world.reference_messages if m["messageId"] not in {g["messageId"] for g in got}]
    assert (new, lost) == ([], [])
    # (b) one messageId per content
    ids_by_content: dict[str, set[str]] = defaultdict(set)
    for message in got:
        ids_by_content[content(message)].add(message["messageId"])
    assert {c: ids for c, ids in ids_by_content.items() if len(ids) > 1} == {}
    # (a) the state is the never-killed run's
    state = state_of(url)
    assert state.keys() == world.reference_state.keys()
    assert [t for t, rows in world.reference_state.items() if state[t] != rows] == []


def audited(url: str) -> set[str]:
    """The messageIds in the delivery audit: what the store recorded as acknowledged."""
    store = StateStore.from_url(url)
    try:
        with store.engine.connect() as conn:
            return set(conn.execute(select(delivery_audit.c.message_id)).scalars())
    finally:
        store.dispose()


def quiet_delinquent_identify(world: World) -> tuple[int, str]:
    """Which batch of the track pass carries the delinquent identify of the quiet customer's failed
    payment (the event's last call: its bookkeeping completes the event), and its messageId.
    One consumer thread uploads the queue in order, ``UPLOAD_SIZE`` messages a batch."""
    track = world.step_messages["track"]
    (failed,) = [m for m in track if (m.get("properties") or {}).get("invoice_id") == world.quiet_invoice]
    (index,) = [i for i, m in enumerate(track) if m["type"] == "identify" and m.get("userId") == failed.get("userId")
                and m.get("anonymousId") == failed.get("anonymousId")]
    return index // UPLOAD_SIZE + 1, track[index]["messageId"]


def test_the_reference_run_sends_every_kind_of_call_in_several_batches(world):
    # what the kill points below need: several batches per pass, the quiet customer's failure late in its pass
    track, profiles = world.step_messages["track"], world.step_messages["profiles"]
    assert {m.get("event") for m in track if m["type"] == "track"} >= {
        "Subscription Upgraded", "Payment Failed", "Order Refunded", "Order Completed"}
    assert len(track) > 2 * UPLOAD_SIZE and len(profiles) > 2 * UPLOAD_SIZE
    assert world.step_messages["change_feed"] == [] and world.step_messages["traits"] == []
    assert quiet_delinquent_identify(world)[0] > 1


@pytest.mark.parametrize("kill_at, step", [("track.acknowledged@3", "track"),
                                           ("profiles.acknowledged@2", "profiles")])
def test_killed_after_segment_acknowledged_a_batch_before_recording_it(world, first_run_sqlite, kill_at, step):
    url = first_run_sqlite
    sent = run_child(world, url, kill_at=kill_at)
    # where it died: the pass's earlier batches recorded, the one Segment just acknowledged not
    pass_ids = {m["messageId"] for m in world.step_messages[step]}
    sent_in_pass = {m["messageId"] for m in sent} & pass_ids
    recorded = audited(url) & pass_ids
    assert recorded and recorded < sent_in_pass
    assert_rerun_completes_it(world, url)


def test_killed_in_the_middle_of_recording_an_acknowledged_track_batch(world, first_run_store):
    # the batch completing the quiet customer's Payment Failed: its track call written as sent,
    # not yet that Segment now has payment_delinquent = true (nor the ledger, nor the audit)
    batch, acknowledged = quiet_delinquent_identify(world)
    sent = run_child(world, first_run_store, kill_at=f"track.bookkeeping@{batch}")
    # where it died: Segment acknowledged the batch, its bookkeeping did not commit
    assert acknowledged in {m["messageId"] for m in sent} and acknowledged not in audited(first_run_store)
    assert_rerun_completes_it(world, first_run_store)


def test_killed_in_the_middle_of_recording_an_acknowledged_profiles_batch(world, first_run_sqlite):
    # the pass's second batch: its identifies written as pushed, not its groups nor the audit
    acknowledged = world.step_messages["profiles"][UPLOAD_SIZE]["messageId"]
    sent = run_child(world, first_run_sqlite, kill_at="profiles.bookkeeping@2")
    assert acknowledged in {m["messageId"] for m in sent} and acknowledged not in audited(first_run_sqlite)
    assert_rerun_completes_it(world, first_run_sqlite)


@pytest.mark.parametrize("step", ["track", "profiles"])
def test_killed_in_the_middle_of_a_batch_sent_but_not_acknowledged(world, first_run_sqlite, step):
    url = first_run_sqlite
    messages = world.step_messages[step]
    held = messages[UPLOAD_SIZE]["messageId"]  # in the pass's second batch, with more batches after it
    sent = run_child(world, url, hold=held)
    # where it died: Segment has the held batch, the child never heard back; the last batch never went out
    sent_ids = {m["messageId"] for m in sent}
    assert held in sent_ids and held not in audited(url) and messages[-1]["messageId"] not in sent_ids
    assert_rerun_completes_it(world, url)


def test_killed_between_the_change_feeds_mirror_write_and_its_cursor(world, first_run_store):
    url = first_run_store
    before = state_of(url)
    sent = run_child(world, url, kill_at="change_feed.mirror_written")
    # one transaction: the kill left mirror, ledger and cursor as they were; nothing was sent
    assert sent == [] and state_of(url) == before
    # the rerun applies the same events again: the same mirror, the same track calls, no others
    assert_rerun_completes_it(world, url)


def test_killed_after_the_first_sync_listed_everything_before_the_cursor_starts(world, tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    sent = run_child(world, url, kill_at="change_feed.listed", first=True)
    # where it died: the mirror holds what was listed, the event cursor never started, nothing sent
    store = StateStore.from_url(url)
    try:
        assert store.cursors.get(EVENTS_CURSOR) is None and store.counts()["customer"] > 0
    finally:
        store.dispose()
    assert sent == []
    # the rerun lists everything again and starts the cursor: the first run's identifies, once each
    first_run(world, url, keep_messages=True)
    assert sorted(m["messageId"] for m in world.sink.accepted) == sorted(
        m["messageId"] for m in world.first_run_messages)
    world.sink.clear()
    assert_rerun_completes_it(world, url)
