"""Two ``customer_traits`` steps replacing the trait table at once (finding 9 of issue #11).

Real processes (``multiprocessing`` with ``spawn``, as Dagster's step
processes are), released together by a barrier, on SQLite and Postgres. Each
writes a table of its own many times; every write must succeed, the table
left behind must be one writer's whole table, and no staging table may stay.
"""

from __future__ import annotations

import traceback

import pandas as pd
import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.traits_table import TraitsTable
from s2s_pipeline_tests.concurrency import run_together

WRITERS = 2
WRITES_EACH = 15
CUSTOMERS = 500


def _traits_of(writer: int) -> pd.DataFrame:
    return pd.DataFrame({
        "stripe_customer_id": [f"cus_{i:05d}" for i in range(CUSTOMERS)],
        "written_by": [writer] * CUSTOMERS,
        "mrr_minor": list(range(CUSTOMERS)),
    })


def _write_traits(url: str, writer: int, barrier, results) -> None:
    """One step process: open the store, wait for the other, replace the table again and again."""
    try:
        engine = make_engine(url)
        table = TraitsTable(engine)
        traits = _traits_of(writer)
        barrier.wait(timeout=60)
        for _ in range(WRITES_EACH):
            table.write(traits)
        engine.dispose()
        results.put("ok")
    except BaseException:  # noqa: BLE001 - report every failure to the parent
        results.put(traceback.format_exc())


def test_two_processes_replacing_the_trait_table_at_once_both_succeed(state_url):
    make_engine(state_url).dispose()  # migrated once, so the writers race on the trait table only
    outcomes = run_together(_write_traits, [(state_url, w) for w in range(WRITERS)])
    failures = [o for o in outcomes if o != "ok"]
    assert failures == [], failures[0]

    engine = make_engine(state_url)
    try:
        stored = TraitsTable(engine).read()
        assert len(stored) == CUSTOMERS
        assert stored["written_by"].nunique() == 1, "the table mixes two writers' rows"
        assert sorted(stored["stripe_customer_id"]) == sorted(_traits_of(0)["stripe_customer_id"])
        leftovers = [t for t in inspect(engine).get_table_names() if t.startswith("customer_traits_staging")]
        assert leftovers == []
    finally:
        engine.dispose()


def test_a_failed_write_keeps_the_last_table_and_leaves_no_staging_table(state_url):
    engine = make_engine(state_url)
    try:
        table = TraitsTable(engine)
        table.write(_traits_of(0))
        # Two rows for one customer: the unique index, the last statement of the swap, refuses them.
        duplicated = pd.concat([_traits_of(1), _traits_of(1).head(1)], ignore_index=True)
        with pytest.raises(IntegrityError):
            table.write(duplicated)
        stored = table.read()
        assert len(stored) == CUSTOMERS and set(stored["written_by"]) == {0}
        leftovers = [t for t in inspect(engine).get_table_names() if t.startswith("customer_traits_staging")]
        assert leftovers == []
    finally:
        engine.dispose()
