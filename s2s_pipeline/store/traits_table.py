"""The computed customer trait table in the state store (``customer_traits``).

Replaced as a whole on every computation, atomically: readers (the diff
against pushed traits, the UI's checks) see the old table or the new one,
never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import pandas as pd
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from s2s_pipeline.store.arrow_copy import copy_frame

TABLE = "customer_traits"
_STAGING_PREFIX = "customer_traits_staging_"
#: pg_advisory_xact_lock key serialising the swap of the trait table (migrations use 0x5325_0001).
SWAP_LOCK_KEY = 0x5325_0002


def _null(value):
    """None for each of pandas' nulls (None, NaN, pd.NA), the value otherwise."""
    return None if value is None or value is pd.NA or (isinstance(value, float) and value != value) else value


def sqlite_executemany(table, conn, keys, data_iter) -> int:
    """pandas ``to_sql`` method for SQLite: one ``executemany`` of plain tuples on the DB-API cursor.

    pandas' default method goes through SQLAlchemy, which processes every parameter of every row
    in Python (most of the time of storing a 100k-customer trait table); sqlite3 binds tuples in C.
    """
    rows = [tuple(_null(v) for v in row) for row in data_iter]
    columns = ", ".join(f'"{k}"' for k in keys)
    marks = ", ".join("?" for _ in keys)
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(f'INSERT INTO "{table.name}" ({columns}) VALUES ({marks})', rows)
    finally:
        cursor.close()
    return len(rows)


def write_rows(conn, name: str, frame: pd.DataFrame, if_exists: str) -> None:
    """``frame`` (as ``_storable`` gives it) into the trait table or a staging table ``name``, in ``conn``'s
    transaction: pandas makes (``if_exists="fail"``) or checks the table with its SQL types; the rows go
    in by COPY of Arrow's CSV on Postgres, by one ``executemany`` on SQLite."""
    if conn.dialect.name == "postgresql":
        frame.head(0).to_sql(name, conn, index=False, if_exists=if_exists)
        copy_frame(conn, name, frame)
        return
    method = sqlite_executemany if conn.dialect.name == "sqlite" else None
    frame.to_sql(name, conn, index=False, if_exists=if_exists, chunksize=20_000, method=method)


def staging_name(refresh_id: str) -> str:
    """The staging table of a refresh: a SQL-safe name derived from its id (a Dagster run id, any text)."""
    return f"{_STAGING_PREFIX}{hashlib.sha256(refresh_id.encode()).hexdigest()[:32]}"


def _check_staging_name(name: str) -> None:
    # Table names are spliced into DDL: only the names this module makes are accepted.
    if not re.fullmatch(rf"{_STAGING_PREFIX}[0-9a-f]{{32}}", name):
        raise ValueError(f"not a trait staging table name: {name!r}")


def _storable(traits: pd.DataFrame) -> pd.DataFrame:
    """Columns as SQL can hold them: dict/list cells as JSON text."""
    out = traits.copy()
    for column in out.columns:
        # infer_dtype scans in C: a column of text and nulls (every trait of the contract) is passed over
        if out[column].dtype != object or pd.api.types.infer_dtype(out[column], skipna=True) in ("string", "empty"):
            continue
        if out[column].map(lambda v: isinstance(v, (dict, list))).any():
            out[column] = out[column].map(lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
    return out


class TraitsTable:
    """The ``customer_traits`` table: the last computed traits, one row per Stripe customer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, traits: pd.DataFrame) -> None:
        """Replace ``customer_traits`` with ``traits`` in one transaction.

        Each write stages into a table of its own name, so two steps replacing the table at once
        (two ``customer_traits`` runs) never drop or collide with each other's staging table: the
        last to commit wins, whole. The swap (``swap_in``) is serialised. On SQLite the staging
        table's ``CREATE`` commits on its own (pysqlite opens its transaction at the first INSERT),
        so a failed write drops it here.
        """
        staging = f"{_STAGING_PREFIX}{uuid.uuid4().hex}"
        try:
            with self.engine.begin() as conn:
                self._to_sql(_storable(traits), staging, conn, if_exists="fail")
                self.swap_in(staging, conn)
        except BaseException:
            self._drop_staging(staging)
            raise

    # -- staging tables of a refresh whose shards are written by separate steps ------------------

    def create_staging(self, name: str, template: pd.DataFrame) -> None:
        """An empty table ``name`` with the columns and SQL types of ``template`` (a trait table; its rows
        are ignored), replacing a table of that name. ``compute_customer_traits`` gives every column
        the same dtype whatever the rows, so every shard's rows fit the table."""
        _check_staging_name(name)
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
            _storable(template.head(0)).to_sql(name, conn, index=False)

    def append_staging(self, name: str, traits: pd.DataFrame, conn) -> None:
        """Add rows to a staging table, in ``conn``'s transaction (COPY on Postgres)."""
        _check_staging_name(name)
        if len(traits):
            self._to_sql(_storable(traits), name, conn, if_exists="append")

    def swap_in(self, staging: str, conn) -> None:
        """Make the staging table ``customer_traits``, in ``conn``'s transaction (readers see the old table or
        the new one). Serialised: on Postgres by a transaction-level advisory lock (two renames to a name
        that neither transaction yet sees would otherwise collide), on SQLite by its single writer (on
        SQLite, run a DML statement in the transaction first: pysqlite begins transactions at DML)."""
        _check_staging_name(staging)
        if self.engine.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(SWAP_LOCK_KEY)))
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(text(f"ALTER TABLE {staging} RENAME TO {TABLE}"))
        if self.engine.dialect.name in ("postgresql", "sqlite"):
            conn.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS ux_{TABLE}_customer ON {TABLE} "
                              "(stripe_customer_id)"))

    def drop_staging(self, name: str, conn) -> None:
        """Remove a staging table (in ``conn``'s transaction), if it exists."""
        _check_staging_name(name)
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))

    def _to_sql(self, frame: pd.DataFrame, name: str, conn, if_exists: str) -> None:
        write_rows(conn, name, frame, if_exists)

    def _drop_staging(self, staging: str) -> None:
        """Best effort: the write's own error is the one to report, not a failed cleanup's."""
        try:
            with self.engine.begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {staging}"))
        except SQLAlchemyError:
            pass

    def read(self) -> pd.DataFrame:
        """The last computed trait table (empty if never computed)."""
        if not inspect(self.engine).has_table(TABLE):
            return pd.DataFrame()
        with self.engine.connect() as conn:
            return pd.read_sql(text(f"SELECT * FROM {TABLE}"), conn)

    # -- one customer (export and purge) ----------------------------------------------------------

    def row_for(self, customer_id: str) -> dict | None:
        """The customer's computed traits (None if the table or the row is missing)."""
        if not inspect(self.engine).has_table(TABLE):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(text(f"SELECT * FROM {TABLE} WHERE stripe_customer_id = :cid"),
                               {"cid": customer_id}).mappings().first()
        return dict(row) if row else None

    def delete_customer(self, customer_id: str, conn) -> int:
        """Remove the customer's row (in ``conn``'s transaction); the next computation leaves it out
        if the customer is deleted in Stripe."""
        if not inspect(conn).has_table(TABLE):
            return 0
        return conn.execute(text(f"DELETE FROM {TABLE} WHERE stripe_customer_id = :cid"),
                            {"cid": customer_id}).rowcount or 0
