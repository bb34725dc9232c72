"""``statements.insert_rows``: upserts of many rows as multi-row statements, with row-by-row results.

The statements are seen with a ``before_cursor_execute`` listener, which records the rows in each
statement's VALUES: without RETURNING, an executemany of ``INSERT ... ON CONFLICT`` reaches the
driver as a one-row statement with a list of parameter sets, which psycopg2 runs one row at a time;
``insert_rows`` makes it one statement of many rows per chunk, on both backends.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, literal, select

from s2s_pipeline.store import schema
from s2s_pipeline.store.statements import insert_for, insert_ignoring_existing, insert_rows, upsert_by_key

p = schema.pushed_traits


@pytest.fixture
def engine(state_store):
    return state_store.engine


def _counting(engine) -> list[int]:
    """Rows in the VALUES of each INSERT sent to the driver from now on."""
    executed: list[int] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("INSERT"):
            executed.append(statement.count("), (") + 1)

    return executed


def _stored(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r.stripe_customer_id: (r.user_id, r.group_as_of)
                for r in conn.execute(select(p.c.stripe_customer_id, p.c.user_id, p.c.group_as_of))}


def test_many_rows_go_in_one_statement_per_chunk(engine):
    rows = [{"stripe_customer_id": f"cus_{i:05d}", "user_id": f"u{i}"} for i in range(1_200)]
    executed = _counting(engine)
    with engine.begin() as conn:
        upsert_by_key(conn, engine.dialect.name, p, rows, "stripe_customer_id")
    # 1,200 rows in chunks of 500: 500 + 500 + 200, one multi-row statement each (not 1,200 statements)
    assert executed == [500, 500, 200]
    assert len(_stored(engine)) == 1_200

    # and the update path: the same 1,200 keys again, new values
    executed.clear()
    with engine.begin() as conn:
        upsert_by_key(conn, engine.dialect.name, p, [{**r, "user_id": r["user_id"] + "b"} for r in rows],
                      "stripe_customer_id")
    assert executed == [500, 500, 200]
    assert _stored(engine)["cus_00007"] == ("u7b", None)


def test_a_key_repeated_in_one_call_ends_as_row_by_row_would(engine):
    # Postgres refuses a multi-row ON CONFLICT DO UPDATE touching a row twice: the repeats go to later
    # statements, in order, so the last row of a key wins.
    rows = [{"stripe_customer_id": "cus_a", "user_id": "first"}, {"stripe_customer_id": "cus_b", "user_id": "b"},
            {"stripe_customer_id": "cus_a", "user_id": "second"}, {"stripe_customer_id": "cus_a", "user_id": "third"}]
    executed = _counting(engine)
    with engine.begin() as conn:
        upsert_by_key(conn, engine.dialect.name, p, rows, "stripe_customer_id")
    assert executed == [2, 1, 1]  # [a, b], [a], [a]
    assert _stored(engine) == {"cus_a": ("third", None), "cus_b": ("b", None)}

    with engine.begin() as conn:
        insert_ignoring_existing(conn, engine.dialect.name, p, [
            {"stripe_customer_id": "cus_c", "user_id": "c1"}, {"stripe_customer_id": "cus_a", "user_id": "no"},
            {"stripe_customer_id": "cus_c", "user_id": "c2"}], "stripe_customer_id")
    assert _stored(engine) == {"cus_a": ("third", None), "cus_b": ("b", None), "cus_c": ("c1", None)}


def test_returns_only_the_rows_written_and_keeps_bound_values_of_the_update_clause(engine):
    with engine.begin() as conn:
        upsert_by_key(conn, engine.dialect.name, p, [
            {"stripe_customer_id": "cus_old", "user_id": "u", "group_as_of": 100},
            {"stripe_customer_id": "cus_new", "user_id": "u", "group_as_of": 300}], "stripe_customer_id")
    stmt = insert_for(engine.dialect.name, p)
    # A guard on the stored time and a value bound in the DO UPDATE clause (a literal: the batching must
    # not mix it up with the rows' own parameters).
    stmt = stmt.on_conflict_do_update(
        index_elements=[p.c.stripe_customer_id],
        set_={"user_id": func.coalesce(stmt.excluded.user_id, literal("none")), "group_as_of": stmt.excluded.group_as_of},
        where=p.c.group_as_of <= stmt.excluded.group_as_of)
    rows = [{"stripe_customer_id": "cus_new", "user_id": "x", "group_as_of": 200},  # older than stored 300: kept
            {"stripe_customer_id": "cus_old", "user_id": None, "group_as_of": 200},  # newer than 100: written
            {"stripe_customer_id": "cus_fresh", "user_id": "f", "group_as_of": 200}]  # inserted
    with engine.begin() as conn:
        written = insert_rows(conn, stmt, rows, "stripe_customer_id")
    assert sorted(written) == ["cus_fresh", "cus_old"]
    assert _stored(engine) == {"cus_old": ("none", 200), "cus_new": ("u", 300), "cus_fresh": ("f", 200)}


def test_composite_keys_come_back_as_tuples(engine):
    c = schema.metadata.tables["mirror_changed_objects"]
    stmt = insert_for(engine.dialect.name, c)
    stmt = stmt.on_conflict_do_update(index_elements=[c.c.object_type, c.c.object_id],
                                      set_={"token": stmt.excluded.token})
    rows = [{"object_type": "charge", "object_id": "ch_1", "token": "t1"},
            {"object_type": "customer", "object_id": "ch_1", "token": "t1"},
            {"object_type": "charge", "object_id": "ch_1", "token": "t2"}]
    with engine.begin() as conn:
        written = insert_rows(conn, stmt, rows, ("object_type", "object_id"))
        stored = set(conn.execute(select(c.c.object_type, c.c.object_id, c.c.token)).tuples())
    assert sorted(written) == [("charge", "ch_1"), ("charge", "ch_1"), ("customer", "ch_1")]
    assert stored == {("charge", "ch_1", "t2"), ("customer", "ch_1", "t1")}
