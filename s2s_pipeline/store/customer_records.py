"""Everything the state store holds about one Stripe customer: read it all (an access request) or purge
the personal part of it (a deletion).

A purge keeps what is needed to prove and keep the deletion (the Stripe id,
the regulation record, the ids of the calls sent and their trait/property
names in the audit, the track calls' dedupe keys) and removes the rest:

- the mirror's customer row loses email, name, metadata and its raw payload;
- every raw mirror payload and every ledger payload that mentions the
  customer's id (its invoices carry ``customer_email``, its charges
  ``billing_details``) is blanked, and its ledger events still waiting to be
  sent are closed as skipped;
- its identity (userId), its pushed traits and its computed trait row are deleted.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, Text, cast, delete, select, update

from s2s_pipeline.store import schema
from s2s_pipeline.store.ledger import AWAITING_STATUSES
from s2s_pipeline.store.privacy_schema import regulations
from s2s_pipeline.store.traits_table import TraitsTable

#: Mirror tables whose rows point at a customer through a ``customer`` column.
_OWNED_BY_CUSTOMER = {"subscriptions": schema.subscriptions, "invoices": schema.invoices,
                      "charges": schema.charges, "discounts": schema.discounts}
#: ... and through the customer's charges.
_OWNED_BY_CHARGE = {"refunds": schema.refunds, "disputes": schema.disputes}


def _mentions(column, customer_id: str):
    """A JSON column whose text contains the customer id (portable: SQLite and PostgreSQL)."""
    return cast(column, Text).contains(customer_id, autoescape=True)


def _plain(row) -> dict:
    return {k: v for k, v in dict(row).items() if k != "raw"}


class CustomerRecords:
    """One customer's data across the store's tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._traits = TraitsTable(engine)

    # -- access -----------------------------------------------------------------------------------

    def export(self, customer_id: str) -> dict | None:
        """What the store holds about the customer, by table (raw payloads reported as kept or not,
        not reproduced); None when the store knows nothing of it."""
        c = schema.customers
        with self.engine.connect() as conn:
            customer = conn.execute(select(c).where(c.c.id == customer_id)).mappings().first()
            identity = conn.execute(select(schema.identity_map).where(
                schema.identity_map.c.stripe_customer_id == customer_id)).mappings().first()
            pushed = conn.execute(select(schema.pushed_traits).where(
                schema.pushed_traits.c.stripe_customer_id == customer_id)).mappings().first()
            regulation = conn.execute(select(regulations).where(
                regulations.c.stripe_customer_id == customer_id)).mappings().first()
            related = self._related_rows(conn, customer_id)
            object_ids = [customer_id] + [r["id"] for rows in related.values() for r in rows]
            events = self._events_about(conn, object_ids)
            sent = conn.execute(select(schema.track_sent).where(
                schema.track_sent.c.stripe_customer_id == customer_id).order_by(schema.track_sent.c.sent_at)
            ).mappings().all()
        traits = self._traits.row_for(customer_id)
        if not any((customer, identity, pushed, regulation, sent)):
            return None
        return {
            "stripe_customer_id": customer_id,
            "customer": None if customer is None else {**_plain(customer),
                                                       "raw_payload_kept": customer["raw"] is not None},
            "related_objects": {name: [{**_plain(r), "raw_payload_kept": r.get("raw") is not None} for r in rows]
                                for name, rows in related.items()},
            "segment_identity": None if identity is None else dict(identity),
            "pushed_traits": None if pushed is None else dict(pushed),
            "computed_traits": traits,
            "stripe_events": events,
            "track_calls_sent": [dict(r) for r in sent],
            "regulation": None if regulation is None else {k: v for k, v in dict(regulation).items()
                                                           if k != "subject_id"},
        }

    def _related_rows(self, conn: Connection, customer_id: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for name, table in _OWNED_BY_CUSTOMER.items():
            out[name] = [dict(r) for r in conn.execute(
                select(table).where(table.c.customer == customer_id).order_by(table.c.id)).mappings()]
        charge_ids = [r["id"] for r in out["charges"]]
        for name, table in _OWNED_BY_CHARGE.items():
            out[name] = [dict(r) for r in conn.execute(
                select(table).where(table.c.charge.in_(charge_ids)).order_by(table.c.id)).mappings()] \
                if charge_ids else []
        return out

    def _events_about(self, conn: Connection, object_ids: list[str]) -> list[dict]:
        e = schema.stripe_events
        rows = conn.execute(select(e.c.id, e.c.type, e.c.created, e.c.object_type, e.c.object_id, e.c.track_status,
                                   e.c.payload.is_not(None).label("payload_kept"))
                            .where(e.c.object_id.in_(object_ids)).order_by(e.c.created, e.c.id)).mappings()
        return [dict(r) for r in rows]

    # -- deletion ---------------------------------------------------------------------------------

    def purge(self, customer_id: str, conn: Connection) -> dict[str, int]:
        """Remove the customer's personal data (see the module docstring), in ``conn``'s transaction."""
        out: dict[str, int] = {}
        c = schema.customers
        out["customer_scrubbed"] = conn.execute(update(c).where(c.c.id == customer_id).values(
            email=None, name=None, metadata=None, raw=None)).rowcount or 0
        raws = 0
        for table in schema.MIRROR_TABLES.values():
            raws += conn.execute(update(table).where(table.c.raw.is_not(None), _mentions(table.c.raw, customer_id))
                                 .values(raw=None)).rowcount or 0
        out["raw_payloads_dropped"] = raws
        e = schema.stripe_events
        mentioned = _mentions(e.c.payload, customer_id)
        out["events_closed"] = conn.execute(update(e).where(
            e.c.payload.is_not(None), mentioned, e.c.track_status.in_(AWAITING_STATUSES)).values(
            track_status="skipped", track_detail="customer deleted (privacy)")).rowcount or 0
        out["event_payloads_dropped"] = conn.execute(update(e).where(e.c.payload.is_not(None), mentioned)
                                                     .values(payload=None)).rowcount or 0
        q = schema.quarantine
        # A set-aside object keeps a sanitised copy of its payload: the customer's, or one naming it.
        out["quarantine_payloads_dropped"] = conn.execute(update(q).where(
            q.c.payload.is_not(None), (q.c.object_id == customer_id) | _mentions(q.c.payload, customer_id))
            .values(payload=None)).rowcount or 0
        out["identity_deleted"] = conn.execute(delete(schema.identity_map).where(
            schema.identity_map.c.stripe_customer_id == customer_id)).rowcount or 0
        out["pushed_traits_deleted"] = conn.execute(delete(schema.pushed_traits).where(
            schema.pushed_traits.c.stripe_customer_id == customer_id)).rowcount or 0
        out["computed_traits_deleted"] = self._traits.delete_customer(customer_id, conn)
        return out

    def rescrub_forgotten(self, conn: Connection) -> int:
        """Blank email, name, metadata and raw again on purged customers' mirror rows: a customer forgotten
        on request but not deleted in Stripe comes back with the next change of it the mirror applies."""
        c = schema.customers
        purged = select(regulations.c.stripe_customer_id).where(regulations.c.purged_at.is_not(None))
        return conn.execute(update(c).where(
            c.c.id.in_(purged), (c.c.email.is_not(None)) | (c.c.name.is_not(None)) | (c.c.metadata.is_not(None))
            | (c.c.raw.is_not(None))).values(email=None, name=None, metadata=None, raw=None)).rowcount or 0
