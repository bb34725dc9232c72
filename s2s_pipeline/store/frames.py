"""Reading the Stripe mirror into pandas frames for the trait computation."""

from __future__ import annotations

import json
from typing import Mapping

import pandas as pd
from sqlalchemy import JSON, Boolean, Engine, false, select

from s2s_pipeline.store import schema
from s2s_pipeline.traits.frames import (
    TABLE_COLUMNS,
    TRAIT_COLUMNS,
    MirrorFrames,
    apply_fast_dtypes,
    empty_frame,
)

#: MirrorFrames field -> mirror table.
TABLES = {
    "customers": schema.customers,
    "subscriptions": schema.subscriptions,
    "subscription_items": schema.subscription_items,
    "prices": schema.prices,
    "products": schema.products,
    "coupons": schema.coupons,
    "discounts": schema.discounts,
    "invoices": schema.invoices,
    "charges": schema.charges,
    "refunds": schema.refunds,
    "disputes": schema.disputes,
}


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


def load_mirror_frames(engine: Engine, columns: Mapping[str, tuple[str, ...]] | None = None,
                       fast_dtypes: bool = True) -> MirrorFrames:
    """The mirror tables as a MirrorFrames.

    - ``columns``: per MirrorFrames field, the columns to read (default
      ``TRAIT_COLUMNS``: what ``compute_customer_traits`` needs; ``TABLE_COLUMNS``
      reads everything but ``raw``). A table with no columns is returned empty
      (with its schema columns) without a query.
    - Customers flagged ``deleted`` are not read; other tables keep their rows
      (a deleted invoice or a canceled subscription still tells something).
      Customers come ordered by id, so the trait table's row order is stable.
    - One ``pd.read_sql`` per table with an explicit column list, all in one
      transaction (a consistent snapshot on PostgreSQL); dtypes are set
      afterwards with ``traits.frames.apply_fast_dtypes`` (references as
      categoricals aligned with the referenced ids, which is what makes the
      trait computation fast) unless ``fast_dtypes`` is False.
    """
    wanted = TRAIT_COLUMNS if columns is None else columns
    tables: dict[str, pd.DataFrame] = {}
    with engine.connect() as conn:
        for name, table in TABLES.items():
            cols = tuple(wanted.get(name, ()))
            unknown = [c for c in cols if c not in TABLE_COLUMNS[name]]
            if unknown:
                raise KeyError(f"{name} has no columns {unknown}")
            if not cols:
                tables[name] = empty_frame(name)
                continue
            stmt = select(*(table.c[c] for c in cols))
            if name == "customers":
                stmt = stmt.where(table.c.deleted == false()).order_by(table.c.id)
            frame = _read(conn, stmt, [table.c[c] for c in cols])
            tables[name] = frame if len(frame) else empty_frame(name, cols)
    if fast_dtypes:
        apply_fast_dtypes(tables)
    return MirrorFrames(**tables)
