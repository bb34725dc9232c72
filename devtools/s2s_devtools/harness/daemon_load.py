"""The nightly job and N failed-payment alerts at the same moment, through the daemon: what must hold.

Production at 02:00 UTC: the schedule queues `nightly_trait_refresh` while
card declines keep arriving, each one a `failed_payment_alert` run queued by
`failed_payment_sensor`. They share the state store, the run queue (4 runs at
a time) and the `stripe_api` / `segment_api` pools (one step each). This
scenario makes that moment happen on a running `daemon_harness` (best with
``postgres=...``: the shipped `dagster.yaml`) and checks the promises:

- every run succeeds, none is retried (a run failing on another's lock or
  write would show here);
- each failure's `Payment Failed` reaches Segment exactly once: one message
  per invoice, one messageId per event, no messageId twice (whichever run,
  the alert's or the nightly's, sends it first);
- each failed customer's `payment_delinquent = true` identify arrived and the
  nightly did not undo it: the last `payment_delinquent` Segment saw for the
  customer is true (false only for a customer who paid since: none here);
- every pool slot is free afterwards and nothing waits in the queue.

`run_daemon_load(h, alerts=N)` launches the nightly through the run queue
(`DaemonHarness.launch_run`, as the schedule does), then emits N declines on
subscription invoices of N different customers into the Stripe stand-in, waits
(polling, with deadlines) until every run of the instance has finished, and
returns a `LoadResult`: the problems found (empty when all holds) and the
figures. `bench/daemon_load_bench.py` runs it at 50 alerts and
`s2s_pipeline_tests/ops/test_daemon_load.py` at 10.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from s2s_devtools.harness.daemon import (
    ALERT_JOB,
    NIGHTLY_JOB,
    PAYMENT_FAILED,
    DaemonHarness,
    HarnessError,
    fresh_customers,
    identity_of,
    received_at,
)

#: Tag of the runs this scenario launched itself (the nightly), to tell them from the schedule's.
LAUNCHED_BY_TAG = "s2s/launched_by"
#: How long after the last run ended a failed run may wait for the retry daemon to decide (it runs every few s).
RETRY_DECISION_DEADLINE_S = 60


def default_deadline_s(alerts: int) -> float:
    """Time for every run to finish: the nightly (a minute or two of step processes) plus a few seconds of run
    worker per alert, with the margin a shared 2-core machine needs (at a load average of 10 an alert run took
    20 s). A miss is reported with the runs' states, not hung on."""
    return 240 + 12 * alerts


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Failure:
    """One emitted decline: its invoice.payment_failed event, when it was created, its invoice and customer."""

    event_id: str
    created: int
    invoice_id: str
    customer_id: str


@dataclass
class LoadResult:
    alerts: int
    failures: list[Failure]
    nightly_run_id: str | None
    problems: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- runs


def _finished(status) -> bool:
    from dagster import DagsterRunStatus

    return status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def _awaiting_retry(run, runs) -> bool:
    """A failed run the retry daemon has not decided on yet (no ``will_retry`` tag), or will retry and has
    not yet (no run names it as parent)."""
    from dagster import DagsterRunStatus
    from dagster._core.storage.tags import WILL_RETRY_TAG

    if run.status != DagsterRunStatus.FAILURE:
        return False
    decision = run.tags.get(WILL_RETRY_TAG)
    return decision is None or (decision == "true" and not any(r.parent_run_id == run.run_id for r in runs))


def _new_runs(h: DaemonHarness, before: set[str]) -> list:
    return [r for r in h.instance.get_runs() if r.run_id not in before]


def wait_for_all_runs(h: DaemonHarness, before: set[str], alert_keys: set[str], nightly_run_id: str | None,
                      deadline_s: float) -> list:
    """Until the nightly run (if any) and one run per alert key exist and every run created since ``before``
    has finished (retries decided and finished too). Raises with the runs' states at the deadline."""
    deadline = time.monotonic() + deadline_s
    retry_deadline = None
    while True:
        h.check_daemon_alive()
        runs = _new_runs(h, before)
        keys = {r.tags.get("dagster/run_key") for r in runs if r.job_name == ALERT_JOB}
        present = (nightly_run_id is None or nightly_run_id in {r.run_id for r in runs}) and keys >= alert_keys
        if present and all(_finished(r.status) for r in runs):
            waiting = [r for r in runs if _awaiting_retry(r, runs)]
            if not waiting:
                return runs
            retry_deadline = retry_deadline or time.monotonic() + RETRY_DECISION_DEADLINE_S
            if time.monotonic() > retry_deadline:
                return runs  # reported as failed (and not retried) by the checks
        if time.monotonic() > deadline:
            states = Counter((r.job_name, r.status.value) for r in runs)
            missing = sorted(alert_keys - keys)
            raise HarnessError(f"runs not finished within {deadline_s:.0f} s: {dict(states)}; alert runs missing for "
                               f"{len(missing)} events {missing[:5]}; sensor tick errors: {h.sensor_tick_errors()[:1]}"
                               f"\n--- daemon log ---\n{h.daemon_log()}")
        h.pause()  # one poll interval; returns early if the daemon dies


def _retry_count(runs) -> int:
    from dagster._core.storage.tags import RETRY_NUMBER_TAG

    return sum(1 for r in runs if r.parent_run_id or r.tags.get(RETRY_NUMBER_TAG))


def _stage_seconds(h: DaemonHarness, run_id: str) -> dict[str, float | None]:
    """Queue wait (enqueued -> dequeued), start-up (dequeued -> run started) and run time (started -> ended)."""
    ev = h.run_stages(run_id)
    enqueued = ev.get("PIPELINE_ENQUEUED", ev.get("RUN_ENQUEUED"))
    dequeued = ev.get("PIPELINE_DEQUEUED", ev.get("RUN_DEQUEUED", ev.get("PIPELINE_STARTING", ev.get("RUN_STARTING"))))
    started = ev.get("PIPELINE_START", ev.get("RUN_START"))
    ended = ev.get("PIPELINE_SUCCESS", ev.get("RUN_SUCCESS", ev.get("PIPELINE_FAILURE", ev.get("RUN_FAILURE"))))

    def diff(a, b):
        return round(b - a, 2) if a is not None and b is not None else None

    return {"queue_wait": diff(enqueued, dequeued), "start_up": diff(dequeued, started), "run": diff(started, ended),
            "enqueued": enqueued, "dequeued": dequeued, "ended": ended}


def peak_in_flight(intervals: list[tuple[float, float]]) -> int:
    """Most intervals (dequeued, ended) open at one time: how many runs the queue had launched at once."""
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])  # an end before a start at a tie
    peak = current = 0
    for _, step in points:
        current += step
        peak = max(peak, current)
    return peak


def _alert_outcome(h: DaemonHarness, run_id: str) -> str | None:
    """What the alert run's materialization says it did: sent / skipped / failed / already handled."""
    from dagster import DagsterEventType

    for record in h.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        value = record.asset_materialization.metadata.get("outcome") if record.asset_materialization else None
        if value is not None:
            return getattr(value, "value", value)
    return None


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2),
            "max": round(max(values), 2)}


# ----------------------------------------------------------------------------- the scenario


def run_daemon_load(h: DaemonHarness, *, alerts: int, nightly: bool = True,
                    deadline_s: float | None = None) -> LoadResult:
    """The nightly queued and ``alerts`` declines emitted at one moment; every promise checked (see module).

    ``nightly=False``: the declines alone (a burst of failures at any other time of day).
    """
    from dagster import DagsterRunStatus

    if alerts < 1:
        raise ValueError("alerts must be >= 1")
    available = fresh_customers(h.standin, h.account, exclude=h.used_customers)
    if available < alerts:
        raise HarnessError(f"the account has {available} customers with a subscription to fail a payment on, "
                           f"{alerts} alerts asked for: generate more customers")
    deadline_s = deadline_s or default_deadline_s(alerts)
    if nightly:
        h.open_workspace()  # loaded before the moment, so launching the nightly is one submit
    before = {r.run_id for r in h.instance.get_runs()}
    baseline = len(h.sink.accepted)

    moment = time.time()
    nightly_run_id = h.launch_run(NIGHTLY_JOB, tags={LAUNCHED_BY_TAG: "daemon_load"}) if nightly else None
    failures = []
    for _ in range(alerts):
        event_id, created = h.fail_a_payment()
        invoice = h.standin.get("events", event_id)["data"]["object"]
        failures.append(Failure(event_id, created, invoice["id"], invoice["customer"]))
    emitted = time.time()
    result = LoadResult(alerts=alerts, failures=failures, nightly_run_id=nightly_run_id)
    problems = result.problems

    # The sensor's rule (core.alert_rule) must yield exactly these alerts: an invoice's own charge.failed none.
    alert_keys = set(h.alerting_event_ids(int(moment)))
    expected_keys = {f.event_id for f in failures}
    if alert_keys != expected_keys:
        problems.append(f"alerting events {sorted(alert_keys ^ expected_keys)[:5]} differ from the emitted "
                        f"invoice.payment_failed events ({len(alert_keys)} vs {len(expected_keys)})")
    runs = wait_for_all_runs(h, before, expected_keys, nightly_run_id, deadline_s)
    all_done = time.time()

    # -- runs: all succeeded, none retried, one per alert
    for run in runs:
        if run.status != DagsterRunStatus.SUCCESS:
            errors = "\n    ".join(h.run_errors(run.run_id)[:4])
            problems.append(f"run {run.run_id} ({run.job_name}, run_key {run.tags.get('dagster/run_key')}) "
                            f"{run.status.value}:\n    {errors}")
    retries = _retry_count(runs)
    if retries:
        problems.append(f"{retries} run(s) were retries of failed runs")
    alert_runs = [r for r in runs if r.job_name == ALERT_JOB]
    per_key = Counter(r.tags.get("dagster/run_key") for r in alert_runs)
    extra = {k: n for k, n in per_key.items() if k not in expected_keys or n > 1}
    if extra:
        problems.append(f"alert runs other than one per emitted failure: {extra}")
    others = Counter(r.job_name for r in runs if r.job_name not in (ALERT_JOB, NIGHTLY_JOB))
    nightly_runs = [r for r in runs if r.job_name == NIGHTLY_JOB]
    if others or len(nightly_runs) != (1 if nightly else 0):
        problems.append(f"unexpected runs: {dict(others)}, nightly runs {[r.run_id for r in nightly_runs]}")

    # -- Segment: each Payment Failed once, the delinquent identify kept
    def tracks_of(messages, invoice_id):
        return [m for m in messages if m.get("type") == "track" and m.get("event") == PAYMENT_FAILED
                and (m.get("properties") or {}).get("invoice_id") == invoice_id]

    h.sink.wait_for(lambda: all(tracks_of(h.sink.accepted[baseline:], f.invoice_id) for f in failures), timeout=30)
    since = list(h.sink.accepted[baseline:])
    twice = {mid: n for mid, n in Counter(m["messageId"] for m in since).items() if n > 1}
    if twice:
        problems.append(f"messageIds delivered more than once: {dict(list(twice.items())[:5])}")
    latencies, last_received = [], []
    for f in failures:
        tracks = tracks_of(since, f.invoice_id)
        ids = {m["messageId"] for m in tracks}
        if len(tracks) != 1 or len(ids) != 1:
            problems.append(f"Payment Failed for {f.invoice_id} (event {f.event_id}): {len(tracks)} message(s), "
                            f"{len(ids)} messageId(s), expected exactly one")
        if not tracks:
            continue
        latencies.append(received_at(tracks[0]) - f.created)
        last_received.append(received_at(tracks[-1]))
        who = identity_of(tracks[0])
        delinquent = [(m.get("traits") or {})["payment_delinquent"] for m in since
                      if m.get("type") == "identify" and identity_of(m) == who
                      and "payment_delinquent" in (m.get("traits") or {})]
        paid = (h.standin.get("invoices", f.invoice_id) or {}).get("status") == "paid"
        if True not in delinquent:
            problems.append(f"no identify with payment_delinquent=true for {f.customer_id} ({who})")
        elif delinquent[-1] != (not paid):
            problems.append(f"{f.customer_id}: payment_delinquent sequence {delinquent} ends "
                            f"{delinquent[-1]} (invoice {'paid' if paid else 'unpaid'}): undone")
    failure_tracks = [m for m in since if m.get("type") == "track" and m.get("event") == PAYMENT_FAILED]
    if len(failure_tracks) != alerts:
        problems.append(f"{len(failure_tracks)} Payment Failed messages for {alerts} failures")

    # -- pools and queue: nothing left behind
    storage = h.instance.event_log_storage
    pools = {}
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        pools[pool] = {"limit": info.limit, "claimed": len(info.claimed_slots), "pending": len(info.pending_steps)}
        if info.claimed_slots or info.pending_steps:
            problems.append(f"pool {pool} not free after every run ended: claimed by "
                            f"{[s.run_id for s in info.claimed_slots]}, pending {[s.run_id for s in info.pending_steps]}")
    if not pools:
        problems.append("no pool was ever claimed: the runs did not go through the pools")

    # -- figures
    stages = {r.run_id: _stage_seconds(h, r.run_id) for r in runs}
    night = stages.get(nightly_run_id, {})
    alert_waits = [stages[r.run_id]["queue_wait"] for r in alert_runs if stages[r.run_id]["queue_wait"] is not None]
    nightly_record = h.instance.get_run_record_by_id(nightly_run_id) if nightly_run_id else None
    outcomes = Counter(_alert_outcome(h, r.run_id) for r in alert_runs)
    result.figures = {
        "alerts": alerts,
        "runs": len(runs),
        "runs_by_status": dict(Counter(f"{r.job_name}:{r.status.value}" for r in runs)),
        "retries": retries,
        "emit_seconds": round(emitted - moment, 2),
        "seconds_to_all_runs_done": round(all_done - moment, 1),
        "seconds_to_last_alert": round(max(last_received) - moment, 1) if last_received else None,
        "alert_latency": _summary(latencies),
        "alert_outcomes": dict(outcomes),
        "nightly_seconds": round(nightly_record.end_time - nightly_record.start_time, 1)
        if nightly_record and nightly_record.end_time and nightly_record.start_time else None,
        "nightly_queue_wait": night.get("queue_wait"),
        "nightly_done_after": round(night["ended"] - moment, 1) if night.get("ended") else None,
        "alert_queue_wait": _summary(alert_waits),
        "alert_run_seconds": _summary([s["run"] for k, s in stages.items() if k != nightly_run_id and s["run"]]),
        # alert runs launched and not yet ended at one time: the run queue launching alerts side by side
        "alert_runs_in_flight_peak": peak_in_flight([(stages[r.run_id]["dequeued"], stages[r.run_id]["ended"])
                                                     for r in alert_runs
                                                     if stages[r.run_id]["dequeued"] and stages[r.run_id]["ended"]]),
        "pools": pools,
    }
    return result


__all__ = ["Failure", "LoadResult", "default_deadline_s", "percentile", "run_daemon_load", "wait_for_all_runs"]
