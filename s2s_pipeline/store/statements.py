"""Dialect-aware statement helpers shared by the store's repositories (SQLite and PostgreSQL).

Private to ``s2s_pipeline.store``: code outside the store asks a repository
for what it needs by name instead of building statements.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

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


def _rounds(rows: Sequence[dict], key: tuple[str, ...]) -> list[Sequence[dict]]:
    """``rows`` split so that no key occurs twice in one part, in order: the n-th row of a key goes to
    part n (so applying the parts one after another gives what applying the rows one by one gives)."""
    seen: dict[tuple, int] = {}
    parts: list[list[dict]] = []
    for row in rows:
        k = tuple(row[c] for c in key)
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(parts):
            parts.append([])
        parts[n].append(row)
    return parts if len(parts) > 1 else [rows]


def insert_rows(conn: Connection, stmt: Insert, rows: Sequence[dict], key: str | tuple[str, ...],
                size: int = CHUNK) -> list:
    """Execute ``stmt`` (an INSERT, usually ``ON CONFLICT ...``) for ``rows`` (all with the same columns), in
    multi-row statements; returns what its RETURNING gave (``RETURNING key`` when ``stmt`` has none:
    the keys the statement inserted or updated, not those ``DO NOTHING`` or a ``DO UPDATE ... WHERE``
    guard skipped; tuples for a composite key).

    SQLAlchemy sends an executemany of ``INSERT ... ON CONFLICT`` as one multi-VALUES statement per page
    ("insertmanyvalues") only when the statement has RETURNING; without it psycopg2 runs one statement
    per row. The rows of one statement must not share a key (Postgres refuses an ``ON CONFLICT DO UPDATE``
    that affects a row twice): rows repeating a key go to later statements, in order, so the last row
    of a key wins as row by row. Rows are sent in the order given (the mirror relies on it for its lock
    order).
    """
    if not rows:
        return []
    columns = (key,) if isinstance(key, str) else tuple(key)
    table = stmt.table
    if not stmt._returning:  # noqa: SLF001 - whether .returning() was called; SQLAlchemy has no public flag
        stmt = stmt.returning(*(table.c[c] for c in columns))
    single = len(stmt._returning) == 1  # noqa: SLF001
    out: list = []
    for chunk in chunks(rows, size):
        for part in _rounds(chunk, columns):
            result = conn.execute(stmt, list(part))
            out.extend(result.scalars().all() if single else result.tuples().all())
    return out


def upsert_by_key(conn: Connection, dialect: str, table: Table, rows: list[dict], key: str) -> None:
    """Insert rows, or update the columns each row carries where ``key`` already exists."""
    for keys, group in group_by_shape(rows).items():
        stmt = insert_for(dialect, table)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c[key]],
                                          set_={k: stmt.excluded[k] for k in keys if k != key})
        insert_rows(conn, stmt, group, key)


def insert_ignoring_existing(conn: Connection, dialect: str, table: Table, rows: list[dict], key: str) -> None:
    """Insert rows whose ``key`` is not stored yet; existing rows are left as they are."""
    stmt = insert_for(dialect, table).on_conflict_do_nothing(index_elements=[table.c[key]])
    for group in group_by_shape(rows).values():
        insert_rows(conn, stmt, group, key)
