"""Dialect-aware statement helpers shared by the store's repositories (SQLite and PostgreSQL).

Private to ``s2s_pipeline.store``: code outside the store asks a repository
for what it needs by name instead of building statements.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

#: Rows per executemany: keeps statements below SQLite's variable limit and Postgres' packet sizes.
CHUNK = 500


def chunks(seq: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def insert_for(dialect: str, table: Table):
    """An INSERT that supports ``on_conflict_do_update`` / ``on_conflict_do_nothing`` on this dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"state store dialect {dialect!r} is not supported (use SQLite or PostgreSQL)")


def group_by_shape(rows: Iterable[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by their sorted keys, so each statement writes exactly the columns its rows carry."""
    by_shape: dict[tuple, list[dict]] = {}
    for row in rows:
        by_shape.setdefault(tuple(sorted(row)), []).append(row)
    return by_shape


def upsert_by_key(conn: Connection, dialect: str, table: Table, rows: list[dict], key: str) -> None:
    """Insert rows, or update the columns each row carries where ``key`` already exists."""
    for keys, group in group_by_shape(rows).items():
        stmt = insert_for(dialect, table)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c[key]],
                                          set_={k: stmt.excluded[k] for k in keys if k != key})
        for chunk in chunks(group):
            conn.execute(stmt, list(chunk))


def insert_ignoring_existing(conn: Connection, dialect: str, table: Table, rows: list[dict], key: str) -> None:
    """Insert rows whose ``key`` is not stored yet; existing rows are left as they are."""
    stmt = insert_for(dialect, table).on_conflict_do_nothing(index_elements=[table.c[key]])
    for chunk in chunks(rows):
        conn.execute(stmt, list(chunk))
