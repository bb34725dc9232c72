"""Which failed payments the sensor launches an alert run for this tick, whichever path found them (plain Python).

Two paths find a failed payment: the webhook inbox (seconds after Stripe
sends it) and the Events API poll (the safety net for a webhook that never
came). Each event gets one run: an id launched by either path is
remembered (``launched``: id -> event created) for as long as Stripe keeps
retrying webhooks, so the other path finding it later launches nothing.
Past that memory Dagster's run-key dedupe (run key = event id) and the
ledger's once-per-event send still hold.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How long a launched event id is remembered: Stripe retries a webhook for up to three days.
LAUNCHED_MEMORY_S = 3 * 86400
#: At most this many ids are remembered (the newest), which bounds the sensor's cursor.
LAUNCHED_MAX = 5000

WEBHOOK, EVENTS_API = "webhook", "events_api"


@dataclass(frozen=True)
class AlertRequest:
    """One alert run to launch: the Stripe event, and which path found it first."""

    event_id: str
    event_type: str
    created: int
    found_by: str  # WEBHOOK or EVENTS_API


def alerts_to_launch(launched: dict[str, int], by_webhook: list[dict], by_poll: list[dict], *,
                     now: int) -> tuple[list[AlertRequest], dict[str, int]]:
    """The runs to request (webhook finds first, then the poll's, each event once) and the new ``launched`` map."""
    memory = dict(launched)
    out: list[AlertRequest] = []
    for found_by, events in ((WEBHOOK, by_webhook), (EVENTS_API, by_poll)):
        for event in events:
            if event["id"] in memory:
                continue
            created = int(event.get("created") or now)
            memory[event["id"]] = created
            out.append(AlertRequest(event["id"], str(event.get("type")), created, found_by))
    kept = sorted(((t, i) for i, t in memory.items() if t >= now - LAUNCHED_MEMORY_S), reverse=True)[:LAUNCHED_MAX]
    return out, {i: t for t, i in kept}
