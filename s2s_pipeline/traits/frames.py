"""The mirror as pandas frames, and fast column access for the trait computation.

``MirrorFrames`` holds one DataFrame per mirror table with the schema's column
names (``store.schema``, without ``raw``). Units are the mirror's: money in
integer minor units, times in Unix seconds UTC.

Accepted dtypes (the computation reads every column through the helpers below,
so plain frames built by hand work as well as the loader's):

- ids and text: ``str``/``object`` (missing = None/NaN);
- references to another table's id (``charges.customer``, ``subscription_items.price`` ...)
  and low-cardinality text (``status``, ``currency``, ``card_brand`` ...): text,
  or ``category``. :func:`apply_fast_dtypes` (used by the loader; the
  benchmark generator builds the same dtypes) makes them categorical; a reference column whose
  categories start with the referenced table's ids in order is then resolved
  without hashing a single string. That is what makes 10M charges fast:
  hashing 10M id strings alone costs several seconds.
- integers: ``int64`` or nullable ``Int64`` (or float with NaN);
- booleans: ``bool`` or nullable ``boolean``;
- JSON (``metadata``, ``tiers``, ``currency_options``, ``tax_rates`` ...): Python dicts/lists (or JSON text) and None.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from s2s_pipeline.store.schema import MIRROR_FRAME_COLUMNS

#: Every column of each mirror table (``store.schema`` without ``raw``), in schema order.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = MIRROR_FRAME_COLUMNS

#: The mirror columns ``compute_customer_traits`` reads, per table (what the loader fetches by default).
TRAIT_INPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("id", "email", "name", "currency", "metadata", "deleted"),
    "subscriptions": ("id", "customer", "status", "currency", "created", "cancel_at_period_end", "cancel_at",
                      "ended_at", "trial_end", "pause_collection_behavior", "deleted", "automatic_tax_enabled",
                      "default_tax_rates"),
    "subscription_items": ("id", "subscription", "customer", "price", "quantity", "current_period_end",
                           "tax_rates"),
    "prices": ("id", "product", "currency", "nickname", "billing_scheme", "unit_amount", "unit_amount_decimal",
               "tiers_mode", "tiers", "recurring_interval", "recurring_interval_count", "recurring_usage_type",
               "recurring_meter", "transform_divide_by", "transform_round", "tax_behavior", "currency_options"),
    "products": ("id", "name"),
    "coupons": ("id", "percent_off", "amount_off", "currency", "duration", "applies_to_products",
                "currency_options"),
    "discounts": ("id", "customer", "subscription", "subscription_item", "coupon", "start", "end"),
    "invoices": ("id", "customer", "subscription", "status", "attempt_count", "total", "total_excluding_tax",
                 "amount_paid", "paid_at", "created", "deleted"),
    "charges": ("id", "customer", "status", "currency", "amount", "amount_captured", "amount_refunded",
                "amount_refunded_includes_releases", "captured", "payment_method_type", "card_brand", "created"),
    # refunds: not read -- the charge's amounts already say what was refunded after capture (docs/traits.md)
    "refunds": (),
    "disputes": ("id", "charge", "status", "currency", "amount", "deleted"),
}

#: Columns that hold another table's id: (table, column) -> referenced table.
REFERENCES: dict[tuple[str, str], str] = {
    ("subscriptions", "customer"): "customers",
    ("subscription_items", "subscription"): "subscriptions",
    ("subscription_items", "customer"): "customers",
    ("subscription_items", "price"): "prices",
    ("prices", "product"): "products",
    ("discounts", "customer"): "customers",
    ("discounts", "subscription"): "subscriptions",
    ("discounts", "subscription_item"): "subscription_items",
    ("discounts", "coupon"): "coupons",
    ("invoices", "customer"): "customers",
    ("invoices", "subscription"): "subscriptions",
    ("charges", "customer"): "customers",
    ("refunds", "charge"): "charges",
    ("disputes", "charge"): "charges",
}

#: Low-cardinality text columns, stored as ``category`` by :func:`with_fast_dtypes`.
CATEGORY_COLUMNS: frozenset[str] = frozenset({
    "currency", "status", "pause_collection_behavior", "collection_method", "payment_method_type", "card_brand",
    "billing_scheme", "tiers_mode", "recurring_interval", "recurring_usage_type", "transform_round",
    "tax_behavior", "type", "duration", "billing_reason", "reason", "failure_code",
})

#: Integer columns (Unix seconds, minor units, counts) and boolean columns.
INT_COLUMNS: frozenset[str] = frozenset({
    "created", "version_ts", "start_date", "cancel_at", "canceled_at", "ended_at", "trial_start", "trial_end",
    "quantity", "current_period_start", "current_period_end", "unit_amount", "recurring_interval_count",
    "transform_divide_by", "amount_off", "duration_in_months", "start", "end", "amount_due", "amount_paid",
    "amount_remaining", "total", "total_excluding_tax", "subtotal", "attempt_count", "next_payment_attempt",
    "period_start", "period_end", "paid_at", "amount", "amount_captured", "amount_refunded",
})
BOOL_COLUMNS: frozenset[str] = frozenset({
    "delinquent", "livemode", "deleted", "cancel_at_period_end", "active", "valid", "attempted", "captured",
    "paid", "refunded", "disputed", "automatic_tax_enabled", "amount_refunded_includes_releases",
})
FLOAT_COLUMNS: frozenset[str] = frozenset({"percent_off"})


@dataclass
class MirrorFrames:
    """One DataFrame per mirror table (columns as in ``store.schema``, without ``raw``)."""

    customers: pd.DataFrame
    subscriptions: pd.DataFrame
    subscription_items: pd.DataFrame
    prices: pd.DataFrame
    products: pd.DataFrame
    coupons: pd.DataFrame
    discounts: pd.DataFrame
    invoices: pd.DataFrame
    charges: pd.DataFrame
    refunds: pd.DataFrame
    disputes: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def row_counts(self) -> dict[str, int]:
        return {name: len(df) for name, df in self.tables().items()}


def empty_frame(table: str, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """An empty frame of a mirror table with the schema's columns (or the given ones) and their dtypes."""
    cols = tuple(columns) if columns is not None else TABLE_COLUMNS[table]
    return pd.DataFrame({c: pd.Series(dtype=_empty_dtype(c)) for c in cols})


def _empty_dtype(column: str) -> str:
    if column in INT_COLUMNS:
        return "Int64"
    if column in BOOL_COLUMNS:
        return "boolean"
    if column in FLOAT_COLUMNS:
        return "float64"
    return "object"


def empty_frames() -> MirrorFrames:
    """A MirrorFrames with every table empty (all schema columns present)."""
    return MirrorFrames(**{table: empty_frame(table) for table in TABLE_COLUMNS})


# -- dtypes -----------------------------------------------------------------------


def reference_categorical(values: pd.Series, target_ids: pd.Index,
                          dtype: pd.CategoricalDtype | None = None) -> pd.Categorical:
    """Values referencing ``target_ids`` as a Categorical whose categories start with ``target_ids``.

    Values absent from ``target_ids`` (a deleted customer, an object not mirrored
    yet) are kept as extra categories after them, so no information is lost.
    ``dtype`` (categories = ``target_ids``) may be passed to share one dtype object.
    """
    values = pd.Series(values).astype(object)
    codes = target_ids.get_indexer(values)
    unknown = (codes < 0) & values.notna().to_numpy()
    if unknown.any():
        extra = pd.Index(pd.unique(values[unknown]), dtype=object)
        codes[unknown] = len(target_ids) + extra.get_indexer(values[unknown])
        dtype = pd.CategoricalDtype(target_ids.append(extra))
    elif dtype is None:
        dtype = pd.CategoricalDtype(target_ids)
    return pd.Categorical.from_codes(codes, dtype=dtype)


def apply_fast_dtypes(tables: dict[str, pd.DataFrame]) -> None:
    """Set, in place, the dtypes the computation is fastest on (tables keyed by MirrorFrames field).

    References become categoricals aligned with the referenced table's ids (when
    that table is present with unique ids), other low-cardinality text becomes
    ``category``, integers ``Int64``, booleans ``boolean``. Values are unchanged.

    Text read through Arrow (pandas' pyarrow-backed ``str``) is encoded by Arrow's own kernels
    (``index_in``, ``dictionary_encode``), which give the same categoricals as pandas' hashing of
    Python strings in a tenth of the time (that hashing was a third of reading a full shard).
    """
    # Only the referenced tables' ids: an Index of Python strings costs about 0.3 s per million ids,
    # and invoices or discounts are referenced by nothing (600,000 invoices in a 250,000-customer shard).
    referenced = set(REFERENCES.values())
    id_index = {name: pd.Index(df["id"].astype(object)) for name, df in tables.items()
                if name in referenced and "id" in df.columns}
    ref_dtypes = {name: pd.CategoricalDtype(idx) for name, idx in id_index.items() if idx.is_unique}
    for name, df in tables.items():
        for col in df.columns:
            target = REFERENCES.get((name, col))
            values = df[col]
            if target is not None and target in ref_dtypes:
                if not (isinstance(values.dtype, pd.CategoricalDtype) and values.dtype == ref_dtypes[target]):
                    df[col] = (_arrow_reference(values, tables[target]["id"], ref_dtypes[target])
                               or reference_categorical(values, id_index[target], ref_dtypes[target]))
            elif col in CATEGORY_COLUMNS:
                if not isinstance(values.dtype, pd.CategoricalDtype):
                    df[col] = _arrow_category(values) or values.astype(object).astype("category")
            elif col in INT_COLUMNS:
                if values.dtype != "Int64":
                    df[col] = pd.to_numeric(values, errors="coerce").astype("Int64")
            elif col in BOOL_COLUMNS:
                if values.dtype != "boolean":
                    df[col] = values.astype(object).astype("boolean")


def _arrow_text(values: pd.Series) -> pa.Array | None:
    """The Arrow array behind a text column read through Arrow (no copy), None for any other column."""
    dtype = values.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return None
    array = pa.array(values)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _arrow_reference(values: pd.Series, target_ids: pd.Series, dtype: pd.CategoricalDtype) -> pd.Categorical | None:
    """``reference_categorical`` by Arrow's ``index_in``, for Arrow text whose every value is one of
    ``target_ids``; None otherwise (the general path keeps unknown values as extra categories)."""
    array = _arrow_text(values)
    if array is None:
        return None
    targets = _arrow_text(target_ids)
    found = pc.index_in(array, value_set=targets if targets is not None else pa.array(dtype.categories, pa.string()))
    if found.null_count != array.null_count:  # a value absent from the referenced table
        return None
    codes = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return pd.Categorical.from_codes(codes, dtype=dtype)


def _arrow_category(values: pd.Series) -> pd.Categorical | None:
    """``values.astype(object).astype("category")`` by Arrow's ``dictionary_encode`` (categories sorted as
    pandas sorts them), for Arrow text; None for any other column."""
    array = _arrow_text(values)
    if array is None:
        return None
    encoded = pc.dictionary_encode(array)
    seen = encoded.dictionary.to_pylist()
    order = sorted(range(len(seen)), key=seen.__getitem__)
    recode = np.empty(len(seen) + 1, dtype=np.int64)
    recode[order] = np.arange(len(seen))
    recode[-1] = -1  # null: index -1 of the table
    codes = recode[pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)]
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(pd.Index([seen[i] for i in order])))


def with_fast_dtypes(frames: MirrorFrames) -> MirrorFrames:
    """A copy of ``frames`` with :func:`apply_fast_dtypes` applied (traits are the same)."""
    tables = {name: df.copy() for name, df in frames.tables().items()}
    apply_fast_dtypes(tables)
    return MirrorFrames(**tables)


# -- column access (used by the trait computation) ---------------------------------
# The arrays returned may be read-only views of a frame's data: never modify them in place.


def column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column, or an all-missing one when the frame lacks it (hand-built frames may omit columns)."""
    if name in df.columns:
        return df[name]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def ints(series: pd.Series, fill: int) -> np.ndarray:
    """int64 values with ``fill`` for missing ones."""
    if series.dtype.kind not in "iu":
        series = pd.to_numeric(series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series,
                               errors="coerce")
    if series.dtype.kind in "iu":
        return series.to_numpy(dtype=np.int64, na_value=fill)
    arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(arr)
    out = np.where(missing, 0, arr).astype(np.int64)
    out[missing] = fill
    return out


def floats(series: pd.Series) -> np.ndarray:
    """float64 values, NaN for missing or unparseable ones (decimal text is parsed)."""
    values = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def bools(series: pd.Series, fill: bool = False) -> np.ndarray:
    """bool values with ``fill`` for missing ones."""
    if series.dtype == bool:
        return series.to_numpy()
    if isinstance(series.dtype, pd.BooleanDtype):
        return series.to_numpy(dtype=bool, na_value=fill)
    values = series.to_numpy(dtype=object, copy=True)
    missing = pd.isna(values)
    values[missing] = fill
    return values.astype(bool)


def present(series: pd.Series) -> np.ndarray:
    """True where a value is present (not None/NaN and not an empty string)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = series.cat.categories
        ok = np.append(np.asarray(cats.astype(str) != ""), False)
        return ok[series.cat.codes.to_numpy()]
    values = series.notna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        values = values & (series.astype(object) != "").to_numpy(dtype=bool)
    return values


def isin(series: pd.Series, allowed: Iterable[str]) -> np.ndarray:
    """Boolean mask: the (text) value is one of ``allowed`` (missing -> False)."""
    allowed = list(allowed)
    if isinstance(series.dtype, pd.CategoricalDtype):
        ok = np.append(np.asarray(series.cat.categories.isin(allowed)), False)
        return ok[series.cat.codes.to_numpy()]
    return series.isin(allowed).to_numpy(dtype=bool)


def text_values(series: pd.Series) -> np.ndarray:
    """The column as an object array with None for missing values, plus a trailing None (row -1 reads it)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = np.append(series.cat.categories.to_numpy(dtype=object), None)
        return categories[np.append(series.cat.codes.to_numpy(), -1)]
    values = np.append(series.to_numpy(dtype=object), None)
    missing = pd.isna(values)
    if missing.any():
        values[missing] = None
    return values


def take_text(series: pd.Series, rows: np.ndarray) -> np.ndarray:
    """Object array of the values at ``rows`` (-1 or a missing value -> None)."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = np.append(series.cat.categories.to_numpy(dtype=object), None)
        codes = np.append(series.cat.codes.to_numpy(), -1)
        return categories[codes[rows]]
    return text_values(series)[rows]


def json_values(series: pd.Series) -> pd.Series:
    """JSON column as Python objects (JSON text is parsed; a SQL JSON column already is)."""
    if len(series) == 0:
        return series.astype(object)
    sample = series.dropna()
    if len(sample) and isinstance(sample.iloc[0], str):
        return series.map(lambda v: json.loads(v) if isinstance(v, str) else v).astype(object)
    return series.astype(object)


class Lookup:
    """Row positions of ids in one table (its ``id`` column, unique), for reference columns.

    A categorical reference whose categories start with exactly these ids (what
    :func:`apply_fast_dtypes` makes) maps by its integer codes, and the mapping of
    one categories object is computed once (the loader shares one dtype per
    referenced table). Anything else is hashed once per distinct value.
    """

    def __init__(self, ids: pd.Series) -> None:
        self.index = pd.Index(ids.astype(object))
        self._mappings: dict[int, tuple[pd.Index, np.ndarray]] = {}

    def _mapping(self, cats: pd.Index) -> np.ndarray:
        cached = self._mappings.get(id(cats))
        if cached is not None and cached[0] is cats:
            return cached[1]
        n = len(self.index)
        if len(cats) >= n and cats[:n].astype(object).equals(self.index):
            mapping = np.arange(len(cats) + 1, dtype=np.int32)
            mapping[n:] = -1
        else:
            mapping = np.append(self.index.get_indexer(cats.astype(object)), -1).astype(np.int32)
        self._mappings[id(cats)] = (cats, mapping)  # keeps cats alive, so its id is not reused
        return mapping

    def positions(self, refs: pd.Series) -> np.ndarray:
        """int32 row position of each reference, -1 where it is missing or unknown."""
        if isinstance(refs.dtype, pd.CategoricalDtype):
            return self._mapping(refs.cat.categories)[refs.cat.codes.to_numpy()]
        if len(refs) == 0:
            return np.zeros(0, dtype=np.int32)
        return self.index.get_indexer(refs.astype(object)).astype(np.int32)


class Vocabulary:
    """Integer codes for text values shared across tables (e.g. currencies), lowercased."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, value) -> int:
        if value is None or (isinstance(value, float) and value != value):
            return -1
        text = str(value).strip().lower()
        if not text:
            return -1
        if text not in self._codes:
            self._codes[text] = len(self.values)
            self.values.append(text)
        return self._codes[text]

    def encode(self, series: pd.Series) -> np.ndarray:
        """int32 code per row (-1 = missing)."""
        if isinstance(series.dtype, pd.CategoricalDtype):
            mapping = np.array([self.code(v) for v in series.cat.categories] + [-1], dtype=np.int32)
            return mapping[series.cat.codes.to_numpy()]
        codes, uniques = pd.factorize(series.astype(object))
        mapping = np.array([self.code(v) for v in uniques] + [-1], dtype=np.int32)
        return mapping[codes]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Object array of values (None for -1)."""
        table = np.array(self.values + [None], dtype=object)
        return table[np.asarray(codes, dtype=np.int64)]
