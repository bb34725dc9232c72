"""The computed customer trait table in the state store (``customer_traits``).

Replaced as a whole on every computation, atomically: readers (the diff
against pushed traits, the UI's checks) see the old table or the new one,
never a half-written one.
"""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
from sqlalchemy import Engine, inspect, text

TABLE = "customer_traits"
_STAGING = "customer_traits_staging"


def postgres_copy(table, conn, keys, data_iter) -> int:
    """pandas ``to_sql`` method: COPY FROM STDIN, about 10x faster than INSERTs on Postgres
    (public for bulk loads such as the benchmarks' synthetic mirrors)."""
    dbapi_conn = conn.connection
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    count = 0
    for row in data_iter:
        writer.writerow(["\\N" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v for v in row])
        count += 1
    buffer.seek(0)
    columns = ", ".join(f'"{k}"' for k in keys)
    with dbapi_conn.cursor() as cur:
        cur.copy_expert(f'COPY "{table.name}" ({columns}) FROM STDIN WITH (FORMAT csv, NULL \'\\N\')', buffer)
    return count


def _storable(traits: pd.DataFrame) -> pd.DataFrame:
    """Columns as SQL can hold them: dict/list cells as JSON text."""
    out = traits.copy()
    for column in out.columns:
        if out[column].dtype == object and out[column].map(lambda v: isinstance(v, (dict, list))).any():
            out[column] = out[column].map(lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
    return out


class TraitsTable:
    """The ``customer_traits`` table: the last computed traits, one row per Stripe customer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, traits: pd.DataFrame) -> None:
        """Replace ``customer_traits`` with ``traits`` in one transaction."""
        engine = self.engine
        frame = _storable(traits)
        method = postgres_copy if engine.dialect.name == "postgresql" else None
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {_STAGING}"))
            frame.to_sql(_STAGING, conn, index=False, chunksize=20_000, method=method)
            conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
            conn.execute(text(f"ALTER TABLE {_STAGING} RENAME TO {TABLE}"))
            if engine.dialect.name in ("postgresql", "sqlite"):
                conn.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS ux_{TABLE}_customer ON {TABLE} "
                                  "(stripe_customer_id)"))

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
