"""Rows of a table by key into pandas, through Arrow on PostgreSQL: the profile pass's reads.

A night's profile pass reads the queued customers' traits, identities and pushed state (at 1M
customers, 18,885 rows of up to 36 columns from each table). Through psycopg2 each value became a
Python object and ``DataFrame.from_records`` looked at each again: about 0.75 s of the client for
0.57 s of the server. Here, on PostgreSQL, one ADBC connection reads the rows of every chunk of
keys as binary ``COPY`` into Arrow buffers (``arrow_reads.ArrowReads``, one read-only snapshot),
and ``records_frame`` turns them into the frame ``read_frame`` (``from_records`` with
``coerce_float=True``) makes of the same rows, dtype for dtype, so the diff cannot tell the paths
apart (``store/test_keyed_reads.py`` compares them).

SQLite, and PostgreSQL with ``S2S_ARROW_READS=0``, read through the SQLAlchemy connection
as before, ``SQLITE_CHUNK`` keys per statement (SQLite's bound-parameter limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd
import pyarrow as pa
from sqlalchemy import Engine, Table, column, false, literal_column, select, table

from s2s_pipeline.store.arrow_reads import ArrowReads, arrow_reads_enabled
from s2s_pipeline.store.frames import _in_keys
from s2s_pipeline.store.statements import chunks, read_frame

#: Keys per statement through ADBC (the keys are inlined; 20,000 ids are about 0.3 MB of SQL).
ARROW_CHUNK = 20_000
#: Keys per statement through SQLAlchemy (bound parameters: SQLite allows 32,766 per statement).
SQLITE_CHUNK = 2_000


@dataclass(frozen=True)
class KeyedRead:
    """The ``columns`` (None: every column, ``*``) of the rows of ``table_name`` whose ``key`` is one of
    ``keys`` (each key once; rows of absent keys are simply missing; no keys, or no rows: an empty
    frame with those columns)."""

    table_name: str
    key: str
    keys: Iterable[str]
    columns: Sequence[str] | None = None

    @classmethod
    def of(cls, schema_table: Table, key: str, keys: Iterable[str]) -> "KeyedRead":
        """Every column of a table the schema describes, in its order, of the rows of ``keys``."""
        return cls(schema_table.name, key, keys, [c.name for c in schema_table.columns])


def read_keyed(engine: Engine, reads: Sequence[KeyedRead]) -> list[pd.DataFrame]:
    """Each read's frame, all of them in one snapshot on one connection (on
    PostgreSQL one ADBC connection: opening one costs some 30-50 ms, a read of a night's rows about as much)."""
    if engine.dialect.name == "postgresql" and arrow_reads_enabled():
        with ArrowReads.open(engine) as reader:
            return [_read_arrow(reader, read) for read in reads]
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # the cursor path on Postgres: one snapshot too
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        elif len(reads) > 1:
            conn.exec_driver_sql("BEGIN")  # SQLite: its snapshot from the first read to the last
        return [_read_cursor(conn, read) for read in reads]


def _statement(read: KeyedRead):
    source = table(read.table_name, *(column(n) for n in {read.key, *(read.columns or ())}))
    everything = (select(*(source.c[n] for n in read.columns)) if read.columns else
                  select(literal_column("*")).select_from(source))
    return everything, source.c[read.key]


def _read_arrow(reader: ArrowReads, read: KeyedRead) -> pd.DataFrame:
    everything, key = _statement(read)
    ids = sorted({str(k) for k in read.keys})
    parts = [reader.arrow(everything.where(_in_keys(key, list(chunk)))) for chunk in chunks(ids, ARROW_CHUNK)]
    if not parts:
        parts = [reader.arrow(everything.where(false()))]
    return records_frame(pa.concat_tables(parts) if len(parts) > 1 else parts[0])


def _read_cursor(conn, read: KeyedRead) -> pd.DataFrame:
    everything, key = _statement(read)
    ids = sorted({str(k) for k in read.keys})
    frames = [read_frame(conn, everything.where(key.in_(list(chunk)))) for chunk in chunks(ids, SQLITE_CHUNK)]
    if not frames:
        return read_frame(conn, everything.where(false()))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def records_frame(rows: pa.Table) -> pd.DataFrame:
    """The Arrow table as the frame ``DataFrame.from_records(rows, coerce_float=True)`` makes of the same
    rows as DB-API tuples (integers, floats, text, booleans; no JSON): pyarrow's own conversion is that
    (integers with a null become float64, booleans with a null object, text pandas' string dtype)
    except where a column has no value at all, which ``from_records`` keeps as ``object`` holding
    None, and for no rows, where every column is ``object``."""
    names = rows.column_names
    if rows.num_rows == 0:
        return pd.DataFrame.from_records([], columns=names)
    frame = rows.to_pandas()
    for name in names:
        if rows.column(name).null_count == rows.num_rows:
            frame[name] = pd.Series([None] * rows.num_rows, dtype=object)
    return frame
