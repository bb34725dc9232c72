"""Bulk reads of the mirror into pandas: one snapshot per read, through Arrow on PostgreSQL.

``frame_reads(engine)`` opens what the frame reads of ``store.frames`` run on
and yields a reader whose ``read(stmt, columns)`` returns one query's rows as
a DataFrame. Every query of one ``frame_reads`` block sees the same snapshot
of the database (a writer committing between the customers query and the
charges query is seen by neither), and the frames' values and dtypes do not
depend on which path read them (``store.arrow_frames`` states the rules).

- **PostgreSQL**: one ADBC connection (``adbc_driver_postgresql``, which reads
  a query's result as binary ``COPY`` straight into Arrow buffers, no Python
  object per value), every query inside one ``BEGIN ISOLATION LEVEL
  REPEATABLE READ READ ONLY`` transaction, fetched as an Arrow table and
  converted to pandas by ``arrow_frames.frame_from_arrow``. ``S2S_ARROW_READS=0``
  in the environment forces the cursor path instead (docs/operations.md).
- **SQLite, and the cursor path on PostgreSQL**: one pooled SQLAlchemy
  connection, rows through the DB-API cursor (``CursorReads``); on
  PostgreSQL the transaction is REPEATABLE READ READ ONLY too, on SQLite an
  explicit deferred ``BEGIN`` (its snapshot is taken at the first read and
  held to the end of the block).

SQLite never goes through ADBC: ADBC's SQLite driver links its own copy of
the SQLite library, and two SQLite libraries in one process undo each
other's POSIX advisory locks on the same file (closing a descriptor drops
every lock the process holds on it), which can corrupt the database while
Python's ``sqlite3`` has it open. ``ArrowReads`` refuses any dialect but
PostgreSQL, and ``frame_reads`` only chooses it there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from contextlib import ExitStack, contextmanager
from typing import Iterator
from urllib.parse import quote, quote_plus

import numpy as np
import pandas as pd
from sqlalchemy import JSON, Boolean, Engine, Integer

log = logging.getLogger(__name__)

#: Environment switch: "0" (or false/no/off) reads through the DB-API cursor on PostgreSQL too.
ARROW_READS_ENV = "S2S_ARROW_READS"


#: The random-page cost the keyed reads of a few customers plan with, at most (PostgreSQL only).
#: Postgres' default of 4 models a spinning disk: there, reading the 190,000 charges of 18,885 changed
#: customers out of 10M through the (customer, version_ts) index costs more than reading every charge,
#: so the planner scans the whole table (1.96 s) where the index takes 0.23 s (docs/performance.md).
#: 1.1 is the usual figure for SSDs and for a store the server's cache holds. A lower configured
#: value is kept; the setting lasts only for the read's own transaction (``SET LOCAL``).
KEYED_READ_RANDOM_PAGE_COST = 1.1
_FAVOUR_INDEX_SCANS = (f"SELECT set_config('random_page_cost', '{KEYED_READ_RANDOM_PAGE_COST}', true)"
                       f" WHERE current_setting('random_page_cost')::float8 > {KEYED_READ_RANDOM_PAGE_COST}")


#: What ``pg_export_snapshot`` returns (hex words and a counter, e.g. ``00000003-0000001B-1``); checked
#: before it is inlined into ``SET TRANSACTION SNAPSHOT``.
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


class FrameReadError(RuntimeError):
    """A read through ADBC failed; the message names the store without its password."""


def arrow_reads_enabled() -> bool:
    """Whether PostgreSQL frame reads go through ADBC and Arrow (``S2S_ARROW_READS``, default on)."""
    return os.environ.get(ARROW_READS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def frame_read_pair(engine: Engine) -> Iterator[tuple["CursorReads | ArrowReads", "CursorReads | ArrowReads"]]:
    """Two readers of one snapshot, for two groups of frame reads run at once (on two threads).

    Through ADBC on PostgreSQL: the second reader is a second connection whose transaction imports
    the first one's snapshot (``pg_export_snapshot`` / ``SET TRANSACTION SNAPSHOT``), so both see
    exactly the same database; the drivers wait for the server and build Arrow buffers without
    holding the GIL, so the two reads overlap. Elsewhere (SQLite, the cursor path) both are the
    one reader of ``frame_reads``: the caller then reads one group after the other on it. So is a
    second connection that cannot be opened (a server at ``max_connections``, a pooler refusing
    it): the reads are the same, one after the other, and a warning says why.
    """
    with frame_reads(engine) as first:
        if not isinstance(first, ArrowReads):
            yield first, first
            return
        snapshot = first.export_snapshot()
        with ExitStack() as stack:
            try:
                second = stack.enter_context(ArrowReads.open(engine, snapshot=snapshot))
            except FrameReadError as exc:  # names the store without its password
                log.warning("frame reads on one connection, one table after another: %s", exc)
                second = first
            yield first, second


@contextmanager
def frame_reads(engine: Engine) -> Iterator["CursorReads | ArrowReads"]:
    """A reader for the frame reads of one block, all of them in one read-only snapshot (module docstring)."""
    # PostgreSQL only: SQLite through ADBC corrupts the file (module docstring); keep this test on the dialect.
    if engine.dialect.name == "postgresql" and arrow_reads_enabled():
        with ArrowReads.open(engine) as reader:
            yield reader
        return
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        reader = CursorReads(conn)
        reader.begin()
        yield reader


def _literal_sql(stmt, dialect) -> str:
    """The statement's SQL with its values inlined (ids and bounds: no user text reaches these queries)."""
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


class CursorReads:
    """Frame reads on one SQLAlchemy connection, rows straight from the DB-API cursor.

    About 40% faster than ``pd.read_sql`` on a million charges (it skips
    SQLAlchemy's Row objects); the few conversions SQLAlchemy would have done
    are done here per column: JSON text (SQLite) to objects, 0/1 to booleans,
    and integer columns holding NULL to pandas ``Int64`` (``from_records``
    would make them float64, which rounds integers above 2**53).
    """

    path = "cursor"

    def __init__(self, conn) -> None:
        self.conn = conn

    def begin(self) -> None:
        """Start the block's snapshot: PostgreSQL begins REPEATABLE READ READ ONLY at the first query
        (the connection's execution options); SQLite needs an explicit deferred BEGIN, as Python's
        sqlite3 opens no transaction for a SELECT."""
        if self.conn.dialect.name == "sqlite":
            self.conn.exec_driver_sql("BEGIN")

    def favour_index_scans(self) -> None:
        """Plan the rest of this snapshot's reads for few keys (``KEYED_READ_RANDOM_PAGE_COST``); no-op on SQLite."""
        if self.conn.dialect.name == "postgresql":
            self.setting_rows(_FAVOUR_INDEX_SCANS)

    def setting_rows(self, sql: str) -> list[tuple]:
        """The rows of a small query (settings, not frames) in this snapshot, as tuples."""
        return [tuple(row) for row in self.conn.exec_driver_sql(sql).all()]

    def read(self, stmt, columns) -> pd.DataFrame:
        """The rows of ``stmt`` (selecting exactly ``columns``, SQLAlchemy columns) as a DataFrame."""
        cursor = self.conn.connection.cursor()
        try:
            cursor.execute(_literal_sql(stmt, self.conn.dialect))
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return frame_from_rows(rows, columns)


def frame_from_rows(rows: list[tuple], columns) -> pd.DataFrame:
    """DB-API rows (one value per column of ``columns``) as a DataFrame, with ``CursorReads``' conversions."""
    frame = pd.DataFrame.from_records(rows, columns=[c.name for c in columns], coerce_float=False)
    for i, column in enumerate(columns):
        values = frame[column.name]
        if isinstance(column.type, JSON) and values.map(lambda v: isinstance(v, str)).any():
            frame[column.name] = values.map(lambda v: json.loads(v) if isinstance(v, str) else v)
        elif isinstance(column.type, Boolean) and len(values) and values.dtype != bool:
            frame[column.name] = values.map(lambda v: None if v is None else bool(v)).astype(object)
        elif isinstance(column.type, Integer) and len(values) and values.dtype != np.int64:
            # from_records made ints with None float64 (or object when all None): rebuild from the row values.
            frame[column.name] = pd.array([row[i] for row in rows], dtype="Int64")
    return frame


def libpq_uri(url) -> str:
    """A SQLAlchemy PostgreSQL URL as the libpq connection URI ADBC takes: no ``+driver`` part, the user
    and password percent-encoded in full (SQLAlchemy leaves spaces and more as they are, and libpq's
    complaint about them would quote the password back)."""
    url = url.set(drivername="postgresql")
    token = uuid.uuid4().hex
    plain = url.set(username=token + "u" if url.username else None,
                    password=token + "p" if url.password else None).render_as_string(hide_password=False)
    if url.username:
        plain = plain.replace(token + "u", quote(url.username, safe=""), 1)
    if url.password:
        plain = plain.replace(token + "p", quote(url.password, safe=""), 1)
    return plain


class ArrowReads:
    """Frame reads on one ADBC PostgreSQL connection in one REPEATABLE READ READ ONLY transaction."""

    path = "arrow"

    def __init__(self, connection, dialect, safe_url: str) -> None:
        self._connection = connection
        self._dialect = dialect
        self._safe_url = safe_url
        self._secret = None

    @classmethod
    @contextmanager
    def open(cls, engine: Engine, snapshot: str | None = None) -> Iterator["ArrowReads"]:
        """A reader in a transaction of its own, or (``snapshot``, from ``export_snapshot`` of a reader
        still open) in that reader's snapshot."""
        if snapshot is not None and not _SNAPSHOT_ID.fullmatch(snapshot):
            raise ValueError(f"not a PostgreSQL snapshot id: {snapshot!r}")
        if engine.dialect.name != "postgresql":
            # Never SQLite: two SQLite libraries in one process corrupt the file (module docstring).
            raise ValueError(f"ADBC reads are for PostgreSQL only, not {engine.dialect.name}")
        import adbc_driver_postgresql.dbapi as adbc_pg

        url = engine.url.set(drivername="postgresql")
        reader = cls(None, engine.dialect, url.render_as_string(hide_password=True))
        reader._secret = url.password
        try:
            reader._connection = adbc_pg.connect(libpq_uri(engine.url), autocommit=True)
        except Exception as exc:  # noqa: BLE001 - any driver error, reported without the password
            raise reader._error("connecting", exc) from None
        try:
            reader._execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if snapshot is not None:
                reader._execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            yield reader
            reader._execute("COMMIT")
        finally:
            reader._connection.close()

    def read(self, stmt, columns) -> pd.DataFrame:
        """The rows of ``stmt`` (selecting exactly ``columns``, SQLAlchemy columns) as a DataFrame."""
        from s2s_pipeline.store.arrow_frames import frame_from_arrow

        return frame_from_arrow(self.arrow(stmt), columns)

    def arrow(self, stmt):
        """The rows of ``stmt`` as the Arrow table the driver fetched (``pyarrow.Table``)."""
        return self._run(_literal_sql(stmt, self._dialect), "reading", lambda cursor: cursor.fetch_arrow_table())

    def favour_index_scans(self) -> None:
        """Plan the rest of this snapshot's reads for few keys (``KEYED_READ_RANDOM_PAGE_COST``)."""
        self.setting_rows(_FAVOUR_INDEX_SCANS)

    def export_snapshot(self) -> str:
        """This transaction's snapshot, for another reader to import while this one is open."""
        return str(self.setting_rows("SELECT pg_export_snapshot()")[0][0])

    def setting_rows(self, sql: str) -> list[tuple]:
        """The rows of a small query (settings, not frames) in this snapshot, as tuples."""
        # fetched in full: the driver runs a query as its result is read
        return self._run(sql, "reading a setting", lambda cursor: [tuple(row) for row in cursor.fetchall()])

    def _execute(self, sql: str) -> None:
        self._run(sql, sql)

    def _run(self, sql: str, doing: str, fetch=None):
        """``sql`` on a cursor of its own, then ``fetch(cursor)`` (None: nothing is fetched); any driver
        error raised as a ``FrameReadError`` saying what was being done, without the password."""
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(sql)
                return fetch(cursor) if fetch is not None else None
        except Exception as exc:  # noqa: BLE001 - any driver error, reported without the password
            raise self._error(doing, exc) from None

    def _error(self, doing: str, exc: Exception) -> FrameReadError:
        message = f"{type(exc).__name__}: {exc}"
        if self._secret:  # as given, and as it is spelled inside a URL
            for spelling in {self._secret, quote_plus(self._secret), quote(self._secret, safe="")}:
                message = message.replace(spelling, "***")
        return FrameReadError(f"ADBC read from the state store at {self._safe_url} failed ({doing}): {message}"
                              f" (S2S_ARROW_READS=0 reads through psycopg2 instead)")
