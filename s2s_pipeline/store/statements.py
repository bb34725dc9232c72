"""Dialect-aware statement helpers shared by the store's repositories (SQLite and PostgreSQL).

Private to ``s2s_pipeline.store``: code outside the store asks a repository
for what it needs by name instead of building statements.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import JSON, Connection, Table, Text, bindparam, cast, column, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

#: Rows per executemany: keeps statements below SQLite's variable limit and Postgres' packet sizes.
CHUNK = 500
#: Rows per statement on Postgres, where a statement carries one array per column instead of a
#: parameter per value: a batch of acknowledged calls or a page of Stripe objects is one statement.
POSTGRES_CHUNK = 5_000


def chunks(seq: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def commit_without_waiting_for_disk(conn: Connection) -> None:
    """This transaction's commit returns without waiting for the WAL to reach the disk (PostgreSQL's
    ``SET LOCAL synchronous_commit = off``; nothing on SQLite, whose WAL mode already commits so).

    For the bookkeeping of batches Segment acknowledged only: the server may lose the last such
    commits if the machine itself fails (a process killed loses nothing; never half a transaction,
    and any later ordinary commit on the server makes them durable first, the WAL being one
    sequence). What is lost is then what a run killed before recording loses: the batches are sent
    again under the same messageIds, which Segment deduplicates. Where a commit's flush is slow (about
    12 ms on one 2-core host; 0.3 ms on another), waiting for it was most of the bookkeeping's wait
    for the 34 batches of a night at 1M customers.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


def read_frame(conn: Connection, stmt, params: dict | None = None) -> pd.DataFrame:
    """``pd.read_sql(stmt, conn, params=params)``, the same frame, faster on PostgreSQL.

    ``pd.read_sql`` fetches SQLAlchemy rows and gives them to ``DataFrame.from_records(coerce_float=True)``;
    on PostgreSQL this gives that call psycopg2's rows straight from the cursor, without a SQLAlchemy
    row object per row (18,885 pushed-state rows of 36 columns: 0.34-0.39 -> 0.25-0.27 s). For the
    tables the profile pass reads (text, integers, floats, booleans), SQLAlchemy returns the driver's
    values unchanged, so the frames are equal (``store/test_statements.py`` compares them).
    """
    if conn.dialect.name != "postgresql":
        return pd.read_sql(stmt, conn, params=params)
    result = conn.execute(stmt, params or {})
    try:
        columns = list(result.keys())
        rows = result.cursor.fetchall()
    finally:
        result.close()
    return pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)


def id_range(column, lo: str | None, hi: str | None) -> list:
    """Conditions ``lo <= column < hi`` (None: that side unbounded), for ``select(...).where(*...)``."""
    return [c for c in (column >= lo if lo is not None else None, column < hi if hi is not None else None)
            if c is not None]


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

    On SQLite (and any other dialect), an executemany that SQLAlchemy sends as one multi-VALUES
    statement per page of ``size`` rows ("insertmanyvalues", which it does for ``INSERT ... ON CONFLICT``
    only when the statement has RETURNING). On Postgres, ``INSERT ... SELECT unnest(%(c0)s), ...``: one
    array parameter per column for up to ``POSTGRES_CHUNK`` rows, so neither SQLAlchemy nor psycopg2
    handles a parameter per value (per-value parameter handling was most of the cost of recording an
    acknowledged batch of 500 identify calls). The rows of one statement must not share a key
    (Postgres refuses an ``ON CONFLICT DO UPDATE`` that affects a row twice): rows repeating a key go
    to later statements, in order, so the last row of a key wins as row by row. Rows are written in
    the order given (the mirror relies on it for its lock order; ``unnest`` yields array order).
    """
    if not rows:
        return []
    columns = (key,) if isinstance(key, str) else tuple(key)
    table = stmt.table
    if not stmt._returning:  # noqa: SLF001 - whether .returning() was called; SQLAlchemy has no public flag
        stmt = stmt.returning(*(table.c[c] for c in columns))
    single = len(stmt._returning) == 1  # noqa: SLF001
    columnwise = conn.dialect.name == "postgresql"
    out: list = []
    for chunk in chunks(rows, POSTGRES_CHUNK if columnwise else size):
        for part in _rounds(chunk, columns):
            if columnwise:
                result = conn.execute(*(_records(conn, stmt, table, part) or _unnest(conn, stmt, table, part)))
            else:
                result = conn.execute(stmt, list(part))
            out.extend(result.scalars().all() if single else result.tuples().all())
    return out


def _records(conn: Connection, stmt: Insert, table: Table, rows: Sequence[dict]) -> tuple[Insert, dict] | None:
    """``stmt`` as ``INSERT ... SELECT ... FROM json_to_recordset(document)`` of ``rows`` (same columns), and
    its one parameter: the rows as one JSON array of objects; None when a value is not plain JSON (a
    float that is not finite, a date: ``_unnest`` writes those).

    Why: psycopg2 adapts an array parameter value by value (an adapter object and a quoted literal
    each), which was most of the client's time in recording an acknowledged batch (500 identify calls
    of 30 columns: 15,000 values) and in the mirror's upserts; ``json.dumps`` encodes the whole batch
    in C, and the server parses one document instead of one array literal per column (500 rows of 31
    columns, 20 batches: 0.89-0.97 s with ``unnest``, 0.31 s with this; docs/performance.md).

    Each record column has its table column's type, so the server converts each value as an insert
    of it would (a text too long for ``VARCHAR(255)``, a NUL, a lone surrogate are refused the same
    way, as ``DataError``). A JSON column whose None is SQL NULL (``none_as_null``) takes its values
    nested in the document as they are (a JSON null there is SQL NULL; a Stripe payload is encoded
    once, not once by the column and again as a string of the document); a JSON column whose None is
    JSON null has its values serialised by the column type's own bind processor, carried as text and
    cast back to JSON, as ``_unnest`` does. Rows come out in array order.
    """
    names = list(rows[0])
    serialisers: dict[str, Callable | None] = {}
    record_columns = []
    for name in names:
        column_type = table.c[name].type
        if isinstance(column_type, JSON) and not column_type.none_as_null:
            serialisers[name] = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
            record_columns.append(column(name, Text))
        else:
            record_columns.append(column(name, column_type))
    if serialisers:
        rows = [{**row, **{n: (f(row[n]) if f else row[n]) for n, f in serialisers.items()}} for row in rows]
    try:
        document = json.dumps(rows, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)
    except (TypeError, ValueError):
        return None
    records = (func.json_to_recordset(cast(bindparam("records", type_=Text), postgresql.JSON))
               .table_valued(*record_columns).render_derived(with_types=True))
    selected = [cast(records.c[n], table.c[n].type).label(n) if n in serialisers else records.c[n] for n in names]
    return stmt.from_select(names, select(*selected)), {"records": document}


def _plain(value):
    """A NumPy scalar (rows built from frames carry them) as the Python value it holds; anything else
    is not plain JSON (``json.dumps`` then raises TypeError and ``_unnest`` writes the rows)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def _unnest(conn: Connection, stmt: Insert, table: Table, rows: Sequence[dict]) -> tuple[Insert, dict]:
    """``stmt`` as ``INSERT ... SELECT unnest(array), ...`` of ``rows`` (same columns), and its parameters.

    Each array is bound with its column's type (``%(c0)s::BIGINT[]``), so an all-NULL column is typed as
    the table says. A JSON column's values are serialised first, by the column type's own bind
    processor (so None is JSON null or SQL NULL as the column says), and sent as a text array cast
    back to JSON element by element: bound as a JSON array, a list value would become a dimension of
    the array rather than one JSON document.
    """
    names = list(rows[0])
    params: dict[str, list] = {}
    selected = []
    for i, name in enumerate(names):
        column_type = table.c[name].type
        values = [row[name] for row in rows]
        if isinstance(column_type, JSON):
            serialise = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
            params[f"c{i}"] = [serialise(v) for v in values] if serialise else values
            selected.append(cast(func.unnest(bindparam(f"c{i}", type_=postgresql.ARRAY(Text))), column_type)
                            .label(name))
        else:
            params[f"c{i}"] = values
            selected.append(func.unnest(bindparam(f"c{i}", type_=postgresql.ARRAY(column_type))).label(name))
    return stmt.from_select(names, select(*selected)), params


def upsert_by_key(conn: Connection, dialect: str, table: Table, rows: list[dict], key: str) -> None:
    """Insert rows, or update the columns each row carries where ``key`` already exists."""
    for keys, group in group_by_shape(rows).items():
        stmt = insert_for(dialect, table)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c[key]],
                                          set_={k: stmt.excluded[k] for k in keys if k != key})
        insert_rows(conn, stmt, group, key)


def insert_all(conn: Connection, dialect: str, table: Table, rows: list[dict], key: str) -> None:
    """Insert rows (plain INSERTs: a stored ``key`` is an error), each statement exactly the columns its rows carry."""
    for group in group_by_shape(rows).values():
        insert_rows(conn, insert_for(dialect, table), group, key)


def insert_ignoring_existing(conn: Connection, dialect: str, table: Table, rows: list[dict], key: str) -> None:
    """Insert rows whose ``key`` is not stored yet; existing rows are left as they are."""
    stmt = insert_for(dialect, table).on_conflict_do_nothing(index_elements=[table.c[key]])
    for group in group_by_shape(rows).values():
        insert_rows(conn, stmt, group, key)
