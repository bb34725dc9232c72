"""The customer_traits asset end to end on a real state store: read the mirror, compute, store the table.

    python bench/traits_asset_bench.py --customers 100000 [--postgres postgresql://postgres@127.0.0.1:5432/test]

Fills the mirror tables of a fresh SQLite file (and, with --postgres, a fresh
Postgres database created for the run and dropped after) with synthetic data
(bench/synth_mirror.py: ~10 charges and 1.2 subscriptions per customer), then
times the three steps of the asset separately. Prints one JSON line per store.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import uuid

from _common import peak_rss_mb  # noqa: E402  (sets the import path)

import pandas as pd  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.synth_mirror import synth_mirror  # noqa: E402
from s2s_pipeline.store import schema  # noqa: E402
from s2s_pipeline.store.db import normalize_url  # noqa: E402
from s2s_pipeline.store.state_store import StateStore  # noqa: E402
from s2s_pipeline.traits.loading import load_mirror_frames  # noqa: E402
from s2s_pipeline.traits.config import TraitsConfig  # noqa: E402
from s2s_pipeline.traits.customer_traits import compute_customer_traits  # noqa: E402

TABLES = {
    "customers": schema.customers, "subscriptions": schema.subscriptions,
    "subscription_items": schema.subscription_items, "prices": schema.prices, "products": schema.products,
    "coupons": schema.coupons, "discounts": schema.discounts, "invoices": schema.invoices,
    "charges": schema.charges, "refunds": schema.refunds, "disputes": schema.disputes,
}


def _storable(frame: pd.DataFrame, table) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for column in table.columns:
        if column.name in frame.columns:
            values = frame[column.name]
            if isinstance(values.dtype, pd.CategoricalDtype):
                values = values.astype(object).where(values.notna(), None)
            if column.name in ("metadata", "tiers"):
                values = values.map(lambda v: None if v is None or v is pd.NA else json.dumps(v))
            out[column.name] = values
    # Bookkeeping columns the synthetic frames leave empty.
    if "version_ts" in table.c:
        out["version_ts"] = 1
    if "deleted" in table.c:
        out["deleted"] = frame["deleted"].fillna(False).astype(bool) if "deleted" in frame else False
    return out


def fill(engine, frames) -> None:
    """Add ``frames`` (``bench.synth_mirror``) to the mirror tables, in one transaction."""
    with engine.begin() as conn:
        fill_block(conn, frames)


#: Rows per COPY buffer: bounds the CSV text held at once (about 200 bytes a charge row).
COPY_ROWS = 200_000


def copy_frame(conn, table, frame: pd.DataFrame) -> None:
    """``frame`` (columns of ``table``, as ``_storable`` gives them) into ``table`` with COPY FROM STDIN
    (Postgres), from a CSV buffer written by pandas, ``COPY_ROWS`` rows at a time, in ``conn``'s
    transaction."""
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    sql = f'COPY "{table.name}" ({columns}) FROM STDIN WITH (FORMAT csv, NULL \'\\N\')'
    cursor = conn.connection.cursor()
    try:
        for start in range(0, len(frame), COPY_ROWS):
            buffer = io.StringIO()
            frame.iloc[start:start + COPY_ROWS].to_csv(buffer, index=False, header=False, na_rep="\\N")
            buffer.seek(0)
            cursor.copy_expert(sql, buffer)
            del buffer
    finally:
        cursor.close()


def fill_block(conn, frames) -> dict[str, int]:
    """Add one block of frames to the mirror tables in ``conn``'s transaction (COPY on Postgres,
    executemany on SQLite); returns the rows added per table. Empty frames are skipped."""
    added = {}
    for name, table in TABLES.items():
        frame = getattr(frames, name)
        if not len(frame):
            continue
        frame = _storable(frame, table)
        if conn.dialect.name == "postgresql":
            copy_frame(conn, table, frame)
        else:
            frame.to_sql(table.name, conn, if_exists="append", index=False, chunksize=50_000)
        added[name] = len(frame)
    return added


def secondary_indexes() -> list:
    """The schema's non-primary-key indexes of the mirror tables (``store.schema``)."""
    return [index for table in TABLES.values() for index in sorted(table.indexes, key=lambda i: i.name)]


def drop_secondary_indexes(conn) -> None:
    """Drop them before a bulk load (``create_secondary_indexes`` builds them again, as the schema has them)."""
    for index in secondary_indexes():
        conn.execute(text(f'DROP INDEX IF EXISTS "{index.name}"'))


def create_secondary_indexes(conn) -> None:
    for index in secondary_indexes():
        index.create(conn, checkfirst=True)


def measure(url: str, frames, now: int, label: str) -> dict:
    store = StateStore.from_url(url)
    fill(store.engine, frames)
    t0 = time.perf_counter()
    loaded = load_mirror_frames(store.mirror)
    t1 = time.perf_counter()
    table = compute_customer_traits(loaded, TraitsConfig(), now)
    t2 = time.perf_counter()
    store.traits.write(table)
    t3 = time.perf_counter()
    store.dispose()
    return {"benchmark": "traits_asset", "store": label, "customers": len(table),
            "charges": len(frames.charges), "subscriptions": len(frames.subscriptions),
            "seconds": round(t3 - t0, 3), "seconds_read_mirror": round(t1 - t0, 3),
            "seconds_compute": round(t2 - t1, 3), "seconds_store": round(t3 - t2, 3),
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--postgres", help="admin URL of a Postgres server to create a scratch database on")
    args = parser.parse_args()
    frames, now = synth_mirror(args.customers, all_columns=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(f"sqlite:///{tmp}/state.db", frames, now, "sqlite")), flush=True)
    if args.postgres:
        admin_url = normalize_url(args.postgres)
        name = f"s2s_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            print(json.dumps(measure(admin_url.rsplit("/", 1)[0] + f"/{name}", frames, now, "postgres")), flush=True)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
