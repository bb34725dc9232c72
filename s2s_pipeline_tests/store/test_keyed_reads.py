"""Keyed reads (``store.keyed_reads``): the rows of the given keys, and the same frame through Arrow as
through psycopg2 (what the profile pass diffs must not depend on the read path).

Rows with every kind of value and null the three tables hold: integers with and without nulls,
floats, text, booleans with nulls, and a column no row has a value in.
"""

from __future__ import annotations

import pandas as pd
import pytest

from s2s_pipeline.store.keyed_reads import KeyedRead, read_keyed
from s2s_pipeline.store.state_store import StateStore


@pytest.fixture
def store(state_url):
    store = StateStore.from_url(state_url)
    yield store
    store.dispose()


def _fill(store: StateStore) -> None:
    store.pushed_traits.record([
        {"stripe_customer_id": "cus_A", "user_id": "u_a", "trait_mrr": 12.5, "trait_payment_count": 3,
         "trait_payment_delinquent": True, "identify_pushed_at": 1_700_000_000},
        {"stripe_customer_id": "cus_B", "user_id": None, "trait_mrr": None, "trait_payment_count": None,
         "trait_payment_delinquent": None, "identify_pushed_at": 1_700_000_001},
        {"stripe_customer_id": "cus_C'quote", "user_id": "u_c", "trait_mrr": 0.0, "trait_payment_count": 0,
         "trait_payment_delinquent": False, "identify_pushed_at": None},
    ])
    store.traits.write(pd.DataFrame({
        "stripe_customer_id": ["cus_A", "cus_B", "cus_C'quote"],
        "email": ["a@example.org", None, "c@example.org"],
        "mrr": [12.5, None, 0.0],
        "payment_count": pd.array([3, None, 0], dtype="Int64"),
        "payment_delinquent": pd.array([True, None, False], dtype="boolean"),
    }))


def test_reads_exactly_the_rows_of_the_keys(store):
    _fill(store)
    pushed = store.pushed_traits.read_for(["cus_A", "cus_C'quote", "cus_absent", "cus_A"])
    assert sorted(pushed["stripe_customer_id"]) == ["cus_A", "cus_C'quote"]
    assert list(pushed.columns)[:2] == ["stripe_customer_id", "user_id"]  # the table's column order
    traits = store.trait_rows.read_customers(["cus_B"])
    assert traits["stripe_customer_id"].tolist() == ["cus_B"]
    assert store.identities.read_for([]).empty


def test_no_keys_give_an_empty_frame_with_the_columns(store):
    _fill(store)
    empty = store.pushed_traits.read_for([])
    assert empty.empty and "trait_mrr" in empty.columns


@pytest.mark.postgres
def test_arrow_and_cursor_paths_give_the_same_frame(postgres_url, monkeypatch):
    from sqlalchemy import create_engine, text

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    admin.dispose()
    store = StateStore.from_url(postgres_url)
    try:
        _fill(store)
        keys = ["cus_A", "cus_B", "cus_C'quote"]
        reads = {
            "pushed": lambda: store.pushed_traits.read_for(keys),
            "traits": lambda: store.trait_rows.read_customers(keys),
            "identities (no rows)": lambda: store.identities.read_for(keys),
            "pushed (no keys)": lambda: store.pushed_traits.read_for([]),
            "one row, columns without any value": lambda: store.pushed_traits.read_for(["cus_B"]),
        }
        for name, read in reads.items():
            arrow = read()
            monkeypatch.setenv("S2S_ARROW_READS", "0")
            cursor = read()
            monkeypatch.delenv("S2S_ARROW_READS")
            arrow = arrow.sort_values("stripe_customer_id", ignore_index=True) if len(arrow) else arrow
            cursor = cursor.sort_values("stripe_customer_id", ignore_index=True) if len(cursor) else cursor
            pd.testing.assert_frame_equal(arrow, cursor, check_dtype=True, obj=name)
        # and the integer column with a null is what from_records makes of it: float64 with NaN
        assert str(store.pushed_traits.read_for(keys)["trait_payment_count"].dtype) == "float64"
    finally:
        store.dispose()


def test_many_keys_are_read_in_chunks(store, monkeypatch):
    import s2s_pipeline.store.keyed_reads as keyed_reads

    _fill(store)
    monkeypatch.setattr(keyed_reads, "ARROW_CHUNK", 2)
    monkeypatch.setattr(keyed_reads, "SQLITE_CHUNK", 2)
    [frame] = read_keyed(store.engine, [KeyedRead("segment_pushed_traits", "stripe_customer_id",
                                                  ["cus_A", "cus_B", "cus_C'quote", "cus_D"])])
    assert sorted(frame["stripe_customer_id"]) == ["cus_A", "cus_B", "cus_C'quote"]


def test_profile_rows_are_the_three_reads_in_one_snapshot(store, monkeypatch):
    import s2s_pipeline.store.arrow_reads as arrow_reads

    _fill(store)
    keys = ["cus_A", "cus_C'quote", "cus_absent"]
    opened = []
    real_open = arrow_reads.ArrowReads.open.__func__

    def counting_open(cls, engine, snapshot=None):
        opened.append(snapshot)
        return real_open(cls, engine, snapshot)

    monkeypatch.setattr(arrow_reads.ArrowReads, "open", classmethod(counting_open))
    rows = store.profile_rows(keys)
    if store.engine.dialect.name == "postgresql":
        assert opened == [None]  # one connection, one snapshot, for the three tables
    opened.clear()
    pd.testing.assert_frame_equal(rows.traits, store.trait_rows.read_customers(keys))
    pd.testing.assert_frame_equal(rows.pushed, store.pushed_traits.read_for(keys))
    pd.testing.assert_frame_equal(rows.identities, store.identities.read_for(keys))


def test_profile_rows_before_the_first_refresh(state_url):
    store = StateStore.from_url(state_url)
    try:
        rows = store.profile_rows(["cus_A"])
        assert rows.traits.empty and rows.pushed.empty and rows.identities.empty
    finally:
        store.dispose()
