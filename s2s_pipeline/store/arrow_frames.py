"""Arrow tables (what ADBC fetches) to pandas frames with the dtypes the cursor path gives.

The trait computation was written against frames built from DB-API rows
(``arrow_reads.CursorReads``); a frame read through Arrow must hold the same
values with the same dtypes, column by column, so that nothing downstream can
tell the two paths apart. The rules, per SQLAlchemy column type:

- no rows: every column ``object`` (what ``DataFrame.from_records`` makes of no rows);
- integers: ``int64`` without nulls, pandas ``Int64`` with any (never float:
  a BIGINT of 2**53 + 1 comes back exactly; ``pyarrow``'s own ``to_pandas``
  would give float64);
- every other column that is all null: ``object`` holding None;
- booleans: ``bool`` without nulls, else ``object`` holding True, False and None;
- floats: ``float64`` (NaN for null);
- JSON: ``object`` holding the parsed values (dicts, lists) and None;
- text: pandas' default string dtype (``str``; missing = NaN), as
  ``from_records`` infers it for text columns.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import JSON, Boolean, Float, Integer, String


def frame_from_arrow(table: pa.Table, columns) -> pd.DataFrame:
    """The Arrow ``table`` (one field per SQLAlchemy column in ``columns``, in order) as a DataFrame."""
    names = [c.name for c in columns]
    if table.num_columns != len(names):
        raise ValueError(f"expected {len(names)} columns {names}, the query returned {table.num_columns}")
    if table.num_rows == 0:
        return pd.DataFrame.from_records([], columns=names)
    data = {}
    for i, column in enumerate(columns):
        data[column.name] = _series(table.column(i), column.type)
    return pd.DataFrame(data, copy=False)


def _series(values: pa.ChunkedArray, sql_type) -> pd.Series:
    n = len(values)
    nulls = values.null_count
    if isinstance(sql_type, Boolean):  # before Integer: no Boolean is an Integer, but be explicit
        if nulls == n:
            return pd.Series([None] * n, dtype=object)
        if nulls == 0:
            return pd.Series(values.to_numpy(), dtype=bool)
        return pd.Series(_with_none(values.fill_null(False).to_numpy(), values), dtype=object)
    if isinstance(sql_type, Integer):
        ints = values.cast(pa.int64())
        if nulls == 0:
            return pd.Series(ints.to_numpy(), dtype=np.int64)
        filled = ints.fill_null(0).to_numpy()
        mask = values.is_null().to_numpy()
        return pd.Series(pd.arrays.IntegerArray(np.array(filled, dtype=np.int64), np.array(mask, dtype=bool)))
    if nulls == n:
        return pd.Series([None] * n, dtype=object)
    if isinstance(sql_type, Float):
        return pd.Series(values.cast(pa.float64()).to_numpy(), dtype=np.float64)
    if isinstance(sql_type, JSON):
        return pd.Series([None if v is None else json.loads(v) if isinstance(v, str) else v
                          for v in values.to_pylist()], dtype=object)
    if isinstance(sql_type, String):
        return values.to_pandas().astype("str")
    # No mirror frame column has another type; keep the values as Python objects.
    return pd.Series(values.to_pylist(), dtype=object)


def _with_none(filled: np.ndarray, values: pa.ChunkedArray) -> np.ndarray:
    """``filled`` as an object array with None where ``values`` is null."""
    out = filled.astype(object)
    out[values.is_null().to_numpy()] = None
    return out
