"""Bulk writes of a DataFrame into Postgres: ``COPY ... FROM STDIN`` of CSV that Arrow writes.

The trait table's rows (every customer on a full recompute) are written this way. Arrow's CSV
writer formats whole columns in C++, where formatting them value by value in Python was most of
the time of storing a shard; with ``quoting_style="all_valid"`` every value is quoted and a null
is an unquoted empty field, which is exactly Postgres' CSV rule for NULL, so no text value (an
empty string, or a customer named ``\\N``) can be read back as NULL. pandas' nulls (None, NaN,
pd.NA) all become NULL, as in the SQLite writer.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.csv as arrow_csv

#: Rows per COPY: bounds the CSV text held in memory at once.
COPY_ROWS = 100_000
_OPTIONS = arrow_csv.WriteOptions(include_header=False, quoting_style="all_valid")


def copy_frame(conn, table_name: str, frame: pd.DataFrame) -> int:
    """COPY ``frame``'s rows into the existing table ``table_name`` (its columns by name), in ``conn``'s
    transaction (a SQLAlchemy connection to Postgres). Returns the rows written.

    ``table_name`` is quoted as an identifier; callers pass names they made (never user text)."""
    if frame.empty:
        return 0
    columns = ", ".join(_identifier(str(c)) for c in frame.columns)
    statement = f"COPY {_identifier(table_name)} ({columns}) FROM STDIN WITH (FORMAT csv)"
    cursor = conn.connection.cursor()
    try:
        for start in range(0, len(frame), COPY_ROWS):
            buffer = io.BytesIO()
            arrow_csv.write_csv(pa.Table.from_pandas(frame.iloc[start:start + COPY_ROWS], preserve_index=False),
                                buffer, write_options=_OPTIONS)
            buffer.seek(0)
            cursor.copy_expert(statement, buffer)
    finally:
        cursor.close()
    return len(frame)


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
