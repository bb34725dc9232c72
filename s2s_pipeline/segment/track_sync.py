"""Stripe events -> Segment track calls, each Stripe fact sent once.

The event ledger (``stripe_events``) says which events still need handling
(``pending``, or ``failed`` last time); ``segment_track_sent`` says which
facts Segment already acknowledged, keyed like the messageId. Whichever job
handles an event first (the failed-payment sensor's or the nightly one) sends
it; the other finds it sent.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from s2s_pipeline.core.bulk_work import bulk_work
from s2s_pipeline.core.progress import ProgressSink
from s2s_pipeline.segment.audit import audit_rows
from s2s_pipeline.segment.context import MirrorContext
from s2s_pipeline.segment.delivery import CompletedGroups, DeliveryReport, SegmentSettings, deliver
from s2s_pipeline.segment.event_mapping import TrackCall, map_event
from s2s_pipeline.core.contract import PAYMENT_FAILED
from s2s_pipeline.core.kill_points import kill_point
from s2s_pipeline.segment.messages import Identity, Message, delinquent_identify, native, track_message
from s2s_pipeline.segment.identity import resolve_identities
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.traits.config import TraitsConfig

log = logging.getLogger(__name__)

#: Profile traits that become ``context.campaign`` on Order Completed.
CAMPAIGN_FIELDS = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "name",
                   "utm_term": "term", "utm_content": "content"}


@dataclass
class TrackOutcome:
    """What one pass did, per Stripe event and per Segment call."""

    considered: int = 0
    statuses: Counter = field(default_factory=Counter)  # event -> sent/skipped/failed counts
    sent_by_event: Counter = field(default_factory=Counter)  # track event name -> calls acknowledged
    report: DeliveryReport = field(default_factory=DeliveryReport)
    calls: list[tuple[str, TrackCall]] = field(default_factory=list)  # (stripe event id, call)

    def metadata(self) -> dict:
        return {"events_considered": self.considered, "events_sent": self.statuses["sent"],
                "events_skipped": self.statuses["skipped"], "events_failed": self.statuses["failed"],
                "track_calls_by_event": dict(self.sent_by_event), "messages_failed": len(self.report.failed)}


def _identities(store: StateStore, customer_ids: Iterable[str], config: TraitsConfig, *, profiles=None,
                now: int, record: bool = True) -> dict[str, Identity]:
    """The identity each customer's calls use, resolved exactly as for identify calls.

    Metadata keys, else the stored identity (a Profiles user id found before),
    else a Profiles look-up when configured, else anonymous. Newly resolved
    identities are stored (unless ``record`` is false: a dry run), so the next
    identify uses the same one.
    """
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    stored = store.identities.read_for(ids)
    contacts = store.mirror.customer_contacts(ids)
    emails = {cid: c["email"] for cid, c in contacts.items()}
    metadata = {cid: c["metadata"] or {} for cid, c in contacts.items()}

    def metadata_user_id(cid: str) -> str | None:
        meta = metadata.get(cid, {})
        return next((str(meta[k]) for k in config.identity_metadata_keys if meta.get(k)), None)

    frame = pd.DataFrame({"stripe_customer_id": ids, "email": [emails.get(cid) for cid in ids],
                          "user_id": [metadata_user_id(cid) for cid in ids]})
    resolved = resolve_identities(frame, stored, now=now,
                                  lookup=profiles.user_id_for_email if profiles is not None else None)
    if record:
        store.identities.record_resolved(resolved, now)
    return {rec.stripe_customer_id: Identity(native(rec.user_id), native(rec.anonymous_id),
                                              emails.get(rec.stripe_customer_id))
            for rec in resolved.itertuples(index=False)}


def _attribution(profiles, identity: Identity) -> tuple[dict, str | None]:
    """(context.campaign, the profile's anonymous id) for Order Completed; empty when unknown."""
    if profiles is None:
        return {}, None
    try:
        if identity.user_id:
            traits = profiles.latest_traits(user_id=identity.user_id)
            anonymous = profiles.first_external_id("user_id", identity.user_id, "anonymous_id")
        elif identity.email:
            traits = profiles.latest_traits(email=identity.email)
            anonymous = profiles.first_external_id("email", identity.email, "anonymous_id")
        else:
            return {}, None
    except Exception as exc:  # noqa: BLE001 - attribution is best effort; the call goes out unenriched
        log.warning("Profiles look-up for attribution failed (%s); sending Order Completed without it",
                    type(exc).__name__)
        return {}, None
    campaign = {name: traits[key] for key, name in CAMPAIGN_FIELDS.items() if (traits or {}).get(key)}
    return campaign, anonymous


#: Why a call about a customer deleted in Stripe (or forgotten on request) is not sent.
SKIPPED_DELETED = "skipped: customer deleted (privacy)"


@bulk_work
def deliver_calls(store: StateStore, settings: SegmentSettings, calls: list[tuple[str, TrackCall]], *,
                  profiles, config: TraitsConfig, now: int, progress: ProgressSink | None = None,
                  run_id: str | None = None,
                  options: ProfileSyncOptions = ProfileSyncOptions()) -> tuple[DeliveryReport, dict[str, str]]:
    """Send track calls not yet acknowledged (plus delinquency identifies, under the allow-list and
    routing of ``options`` like every identify); record what Segment accepted (and, in the delivery
    audit, under ``run_id``). Calls about customers deleted in Stripe or forgotten are never sent.

    Returns the report and, per Stripe event id, "sent" / "skipped: <why>" / "failed: <why>".
    """
    outcome: dict[str, str] = {}
    suppressed = store.suppressed_customer_ids() if calls else set()
    for event_id, call in calls:
        if call.stripe_customer_id in suppressed:
            outcome[event_id] = SKIPPED_DELETED
    calls = [(e, c) for e, c in calls if c.stripe_customer_id not in suppressed]
    sent = store.track_state.already_sent(c.dedupe_key for _, c in calls)
    # A dry run changes no state: the identities it resolves are used for its file, not stored.
    identities = _identities(store, (c.stripe_customer_id for _, c in calls), config, profiles=profiles, now=now,
                             record=not settings.dry_run_path)
    # A failure older than the payment_delinquent Segment acknowledged (a trait computed after it,
    # e.g. once the invoice was paid) must not send true over that newer value.
    delinquent_at = store.pushed_traits.delinquent_as_of(
        c.stripe_customer_id for _, c in calls if c.event == PAYMENT_FAILED)
    messages: list[Message] = []
    by_event: dict[str, tuple[TrackCall, list[Message]]] = {}
    claimed: dict[str, str] = {}
    same_fact: dict[str, list[str]] = {}  # event sending a fact -> the other events of that fact
    for event_id, call in calls:
        if call.dedupe_key in sent:
            outcome[event_id] = f"skipped: already sent ({call.dedupe_key})"
            continue
        if call.dedupe_key in claimed:
            outcome[event_id] = f"skipped: same fact as {claimed[call.dedupe_key]}"
            same_fact.setdefault(claimed[call.dedupe_key], []).append(event_id)
            continue
        claimed[call.dedupe_key] = event_id
        identity = identities[call.stripe_customer_id]
        campaign, profile_anon = _attribution(profiles, identity) if call.needs_attribution else ({}, None)
        ms = [track_message(call, identity, campaign, profile_anon)]
        if call.event == PAYMENT_FAILED and delinquent_at.get(call.stripe_customer_id, call.timestamp) <= call.timestamp:
            delinquent = delinquent_identify(call, identity, event_id, allow_list=options.allow_list,
                                             routing=options.routing)
            if delinquent is not None:
                ms.append(delinquent)
        by_event[event_id] = (call, ms)
        messages += ms
    completion = CompletedGroups({event_id: ms for event_id, (_, ms) in by_event.items()})

    def record_batch(batch: list[Message]) -> None:
        """Bookkeeping of one acknowledged batch, as Segment acknowledges it, in one transaction: the
        Stripe events all of whose calls are now acknowledged (and the delinquency their identifies
        set), the other events of their facts (handled with them: a rerun after a crash finds them
        as a run never killed leaves them), and the audit."""
        kill_point("track.acknowledged")  # crash tests: Segment has the batch, we have not recorded it
        done = [(event_id, *by_event[event_id]) for event_id in completion.acknowledge(batch)]
        outcomes = {event_id: ("sent", None) for event_id, _, _ in done}
        outcomes.update({other: ("skipped", f"same fact as {event_id}")
                         for event_id, _, _ in done for other in same_fact.get(event_id, ())})
        store.record_acknowledged_track(_sent_rows(done, now), _delinquent_as_of(done), outcomes,
                                        audit_rows(batch, run_id, int(time.time())))

    report = deliver(messages, settings, progress=progress,
                     on_acknowledged=None if settings.dry_run_path else record_batch)
    if report.dry_run:
        return report, {**outcome, **{e: "skipped: dry run" for e in by_event}}
    # A track call acknowledged beside a delinquent identify Segment refused is sent all the same.
    partly = []
    for event_id, (call, ms) in by_event.items():
        track = ms[0]
        if track.message_id in report.failed:
            outcome[event_id] = f"failed: {report.failed[track.message_id]}"
            continue
        outcome[event_id] = "sent"
        if event_id not in completion.completed:
            partly.append((event_id, call, ms))
    store.track_state.record_sent(_sent_rows(partly, now))
    return report, outcome


def _sent_rows(events: list[tuple[str, TrackCall, list[Message]]], now: int) -> list[dict]:
    """``track_state`` rows for the track calls of these Stripe events, which Segment acknowledged."""
    return [{"dedupe_key": call.dedupe_key, "message_id": ms[0].message_id, "event": call.event,
             "stripe_customer_id": call.stripe_customer_id, "stripe_event_id": event_id, "sent_at": now}
            for event_id, call, ms in events]


def _delinquent_as_of(events: list[tuple[str, TrackCall, list[Message]]]) -> dict[str, int]:
    """Per customer, the Stripe time of its latest failure whose delinquent identify Segment acknowledged
    with these events: Segment has payment_delinquent = true as of then, so the nightly diff sends
    false (only) from a trait table computed after it."""
    latest: dict[str, int] = {}
    for _, call, ms in events:
        if len(ms) > 1:  # the track call and its delinquent identify
            latest[call.stripe_customer_id] = max(call.timestamp, latest.get(call.stripe_customer_id, call.timestamp))
    return latest


@bulk_work
def send_track_events(store: StateStore, settings: SegmentSettings, *, reader=None, profiles=None,
                      config: TraitsConfig = TraitsConfig(), now: int, event_ids: list[str] | None = None,
                      limit: int | None = None, progress: ProgressSink | None = None,
                      run_id: str | None = None, options: ProfileSyncOptions = ProfileSyncOptions()) -> TrackOutcome:
    """Handle ledgered Stripe events still pending (or failed before): map, send, record outcomes
    (``run_id``, the Dagster run, goes into the delivery audit). ``options`` (the ``segment``
    resource's) carry the trait allow-list and routing the delinquency identify follows."""
    rows = store.ledger.awaiting_track(event_ids=event_ids, limit=limit)
    result = TrackOutcome(considered=len(rows))
    ctx = MirrorContext(store.mirror, reader, config, now)
    status: dict[str, str] = {}
    for row in rows:
        try:
            call = map_event(row.payload or {}, ctx, config)
        except Exception as exc:  # noqa: BLE001 - one odd payload must not stop the others
            log.warning("Stripe event %s (%s) could not be mapped: %s", row.id, row.type, type(exc).__name__)
            status[row.id] = f"failed: could not be mapped ({type(exc).__name__})"
            continue
        if call is None:
            status[row.id] = f"skipped: no track event for {row.type}"
        else:
            result.calls.append((row.id, call))
    report, delivered = deliver_calls(store, settings, result.calls, profiles=profiles, config=config, now=now,
                                      progress=progress, run_id=run_id, options=options)
    status.update(delivered)
    result.report = report
    for event_id, call in result.calls:
        if status.get(event_id) == "sent":
            result.sent_by_event[call.event] += 1
    if not report.dry_run:
        outcomes = {}
        for event_id, text in status.items():
            kind, _, detail = text.partition(": ")
            outcomes[event_id] = (kind, detail or None)
        store.ledger.record_track_outcomes(outcomes)
    result.statuses = Counter(text.partition(":")[0] for text in status.values())
    return result


def history_calls(store: StateStore, gte: int, lt: int, ctx: MirrorContext,
                  config: TraitsConfig) -> list[tuple[str, TrackCall]]:
    """Track calls for payments in [gte, lt) built from the mirror (charges, refunds, disputes).

    Each object is wrapped as the event Stripe sent for it; the dedupe keys
    (and so the messageIds) are the ones the live path uses.
    """
    out: list[tuple[str, TrackCall]] = []
    specs = (("charge", lambda r: "charge.succeeded" if r["status"] == "succeeded"
              else "charge.failed" if r["status"] == "failed" else None),
             ("refund", lambda r: "refund.created"),
             ("dispute", lambda r: "charge.dispute.created"))
    for object_type, event_type in specs:
        for row in store.mirror.rows_created_between(object_type, gte, lt):
            kind = event_type(row)
            if kind is None:
                continue
            # The raw snapshot when retention kept it, else the typed columns (all the mapping reads).
            obj = row["raw"] or {k: v for k, v in row.items() if k not in ("raw", "version_ts", "deleted")} | {
                "object": object_type}
            event = {"id": f"history:{row['id']}", "object": "event", "type": kind, "created": row["created"],
                     "data": {"object": obj}}
            call = map_event(event, ctx, config)
            if call is not None:
                out.append((event["id"], call))
    return out


def events_frame(outcome: TrackOutcome) -> pd.DataFrame:
    """The calls of a pass as a small table (ids and event names only), for metadata."""
    return pd.DataFrame([{"stripe_event_id": e, "event": c.event, "stripe_customer_id": c.stripe_customer_id}
                         for e, c in outcome.calls])
