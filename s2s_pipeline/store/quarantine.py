"""The quarantine: Stripe objects set aside, with the reason, so that the others are mirrored.

An object lands here when the database refuses one of its values (NUL
characters on Postgres, a lone surrogate, a value longer than its column) or
when it lacks a field the mirror needs. The change feed moves its cursor past
such an object's events (ledgered as ``quarantined``), a backfill goes on with
the rest of the page. The ``stripe_change_feed`` asset check shows what is
held; a retry (``retry_quarantined`` run config) fetches each object again by
id and takes it out when it stores. Rows are kept ``quarantine_retention_days``
after they were last seen.

Everything stored here is sanitised first (no NUL, no surrogates) and the
payload is truncated, so setting an object aside cannot itself be refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import Connection, Engine, delete, func, select, update

from s2s_pipeline.store import schema

#: Characters kept of a quarantined object's payload (enough to see what is wrong, bounded per row).
MAX_PAYLOAD_CHARS = 8000
#: Event ids kept per object (the newest).
MAX_EVENT_IDS = 50


@dataclass(frozen=True)
class QuarantineEntry:
    """An object to set aside: its Stripe type and id, why, what Stripe sent, and the events that carried it."""

    object_type: str
    object_id: str
    reason: str
    payload: Any = None
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuarantinedObject:
    """An object the quarantine holds (``payload``: the sanitised, truncated JSON text)."""

    object_type: str
    object_id: str
    event_ids: list[str] = field(default_factory=list)
    reason: str = ""
    payload: str | None = None
    first_seen: int = 0
    last_seen: int = 0
    attempts: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.object_type, self.object_id


def storable_text(value: str) -> str:
    """``value`` without what a database refuses: NUL becomes U+FFFD, a lone surrogate its escape."""
    value = value.replace("\x00", "\ufffd")
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if _has_surrogate(value) else value


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _payload_text(payload: Any) -> str | None:
    if payload is None:
        return None
    # ensure_ascii: every NUL and surrogate becomes a \\u escape, so the text always stores
    text = json.dumps(payload, ensure_ascii=True, sort_keys=True, default=str)
    return text if len(text) <= MAX_PAYLOAD_CHARS else text[: MAX_PAYLOAD_CHARS - 14] + "...(truncated)"


def _key_text(value: str, limit: int) -> str:
    return storable_text(str(value))[:limit]


class Quarantine:
    """The ``stripe_quarantine`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def set_aside(self, entries: Iterable[QuarantineEntry], now: int, conn: Connection | None = None) -> int:
        """Hold each object (again): a new one with ``attempts`` 1, a held one with its reason and payload
        replaced, one more attempt and its event ids merged. Returns how many objects were written."""
        entries = list(entries)
        if not entries:
            return 0
        if conn is None:
            with self.engine.begin() as own:
                return self.set_aside(entries, now, own)
        table = schema.quarantine
        merged: dict[tuple[str, str], dict] = {}
        for entry in entries:
            key = (_key_text(entry.object_type, 64), _key_text(entry.object_id, 255))
            row = merged.setdefault(key, {"event_ids": []})
            row["event_ids"] += [_key_text(e, 255) for e in entry.event_ids if e]
            row.update(reason=storable_text(entry.reason), payload=_payload_text(entry.payload))
        for (object_type, object_id), row in merged.items():
            where = (table.c.object_type == object_type) & (table.c.object_id == object_id)
            held = conn.execute(select(table.c.event_ids, table.c.attempts).where(where)).first()
            if held is None:
                conn.execute(table.insert().values(
                    object_type=object_type, object_id=object_id, event_ids=_newest_ids([], row["event_ids"]),
                    reason=row["reason"], payload=row["payload"], first_seen=now, last_seen=now, attempts=1))
            else:
                conn.execute(update(table).where(where).values(
                    event_ids=_newest_ids(list(held.event_ids or []), row["event_ids"]), reason=row["reason"],
                    payload=row["payload"] if row["payload"] is not None else table.c.payload,
                    last_seen=now, attempts=held.attempts + 1))
        return len(merged)

    def record_attempt(self, object_type: str, object_id: str, reason: str, now: int) -> None:
        """A retry that failed again: the new reason, one more attempt, seen now."""
        table = schema.quarantine
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.object_type == object_type, table.c.object_id == object_id)
                         .values(reason=storable_text(reason), last_seen=now, attempts=table.c.attempts + 1))

    def release(self, object_type: str, object_id: str, conn: Connection | None = None) -> bool:
        """Take an object out of the quarantine (it stored, or Stripe no longer has it)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.release(object_type, object_id, own)
        table = schema.quarantine
        return bool(conn.execute(delete(table).where(table.c.object_type == object_type,
                                                     table.c.object_id == object_id)).rowcount)

    def entries(self, limit: int | None = None) -> list[QuarantinedObject]:
        """Held objects, most recently seen first (ties by type and id)."""
        table = schema.quarantine
        query = select(table).order_by(table.c.last_seen.desc(), table.c.object_type, table.c.object_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [QuarantinedObject(r.object_type, r.object_id, list(r.event_ids or []), r.reason, r.payload,
                                      r.first_seen, r.last_seen, r.attempts) for r in conn.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(schema.quarantine)).scalar_one()

    def drop_last_seen_before(self, before: int, conn: Connection) -> int:
        """Retention: forget objects not seen (nor retried) since ``before`` (their payloads hold personal data)."""
        table = schema.quarantine
        return conn.execute(delete(table).where(table.c.last_seen < before)).rowcount or 0


def _newest_ids(held: list[str], new: list[str]) -> list[str]:
    out = list(dict.fromkeys([*held, *new]))
    return out[-MAX_EVENT_IDS:]
