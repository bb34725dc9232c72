"""Canonical trait values: the one form in which new and acknowledged traits are compared.

Both sides of the diff go through the same canonical form before they are
compared: money (``lifetime_value``, ``mrr``) rounded to 2 decimals,
``refund_rate`` to 4, ``payment_frequency_days`` to 1; ``payment_count`` an integer; booleans from
``True``/``False``, ``1``/``0`` (SQLite) or nullable booleans alike; text as
text, times as ISO-8601 UTC text. ``None``, ``NaN`` and ``pd.NA`` all mean
*null*, and two nulls are equal. So a value read back from the state store
never differs from the freshly computed one through representation alone
(``10.0`` vs ``10.000000001``, ``1`` vs ``True``, ``NaN`` vs ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from s2s_pipeline.core.contract import IDENTIFY_TRAITS
from s2s_pipeline.core.times import iso_utc_series

#: Decimal places of each float trait.
FLOAT_DECIMALS: dict[str, int] = {"lifetime_value": 2, "mrr": 2, "refund_rate": 4, "payment_frequency_days": 1,
                                  "group_mrr": 2}
INT_TRAITS: frozenset[str] = frozenset({"payment_count"})
BOOL_TRAITS: frozenset[str] = frozenset({"cancel_at_period_end", "payment_delinquent", "paying_customer"})


@dataclass
class CanonicalColumn:
    """One canonical column: ``values`` (numpy) and ``null`` (bool mask)."""

    kind: str  # float | int | bool | text
    values: np.ndarray
    null: np.ndarray

    def take(self, index: np.ndarray, missing: np.ndarray | None = None) -> "CanonicalColumn":
        """Rows at ``index``; rows where ``missing`` is true become null."""
        values = self.values[index]
        null = self.null[index]
        if missing is not None and missing.any():
            null = null | missing
        return CanonicalColumn(self.kind, values, null)

    def python(self, rows: np.ndarray) -> list:
        """Plain Python values of ``rows`` (``None`` for null)."""
        if self.kind == "text":
            out = self.values[rows].copy()
        else:
            out = self.values[rows].astype(object)
        null = self.null[rows]
        if null.any():
            out[null] = None
        return out.tolist()


def _kind(name: str) -> str:
    if name in FLOAT_DECIMALS:
        return "float"
    if name in INT_TRAITS:
        return "int"
    if name in BOOL_TRAITS:
        return "bool"
    return "text"


def _null_col(kind: str, n: int) -> CanonicalColumn:
    values = {"float": np.full(n, np.nan), "int": np.zeros(n, dtype=np.int64),
              "bool": np.zeros(n, dtype=bool), "text": np.full(n, None, dtype=object)}[kind]
    return CanonicalColumn(kind, values, np.ones(n, dtype=bool))


def _as_float(series: pd.Series) -> np.ndarray:
    """Float64 values, NaN for every kind of null."""
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
        series = pd.to_numeric(series, errors="coerce")
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def canonical_column(series: pd.Series | None, name: str, n: int) -> CanonicalColumn:
    """Canonical form of one trait column (``None``: column absent, all null)."""
    kind = _kind(name)
    if series is None:
        return _null_col(kind, n)
    if kind == "float":
        values = np.round(_as_float(series), FLOAT_DECIMALS[name])
        null = np.isnan(values)
        return CanonicalColumn(kind, values, null)
    if kind == "int":
        f = _as_float(series)
        null = np.isnan(f)
        return CanonicalColumn(kind, np.where(null, 0, np.rint(f)).astype(np.int64), null)
    if kind == "bool":
        dtype = series.dtype
        if isinstance(dtype, pd.BooleanDtype):
            arr = series.array
            return CanonicalColumn(kind, arr.to_numpy(dtype=bool, na_value=False), np.asarray(arr.isna()))
        if dtype == bool:
            return CanonicalColumn(kind, series.to_numpy(dtype=bool), np.zeros(n, dtype=bool))
        if dtype == object or isinstance(dtype, pd.StringDtype):
            raw = series.to_numpy(dtype=object)
            null = pd.isna(raw)
            values = np.zeros(n, dtype=bool)
            if (~null).any():
                values[~null] = [_truthy(v) for v in raw[~null]] if isinstance(dtype, pd.StringDtype) \
                    else raw[~null].astype(bool)
            return CanonicalColumn(kind, values, null)
        f = series.to_numpy(dtype=np.float64, na_value=np.nan)
        null = np.isnan(f)
        return CanonicalColumn(kind, np.where(null, False, f != 0), null)
    # text: object array with None for null
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _iso_times(series)
    values = series.to_numpy(dtype=object)
    null = np.asarray(pd.isna(values), dtype=bool)
    if null.any():
        values = values.copy()
        values[null] = None  # one null value (pd.NA would make comparisons ambiguous)
    return CanonicalColumn(kind, values, null)


def _iso_times(series: pd.Series) -> CanonicalColumn:
    """Datetime column -> ISO-8601 UTC text ("2026-01-31T12:00:00Z"), as the trait table writes times."""
    values = iso_utc_series(series)
    return CanonicalColumn("text", values, np.asarray(pd.isna(values), dtype=bool))


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "t", "yes")


def _to_series(col: CanonicalColumn) -> pd.Series:
    """Canonical pandas dtype of a canonical column."""
    if col.kind == "float":
        return pd.Series(col.values, dtype=np.float64)
    if col.kind == "int":
        return pd.Series(pd.arrays.IntegerArray(col.values, col.null.copy()))
    if col.kind == "bool":
        return pd.Series(pd.arrays.BooleanArray(col.values, col.null.copy()))
    values = col.values.copy()
    if col.null.any():
        values[col.null] = None
    return pd.Series(values, dtype=object)


def canonical_traits(frame: pd.DataFrame, traits: Sequence[str] = IDENTIFY_TRAITS, *,
                     prefix: str = "") -> pd.DataFrame:
    """``frame`` with its trait columns in canonical form (other columns untouched).

    Canonical dtypes, so values read back from SQL compare equal to freshly
    computed ones: float traits ``float64`` rounded (money 2, ``refund_rate`` 4
    decimals; NaN is null); ``payment_count`` ``Int64``; booleans ``boolean``
    (SQLite's 0/1 included); text ``object`` with ``None`` for null. ``None``,
    NaN and ``pd.NA`` all become null. A trait column missing from ``frame``
    is added, all null. ``prefix`` names the columns (``"trait_"`` for the
    ``segment_pushed_traits`` table).
    """
    n = len(frame)
    out = frame.copy(deep=False)
    for name in traits:
        column = prefix + name
        col = canonical_column(frame[column] if column in frame.columns else None, name, n)
        series = _to_series(col)
        series.index = frame.index
        out[column] = series
    return out
