"""Customer-level reads and writes of the ``customer_traits`` table, for the incremental refresh.

``traits_table.TraitsTable`` replaces the whole table (a full recompute);
this module replaces the rows of some customers and reads them back, in one
transaction each, so the diff can read only the customers that changed.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd
from sqlalchemy import Engine, bindparam, column, delete, insert, inspect, select, table, text

from s2s_pipeline.store.keyed_reads import KeyedRead, read_keyed
from s2s_pipeline.store.statements import chunks
from s2s_pipeline.store.traits_table import TABLE, _check_staging_name, _storable, write_rows

_ID_CHUNK = 2000


class TraitRows:
    """Rows of the ``customer_traits`` table by customer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def exists(self) -> bool:
        """Whether a trait table has been computed at all."""
        return inspect(self.engine).has_table(TABLE)

    def replace_customers(self, traits: pd.DataFrame, customer_ids: Iterable[str]) -> None:
        """Replace the rows of ``customer_ids`` with ``traits`` (a customer of the ids without a row in
        ``traits``, e.g. deleted in Stripe, loses its row), in one transaction.

        The table must exist (a full ``TraitsTable.write`` creates it) with the columns of ``traits``.
        """
        ids = sorted({str(i) for i in customer_ids} | set(traits["stripe_customer_id"].astype(str)))
        frame = _storable(traits)
        with self.engine.begin() as conn:
            for chunk in chunks(ids, _ID_CHUNK):
                conn.execute(text(f"DELETE FROM {TABLE} WHERE stripe_customer_id IN :ids")
                             .bindparams(_expanding("ids")), {"ids": list(chunk)})
            if len(frame):
                write_rows(conn, TABLE, frame, if_exists="append")

    def replace_from_staging(self, staging: str, customer_ids, conn) -> None:
        """Replace the rows of the customers ``customer_ids`` (a subquery of ids) with the staging table's
        rows, in ``conn``'s transaction (a customer without a staged row, e.g. deleted, loses its row)."""
        _check_staging_name(staging)
        names = [c["name"] for c in inspect(conn).get_columns(staging)]
        live = table(TABLE, *(column(n) for n in names))
        staged = table(staging, *(column(n) for n in names))
        conn.execute(delete(live).where(live.c.stripe_customer_id.in_(customer_ids)))
        conn.execute(insert(live).from_select(names, select(*staged.c)))

    def block_starts(self, block: int) -> list[str]:
        """The first customer id of each run of ``block`` customers of the trait table, in id order
        (empty if never computed): the bounds of blocks of about ``block`` customers."""
        if not self.exists():
            return []
        with self.engine.connect() as conn:
            return list(conn.execute(text(
                f"SELECT stripe_customer_id FROM (SELECT stripe_customer_id, row_number() OVER "
                f"(ORDER BY stripe_customer_id) AS n FROM {TABLE}) numbered WHERE (n - 1) % :block = 0 "
                "ORDER BY stripe_customer_id"), {"block": int(block)}).scalars())

    def read_range(self, lo: str | None, hi: str | None) -> pd.DataFrame:
        """The stored traits of the customers with ``lo <= id < hi`` (None: unbounded); empty if never computed."""
        if not self.exists():
            return pd.DataFrame()
        where, params = _range_condition("stripe_customer_id", lo, hi)
        with self.engine.connect() as conn:
            return pd.read_sql(text(f"SELECT * FROM {TABLE} WHERE {where}"), conn, params=params)

    def read_customers(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        """The stored traits of the given customers (absent ones have no row); empty if never computed."""
        if not self.exists():
            return pd.DataFrame()
        return read_keyed(self.engine, [self.keyed(customer_ids)])[0]

    def keyed(self, customer_ids: Iterable[str]) -> KeyedRead:
        """The read of the given customers' rows, every column (``keyed_reads``: with others, in one snapshot)."""
        return KeyedRead(TABLE, "stripe_customer_id", customer_ids)

    def row_counts(self) -> tuple[int, int]:
        """(rows, distinct customers) of the table: the ``one_row_per_customer`` check without reading it."""
        if not self.exists():
            return 0, 0
        with self.engine.connect() as conn:
            rows, distinct = conn.execute(
                text(f"SELECT COUNT(*), COUNT(DISTINCT stripe_customer_id) FROM {TABLE}")).one()
        return int(rows), int(distinct)


    def totals(self) -> dict:
        """Table-wide counts and MRR sums, aggregated in SQL (the incremental run's plots without reading the table).

        ``mrr_minor_by_currency`` sums exact minor units per currency; ``tiers`` counts customers per
        ``spend_tier`` (None for no tier); the three counts are those of ``traits.summary``.
        """
        if not self.exists():
            return {"paying_customers": 0, "customers_with_mrr": 0, "delinquent_customers": 0,
                    "mrr_minor_by_currency": {}, "tiers": {}}
        with self.engine.connect() as conn:
            paying, with_mrr, delinquent = conn.execute(text(
                f"SELECT COALESCE(SUM(CASE WHEN payment_count > 0 THEN 1 ELSE 0 END), 0), "
                f"COALESCE(SUM(CASE WHEN mrr_minor > 0 THEN 1 ELSE 0 END), 0), "
                f"COALESCE(SUM(CASE WHEN payment_delinquent THEN 1 ELSE 0 END), 0) FROM {TABLE}")).one()
            mrr = conn.execute(text(f"SELECT currency, SUM(mrr_minor) FROM {TABLE} "
                                    f"WHERE currency IS NOT NULL GROUP BY currency")).all()
            tiers = conn.execute(text(f"SELECT spend_tier, COUNT(*) FROM {TABLE} GROUP BY spend_tier")).all()
        return {"paying_customers": int(paying), "customers_with_mrr": int(with_mrr),
                "delinquent_customers": int(delinquent),
                "mrr_minor_by_currency": {str(cur): int(total or 0) for cur, total in mrr},
                "tiers": {tier: int(count) for tier, count in tiers}}


def _expanding(name: str):
    return bindparam(name, expanding=True)


def _range_condition(column: str, lo: str | None, hi: str | None) -> tuple[str, dict]:
    """SQL text ``lo <= column < hi`` (either bound may be None) and its parameters."""
    parts, params = [], {}
    if lo is not None:
        parts.append(f"{column} >= :lo")
        params["lo"] = lo
    if hi is not None:
        parts.append(f"{column} < :hi")
        params["hi"] = hi
    return (" AND ".join(parts) or "1 = 1"), params
