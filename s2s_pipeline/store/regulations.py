"""Segment regulations per Stripe customer (``segment_regulations``): the deletion path's record.

A row exists for every customer the deletion path took on (deleted in
Stripe, or named in a ``forget`` request). Its existence alone stops every
further Segment call about the customer; its ``state`` says where the
regulation stands, and ``purged_at`` when the personal data left the store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from s2s_pipeline.store import schema
from s2s_pipeline.store.privacy_schema import regulations as table
from s2s_pipeline.store.statements import chunks, insert_ignoring_existing

AWAITING_FILING = "awaiting_filing"
FILED = "filed"
NOT_REGULATED = "not_regulated"

#: Segment statuses after which a regulation changes no more (FINISHED is the good one).
TERMINAL_SEGMENT_STATUSES = frozenset({"FINISHED", "FAILED", "INVALID", "NOT_SUPPORTED", "PARTIAL_SUCCESS"})


@dataclass(frozen=True)
class PendingFiling:
    """A customer whose regulation is still to be sent to Segment."""

    stripe_customer_id: str
    subject_id: str
    regulation_type: str
    subject_type: str


class Regulations:
    """The deletion path's record, one row per customer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- who is new -------------------------------------------------------------------------------

    def unhandled_deleted_customers(self) -> list[str]:
        """Customers flagged deleted in the mirror that the deletion path has not taken on yet."""
        c = schema.customers
        query = select(c.c.id).where(c.c.deleted.is_(True), c.c.id.not_in(select(table.c.stripe_customer_id))
                                     ).order_by(c.c.id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def request(self, rows: list[dict]) -> None:
        """Take customers on (``stripe_customer_id``, ``reason``, ``state``, ``requested_at`` and, to be
        filed, ``subject_id``/``regulation_type``/``subject_type``); a customer already taken on keeps its row."""
        if not rows:
            return
        with self.engine.begin() as conn:
            insert_ignoring_existing(conn, self.engine.dialect.name, table, rows, "stripe_customer_id")

    # -- filing -----------------------------------------------------------------------------------

    def awaiting_filing(self, customer_ids: Iterable[str] | None = None) -> list[PendingFiling]:
        """Regulations still to be filed (oldest request first), only ``customer_ids`` when given."""
        query = select(table.c.stripe_customer_id, table.c.subject_id, table.c.regulation_type,
                       table.c.subject_type).where(table.c.state == AWAITING_FILING).order_by(
            table.c.requested_at, table.c.stripe_customer_id)
        if customer_ids is not None:
            query = query.where(table.c.stripe_customer_id.in_(list(customer_ids)))
        with self.engine.connect() as conn:
            return [PendingFiling(*row) for row in conn.execute(query)]

    def record_filed(self, customer_ids: list[str], regulate_id: str, now: int) -> None:
        """Segment accepted the regulation ``regulate_id`` for these customers: the userId is no longer kept."""
        with self.engine.begin() as conn:
            for chunk in chunks(customer_ids):
                conn.execute(update(table).where(table.c.stripe_customer_id.in_(chunk)).values(
                    state=FILED, regulate_id=regulate_id, segment_status="INITIALIZED", subject_id=None,
                    filed_at=now, status_checked_at=now, detail=None,
                    filing_attempts=table.c.filing_attempts + 1))

    def record_filing_failed(self, customer_ids: list[str], detail: str) -> None:
        """Filing failed (after its retries); the next pass tries again."""
        with self.engine.begin() as conn:
            for chunk in chunks(customer_ids):
                conn.execute(update(table).where(table.c.stripe_customer_id.in_(chunk)).values(
                    detail=detail, filing_attempts=table.c.filing_attempts + 1))

    # -- status -----------------------------------------------------------------------------------

    def to_refresh(self) -> list[str]:
        """Distinct regulation ids Segment has not finished with yet."""
        query = select(table.c.regulate_id).distinct().where(
            table.c.state == FILED, table.c.regulate_id.is_not(None),
            or_(table.c.segment_status.is_(None), table.c.segment_status.not_in(TERMINAL_SEGMENT_STATUSES)))
        with self.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def record_status(self, regulate_id: str, status: str, now: int) -> None:
        """Segment's current status of a regulation (every customer it covers)."""
        values: dict = {"segment_status": status, "status_checked_at": now}
        if status in TERMINAL_SEGMENT_STATUSES:
            values["finished_at"] = now
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.regulate_id == regulate_id).values(**values))

    # -- purge ------------------------------------------------------------------------------------

    def awaiting_purge(self, customer_ids: Iterable[str] | None = None) -> list[str]:
        """Customers filed or not to be regulated whose personal data is still to be purged."""
        query = select(table.c.stripe_customer_id).where(
            table.c.state.in_((FILED, NOT_REGULATED)), table.c.purged_at.is_(None)).order_by(
            table.c.stripe_customer_id)
        if customer_ids is not None:
            query = query.where(table.c.stripe_customer_id.in_(list(customer_ids)))
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def mark_purged(self, customer_id: str, now: int, conn: Connection) -> None:
        conn.execute(update(table).where(table.c.stripe_customer_id == customer_id).values(
            purged_at=now, subject_id=None))

    # -- questions --------------------------------------------------------------------------------

    def customer_ids(self) -> set[str]:
        """Every customer the deletion path took on (no Segment call is sent about them)."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(table.c.stripe_customer_id)).scalars())

    def purged_customer_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(table.c.stripe_customer_id).where(table.c.purged_at.is_not(None))
                                    ).scalars())

    def record_for(self, customer_id: str) -> dict | None:
        """The customer's row (``subject_id`` left out: it is the userId, needed only to file)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.stripe_customer_id == customer_id)).mappings().first()
        if row is None:
            return None
        return {k: v for k, v in dict(row).items() if k != "subject_id"}

    def summary(self) -> dict[str, int]:
        """Counts by standing: ``awaiting_filing``, ``pending`` (filed, Segment not finished), ``finished``,
        ``failed`` (Segment ended without finishing), ``not_regulated``, ``purged``."""
        out: Counter = Counter()
        query = select(table.c.state, table.c.segment_status, table.c.purged_at.is_not(None).label("purged"),
                       func.count().label("n")).group_by(table.c.state, table.c.segment_status,
                                                         table.c.purged_at.is_not(None))
        with self.engine.connect() as conn:
            for state, status, purged, n in conn.execute(query):
                if state == FILED:
                    kind = "finished" if status == "FINISHED" else (
                        "failed" if status in TERMINAL_SEGMENT_STATUSES else "pending")
                else:
                    kind = state
                out[kind] += n
                if purged:
                    out["purged"] += n
        return {k: int(out.get(k, 0)) for k in
                (AWAITING_FILING, "pending", "finished", "failed", NOT_REGULATED, "purged")}

    def stuck(self, requested_before: int) -> list[dict]:
        """Regulations requested before ``requested_before`` that Segment has not finished (awaiting
        filing, still running, or ended without finishing): id, state, Segment status, regulation id."""
        query = select(table.c.stripe_customer_id, table.c.state, table.c.segment_status, table.c.regulate_id,
                       table.c.requested_at).where(
            table.c.requested_at < requested_before, table.c.state != NOT_REGULATED,
            or_(table.c.state == AWAITING_FILING,
                and_(table.c.state == FILED, or_(table.c.segment_status.is_(None),
                                                 table.c.segment_status != "FINISHED")))
        ).order_by(table.c.requested_at)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]
