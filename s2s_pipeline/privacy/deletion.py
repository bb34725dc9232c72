"""The deletion path: a customer deleted in Stripe (or forgotten on request) leaves Segment and the store.

1. **Take on**: every customer the mirror flags deleted (``customer.deleted``
   through the change feed, or gone from a backfill re-list) gets a
   regulation record. From then on no Segment call is sent about it
   (``StateStore.suppressed_customer_ids``).
2. **File**: with a Public API token, customers with a userId are regulated
   through ``POST /regulations``, at most 5,000 userIds per regulation, one
   regulation per customer. A filing that fails (after the client's retries)
   stays ``awaiting_filing`` and is tried again by the next pass.
   Customers known only by ``anonymousId`` (the Stripe customer id) cannot
   be regulated by id; without a token nothing is filed. Both are recorded
   ``not_regulated`` with the reason.
3. **Refresh**: Segment's status of every unfinished regulation is read
   again (``GET /regulations/{id}``).
4. **Purge**: once filed (or at once when not regulated) the customer's
   pushed traits, identity and personal data leave the state store
   (``StateStore.forget_customer``); the Stripe id and the regulation record remain.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from s2s_pipeline.privacy.public_api import MAX_SUBJECT_IDS, PublicApiError, RegulationsClient
from s2s_pipeline.privacy.settings import PrivacySettings
from s2s_pipeline.store.regulations import AWAITING_FILING, NOT_REGULATED
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.traits.config import TraitsConfig

log = logging.getLogger(__name__)

DELETED_IN_STRIPE = "deleted_in_stripe"
FORGET_REQUEST = "forget_request"
ANONYMOUS_ONLY = "only an anonymousId (the Stripe customer id): Segment regulates users by userId"
NO_TOKEN = "SEGMENT_PUBLIC_API_TOKEN is not set: no regulation filed"


class UnknownCustomer(LookupError):
    """The state store knows nothing about this Stripe customer id."""


@dataclass
class DeletionOutcome:
    """What one pass of the deletion path did (counts of customers, unless named otherwise)."""

    taken_on: int = 0
    filed: int = 0
    regulations_filed: int = 0  # POST /regulations calls Segment accepted
    still_awaiting_filing: int = 0
    statuses_refreshed: int = 0  # regulations whose status was read
    purged: int = 0
    errors: list[str] = field(default_factory=list)

    def metadata(self) -> dict:
        return {"customers_taken_on": self.taken_on, "customers_filed": self.filed,
                "regulations_filed": self.regulations_filed, "still_awaiting_filing": self.still_awaiting_filing,
                "statuses_refreshed": self.statuses_refreshed, "customers_purged": self.purged,
                "errors": len(self.errors)}


def client_for(settings: PrivacySettings, **kwargs) -> RegulationsClient | None:
    """The Public API client, or None without a token (nothing is filed, customers are purged at once)."""
    if not settings.token:
        return None
    return RegulationsClient(settings.token, settings.host, **kwargs)


def subject_ids(store: StateStore, customer_ids: list[str], identity_keys: tuple[str, ...]) -> dict[str, str | None]:
    """Per customer, the Segment userId its calls used: the stored identity, else the metadata keys
    (a customer deleted before its first identify); None when it was only ever anonymous."""
    if not customer_ids:
        return {}
    out: dict[str, str | None] = {cid: None for cid in customer_ids}
    stored = store.identities.read_for(customer_ids)
    for row in stored.itertuples(index=False):
        if isinstance(row.user_id, str) and row.user_id:
            out[row.stripe_customer_id] = row.user_id
    missing = [cid for cid, user_id in out.items() if user_id is None]
    for cid, contact in store.mirror.customer_contacts(missing).items():
        metadata = contact.get("metadata") or {}
        out[cid] = next((str(metadata[k]) for k in identity_keys if metadata.get(k)), None)
    return out


def take_on(store: StateStore, customer_ids: Iterable[str], reason: str, settings: PrivacySettings, now: int,
            identity_keys: tuple[str, ...] = TraitsConfig().identity_metadata_keys) -> int:
    """Give each customer its regulation record (a customer already taken on keeps its own); returns how
    many were new. From now on no Segment call is sent about them."""
    ids = sorted(set(customer_ids) - store.regulations.customer_ids())
    subjects = subject_ids(store, ids, identity_keys)
    rows = []
    for cid in ids:
        row = {"stripe_customer_id": cid, "reason": reason, "requested_at": now, "filing_attempts": 0}
        if subjects[cid] is None:
            row.update(state=NOT_REGULATED, detail=ANONYMOUS_ONLY)
        elif not settings.token:
            row.update(state=NOT_REGULATED, detail=NO_TOKEN)
        else:
            row.update(state=AWAITING_FILING, subject_id=subjects[cid], subject_type="USER_ID",
                       regulation_type=settings.regulation_type)
        rows.append(row)
    store.regulations.request(rows)
    return len(rows)


def file_pending(store: StateStore, client: RegulationsClient, now: int, outcome: DeletionOutcome,
                 customer_ids: list[str] | None = None, batch_size: int = MAX_SUBJECT_IDS) -> None:
    """File every regulation awaiting filing, grouped by type, at most ``batch_size`` userIds per call."""
    by_type: dict[tuple[str, str], list] = defaultdict(list)
    for pending in store.regulations.awaiting_filing(customer_ids):
        by_type[(pending.regulation_type, pending.subject_type)].append(pending)
    for (regulation_type, subject_type), pendings in sorted(by_type.items()):
        for start in range(0, len(pendings), batch_size):
            batch = pendings[start:start + batch_size]
            customers = [p.stripe_customer_id for p in batch]
            # Two customers can share a userId; Segment wants each subject once.
            subjects = sorted({p.subject_id for p in batch})
            try:
                regulate_id = client.file(regulation_type, subjects, subject_type)
            except PublicApiError as exc:
                store.regulations.record_filing_failed(customers, str(exc))
                outcome.errors.append(str(exc))
                outcome.still_awaiting_filing += len(customers)
                log.warning("filing a %s regulation for %d customers failed: %s", regulation_type,
                            len(customers), exc)
                continue
            store.regulations.record_filed(customers, regulate_id, now)
            outcome.filed += len(customers)
            outcome.regulations_filed += 1


def refresh_statuses(store: StateStore, client: RegulationsClient, now: int, outcome: DeletionOutcome) -> None:
    """Read Segment's status of every regulation it has not finished with."""
    for regulate_id in store.regulations.to_refresh():
        try:
            status = client.status(regulate_id)
        except PublicApiError as exc:
            outcome.errors.append(str(exc))
            log.warning("reading the status of regulation %s failed: %s", regulate_id, exc)
            continue
        store.regulations.record_status(regulate_id, status.status, now)
        outcome.statuses_refreshed += 1


def purge_handled(store: StateStore, now: int, outcome: DeletionOutcome,
                  customer_ids: list[str] | None = None) -> None:
    for cid in store.regulations.awaiting_purge(customer_ids):
        store.forget_customer(cid, now)
        outcome.purged += 1


def run_deletion_path(store: StateStore, settings: PrivacySettings, client: RegulationsClient | None, *, now: int,
                      identity_keys: tuple[str, ...] = TraitsConfig().identity_metadata_keys,
                      batch_size: int = MAX_SUBJECT_IDS) -> DeletionOutcome:
    """One pass over every customer deleted in Stripe: take on, file, refresh, purge (the module docstring)."""
    outcome = DeletionOutcome()
    outcome.taken_on = take_on(store, store.regulations.unhandled_deleted_customers(), DELETED_IN_STRIPE,
                               settings, now, identity_keys)
    if client is not None:
        file_pending(store, client, now, outcome, batch_size=batch_size)
        refresh_statuses(store, client, now, outcome)
    else:
        outcome.still_awaiting_filing = len(store.regulations.awaiting_filing())
    purge_handled(store, now, outcome)
    return outcome


def forget(store: StateStore, customer_id: str, settings: PrivacySettings, client: RegulationsClient | None, *,
           now: int, identity_keys: tuple[str, ...] = TraitsConfig().identity_metadata_keys) -> DeletionOutcome:
    """The deletion path for one customer named from outside Stripe (a data-subject request).

    Raises ``UnknownCustomer`` when the store knows nothing about it.
    """
    if store.customer_records.export(customer_id) is None:
        raise UnknownCustomer(customer_id)
    outcome = DeletionOutcome()
    outcome.taken_on = take_on(store, [customer_id], FORGET_REQUEST, settings, now, identity_keys)
    if client is not None:
        file_pending(store, client, now, outcome, customer_ids=[customer_id])
    else:
        outcome.still_awaiting_filing = len(store.regulations.awaiting_filing([customer_id]))
    purge_handled(store, now, outcome, customer_ids=[customer_id])
    return outcome
