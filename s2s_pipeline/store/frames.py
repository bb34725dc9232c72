"""Reading mirror tables into pandas frames, fast (the trait computation reads the whole mirror).

Which queries: here. How they are run and turned into frames (ADBC and Arrow on PostgreSQL, the
DB-API cursor on SQLite, one read-only snapshot per call either way): ``store.arrow_reads``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

import pandas as pd
from sqlalchemy import Engine, false, literal_column, select

from s2s_pipeline.store.arrow_reads import frame_read_pair, frame_reads
from s2s_pipeline.store.schema import MIRROR_FRAME_COLUMNS, MIRROR_FRAME_TABLES


def read_frames(engine: Engine, columns: Mapping[str, tuple[str, ...]]) -> dict[str, pd.DataFrame]:
    """The wanted columns of the mirror tables, one DataFrame per frame name (``schema.MIRROR_FRAME_TABLES``).

    - ``columns``: per frame name, the columns to read; a frame with no
      columns wanted is not read (and not in the result). A column the table
      lacks raises KeyError.
    - Customers flagged ``deleted`` are not read; other tables keep their rows
      (a deleted invoice or a canceled subscription still tells something).
      Customers come ordered by id, so the trait table's row order is stable.
    - One query per table with an explicit column list, all in one read-only
      snapshot (``arrow_reads.frame_reads``: a write committed while the
      tables are read is in none of them). Values come as the database holds
      them; dtypes follow ``store.arrow_frames`` (integers with NULLs as
      ``Int64``, never float), whichever path read them.
    """
    frames: dict[str, pd.DataFrame] = {}
    with frame_reads(engine) as reader:
        for name, table in MIRROR_FRAME_TABLES.items():
            cols = _requested(name, columns)
            if not cols:
                continue
            stmt = select(*(table.c[c] for c in cols))
            if name == "customers":
                stmt = stmt.where(table.c.deleted == false()).order_by(table.c.id)
            frames[name] = reader.read(stmt, [table.c[c] for c in cols])
    return frames


def _requested(name: str, columns: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The columns asked for of one frame, refusing any the mirror table does not have."""
    cols = tuple(columns.get(name, ()))
    unknown = [c for c in cols if c not in MIRROR_FRAME_COLUMNS[name]]
    if unknown:
        raise KeyError(f"{name} has no columns {unknown}")
    return cols


#: Frame name -> how its rows belong to a customer: a ``customer`` column, or a charge of the customer.
_BY_CUSTOMER_COLUMN = ("customers", "subscriptions", "subscription_items", "discounts", "invoices", "charges")
_BY_CHARGE = ("refunds", "disputes")
#: Customers per query: the ids are inlined (the reads compile with literal binds). 20,000 ids of
#: Stripe's longest are about 5 MB of SQL, far under SQLite's statement limit (1e9 bytes) and Postgres'
#: (1 GB); each chunk is one planned statement per table, so fewer, larger chunks plan and round-trip less.
_CUSTOMER_CHUNK = 20_000
#: Charges per query of the refunds and disputes of the customers' charges (ids inlined, as above).
_CHARGE_CHUNK = 50_000


def read_customer_frames(engine: Engine, columns: Mapping[str, tuple[str, ...]],
                         customer_ids) -> dict[str, pd.DataFrame]:
    """Like ``read_frames``, but only what belongs to the given customers, and the whole catalogue.

    Customers (not deleted), their subscriptions, items, discounts, invoices and
    charges, the refunds and disputes of those charges; prices, products and
    coupons in full (every customer's traits may read any of them). Customers
    come ordered by id. What the trait computation makes of these frames is what
    it makes of the same customers in the whole mirror: no trait looks across customers.

    Refunds and disputes are read by the ids of the customers' charges, taken
    from the charges read in the same snapshot: a sub-select of the charges by
    customer would find them again, and on Postgres' default cost settings
    that is a scan of every charge per table (at 1M customers, 18,885 changed
    customers: about 1 s each for the refunds and the disputes).
    On PostgreSQL the reads plan with a random-page cost for SSDs (``arrow_reads.KEYED_READ_RANDOM_PAGE_COST``).
    """
    ids = sorted({str(i) for i in customer_ids})
    wanted = {name: [table.c[c] for c in cols] for name, table in MIRROR_FRAME_TABLES.items()
              if (cols := _requested(name, columns))}
    # Two groups of about equal cost (at 1M customers, 18,885 of them: about 0.65 s of statements each),
    # read at once on two connections sharing one snapshot where the store allows it (``frame_read_pair``).
    money = [name for name in wanted if name == "charges" or name in _BY_CHARGE]
    rest = [name for name in wanted if name not in money]
    with frame_read_pair(engine) as (reader, second):
        reader.favour_index_scans()  # the planner still chooses by cost: for many customers it scans
        if second is reader:
            frames = _read_group(reader, rest, wanted, ids)
            frames.update(_read_group(reader, money, wanted, ids))
        else:
            second.favour_index_scans()
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-reads") as pool:
                money_frames = pool.submit(_read_group, second, money, wanted, ids)
                frames = _read_group(reader, rest, wanted, ids)
                frames.update(money_frames.result())
    return {name: frames[name] for name in wanted}  # in the tables' order, as read_frames gives them


def _read_group(reader, names: list[str], wanted: Mapping[str, list], ids: list[str]) -> dict[str, pd.DataFrame]:
    """The frames ``names`` of the customers ``ids`` (``read_customer_frames``), read on ``reader``."""
    frames: dict[str, pd.DataFrame] = {}
    charge_ids: list[str] | None = None
    for name in names:
        table, columns = MIRROR_FRAME_TABLES[name], wanted[name]
        if name in _BY_CHARGE:
            if charge_ids is None:
                charge_ids = _charge_ids(reader, frames.get("charges"), ids)
            frame = _read_in_chunks(reader, columns, charge_ids, _CHARGE_CHUNK,
                                    lambda chunk, table=table: [_in_keys(table.c.charge, chunk)])
        elif name in _BY_CUSTOMER_COLUMN:
            frame = _read_in_chunks(reader, columns, ids, _CUSTOMER_CHUNK, _of_customers(name, table))
            if name == "customers" and len(frame):
                frame = frame.sort_values("id", kind="stable", ignore_index=True)
        else:
            frame = reader.read(select(*columns), columns)
        frames[name] = frame
    return frames


def _charge_ids(reader, charges: pd.DataFrame | None, customer_ids: list[str]) -> list[str]:
    """The ids of the given customers' charges: from the charges frame already read in this snapshot
    when it has them, else read (only the ids)."""
    if charges is not None and "id" in charges.columns:
        found = charges["id"]
    else:
        table = MIRROR_FRAME_TABLES["charges"]
        found = _read_in_chunks(reader, [table.c.id], customer_ids, _CUSTOMER_CHUNK,
                                _of_customers("charges", table))["id"]
    return sorted({str(i) for i in found.tolist()})


def _of_customers(name: str, table):
    """The conditions keeping the rows of frame ``name`` that belong to a chunk of customer ids (``_belonging``)."""
    return lambda chunk: _belonging(name, table, lambda column: [_in_keys(column, chunk)])


def _in_keys(column, keys: list[str]):
    """``column IN (keys)`` for ids, the list rendered as SQL text in one pass.

    The frame reads inline their keys (``arrow_reads``); SQLAlchemy's literal rendering takes about
    2 microseconds per value, and the trait step of a night at 1M customers inlines some 500,000
    (0.38 s of its 2.9 s). Rendered here: each key quoted as a standard SQL string (quotes doubled),
    the same text on SQLite and PostgreSQL. A key that is not text, or holds a backslash or NUL
    (which a server without ``standard_conforming_strings`` would read otherwise), goes through
    SQLAlchemy's rendering instead; Stripe's ids hold none.
    """
    if keys and all(type(k) is str for k in keys):
        quoted = "', '".join(k.replace("'", "''") for k in keys)
        if "\\" not in quoted and "\x00" not in quoted:
            return column.op("IN")(literal_column(f"('{quoted}')"))
    return column.in_(keys)


def _read_in_chunks(reader, wanted, keys: list[str], chunk_size: int, conditions) -> pd.DataFrame:
    """The ``wanted`` columns of the rows meeting ``conditions(chunk)`` (a function of a list of keys giving
    the WHERE conditions), ``chunk_size`` of ``keys`` per query, concatenated; no keys: an empty frame of
    those columns (from a query that selects nothing, so the dtypes are the reader's)."""
    parts = []
    for start in range(0, len(keys), chunk_size):
        chunk = keys[start:start + chunk_size]
        part = reader.read(select(*wanted).where(*conditions(chunk)), wanted)
        if len(part):  # an empty part's columns are object: concatenated, they would make Int64 object
            parts.append(part)
    if parts:
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return reader.read(select(*wanted).where(false()), wanted)


def read_shard_frames(engine: Engine, columns: Mapping[str, tuple[str, ...]], lo: str | None,
                      hi: str | None) -> dict[str, pd.DataFrame]:
    """Like ``read_frames``, but only what belongs to the customers with ``lo <= id < hi``, and the whole catalogue.

    A bound of None is open (the first shard has no ``lo``, the last no ``hi``), so shards whose
    bounds follow each other cover every customer id, including one created after the bounds
    were chosen. Ranges compare ids as the database orders them (the order ``read_frames``
    returns customers in), so the shards' customers, concatenated in shard order, are the
    whole read's. Rows belong to a customer as in ``read_customer_frames``: by their
    ``customer`` column, refunds and disputes through their charge. One query per table, in one
    transaction; memory is bounded by the shard, not by the mirror.
    """
    frames: dict[str, pd.DataFrame] = {}
    with frame_reads(engine) as reader:
        # A shard is a range of the (customer, version_ts) indexes: at Postgres' default random-page cost
        # the planner scans every charge instead (docs/performance.md, "The afternoon of 2026-12-03").
        reader.favour_index_scans()
        for name, table in MIRROR_FRAME_TABLES.items():
            cols = _requested(name, columns)
            if not cols:
                continue
            wanted = [table.c[c] for c in cols]
            # Customer ids are never null; a child row without a customer is in no shard.
            stmt = select(*wanted).where(*_belonging(name, table, lambda column: _in_range(
                column, lo, hi, not_null=column is not table.c.id)))
            if name == "customers":
                stmt = stmt.order_by(table.c.id)
            frames[name] = reader.read(stmt, wanted)
    return frames


def _belonging(name: str, table, selects_customers) -> list:
    """The conditions keeping the rows of frame ``name`` that belong to the customers ``selects_customers``
    picks (a function of a customer-id column giving conditions on it): live customers by id, child rows by
    their ``customer`` column, refunds and disputes through their charge; the catalogue is read whole."""
    if name == "customers":
        return [*selects_customers(table.c.id), table.c.deleted == false()]
    if name in _BY_CHARGE:
        charges = MIRROR_FRAME_TABLES["charges"]
        return [table.c.charge.in_(select(charges.c.id).where(*selects_customers(charges.c.customer)))]
    if name in _BY_CUSTOMER_COLUMN:
        return selects_customers(table.c.customer)
    return []


def _in_range(column, lo: str | None, hi: str | None, not_null: bool = False) -> list:
    """``lo <= column < hi`` with None meaning unbounded (a row without a customer is in no shard)."""
    conditions = [column.is_not(None)] if not_null and lo is None and hi is None else []
    if lo is not None:
        conditions.append(column >= lo)
    if hi is not None:
        conditions.append(column < hi)
    return conditions
