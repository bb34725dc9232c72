"""Reading mirror tables into pandas frames, fast (the trait computation reads the whole mirror)."""

from __future__ import annotations

import json
from typing import Mapping

import pandas as pd
from sqlalchemy import JSON, Boolean, Engine, false, select

from s2s_pipeline.store.schema import MIRROR_FRAME_COLUMNS, MIRROR_FRAME_TABLES


def _read(conn, stmt, columns) -> pd.DataFrame:
    """Rows straight from the DB-API cursor into a DataFrame.

    About 40% faster than ``pd.read_sql`` on a million charges (it skips
    SQLAlchemy's Row objects); the few conversions SQLAlchemy would have done
    are done here per column: JSON text (SQLite) to objects, 0/1 to booleans.
    """
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    frame = pd.DataFrame.from_records(rows, columns=[c.name for c in columns], coerce_float=False)
    for column in columns:
        values = frame[column.name]
        if isinstance(column.type, JSON) and values.map(lambda v: isinstance(v, str)).any():
            frame[column.name] = values.map(lambda v: json.loads(v) if isinstance(v, str) else v)
        elif isinstance(column.type, Boolean) and len(values) and values.dtype != bool:
            frame[column.name] = values.map(lambda v: None if v is None else bool(v)).astype(object)
    return frame


def read_frames(engine: Engine, columns: Mapping[str, tuple[str, ...]]) -> dict[str, pd.DataFrame]:
    """The wanted columns of the mirror tables, one DataFrame per frame name (``schema.MIRROR_FRAME_TABLES``).

    - ``columns``: per frame name, the columns to read; a frame with no
      columns wanted is not read (and not in the result). A column the table
      lacks raises KeyError.
    - Customers flagged ``deleted`` are not read; other tables keep their rows
      (a deleted invoice or a canceled subscription still tells something).
      Customers come ordered by id, so the trait table's row order is stable.
    - One query per table with an explicit column list, all in one
      transaction (a consistent snapshot on PostgreSQL). Values come as the
      database holds them (dtypes are the caller's business).
    """
    frames: dict[str, pd.DataFrame] = {}
    with engine.connect() as conn:
        for name, table in MIRROR_FRAME_TABLES.items():
            cols = tuple(columns.get(name, ()))
            unknown = [c for c in cols if c not in MIRROR_FRAME_COLUMNS[name]]
            if unknown:
                raise KeyError(f"{name} has no columns {unknown}")
            if not cols:
                continue
            stmt = select(*(table.c[c] for c in cols))
            if name == "customers":
                stmt = stmt.where(table.c.deleted == false()).order_by(table.c.id)
            frames[name] = _read(conn, stmt, [table.c[c] for c in cols])
    return frames
