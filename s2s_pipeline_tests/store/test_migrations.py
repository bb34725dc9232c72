"""Schema migrations: many processes opening a fresh store at once, widening, skipping a current schema.

Real processes (``multiprocessing`` with ``spawn``, as Dagster's step
processes are), released together by a barrier, on SQLite and Postgres.
"""

from __future__ import annotations

import traceback

import pytest
from sqlalchemy import String, inspect, select, text

from s2s_pipeline.store import schema
from s2s_pipeline.store.db import make_engine
from s2s_pipeline_tests.concurrency import run_together

PROCESSES = 6


def _open_store(url: str, barrier, results) -> None:
    """One process: wait for the others, then open (and migrate) the store."""
    try:
        barrier.wait(timeout=60)
        engine = make_engine(url)
        engine.dispose()
        results.put("ok")
    except BaseException:  # noqa: BLE001 - report every failure to the parent
        results.put(traceback.format_exc())


def test_processes_starting_together_on_a_fresh_store_all_succeed_with_one_version_row(state_url):
    outcomes = run_together(_open_store, [(state_url,)] * PROCESSES, timeout=120)
    failures = [o for o in outcomes if o != "ok"]
    assert failures == [], failures[0]

    engine = make_engine(state_url)
    try:
        inspector = inspect(engine)
        for table in schema.metadata.sorted_tables:
            assert inspector.has_table(table.name), table.name
            assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys()), table.name
        with engine.connect() as conn:
            rows = conn.execute(select(schema.schema_info)).all()
        assert [r.key for r in rows] == ["schema_version"]
    finally:
        engine.dispose()


def test_a_current_schema_is_not_migrated_again(state_url):
    engine = make_engine(state_url)
    statements: list[str] = []
    engine.dispose()
    engine = make_engine(state_url)
    try:
        from sqlalchemy import event

        from s2s_pipeline.store.db import migrate

        event.listen(engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *args: statements.append(statement))
        migrate(engine)
        assert not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "INSERT", "UPDATE",
                                                                              "DELETE"))], statements
    finally:
        engine.dispose()
@pytest.mark.postgres
def test_migration_widens_a_string_column_on_postgres(postgres_url):
    """A store created when ids were 255 characters gets the wider columns without losing rows."""
    admin = make_engine(postgres_url)
    try:
        with admin.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        admin.dispose()
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE segment_identity_map ALTER COLUMN user_id TYPE VARCHAR(255)"))
        conn.execute(text("UPDATE s2s_schema_info SET value = 'old'"))
        conn.execute(schema.identity_map.insert().values(stripe_customer_id="cus_1", user_id="u" * 200,
                                                         source="metadata", updated_at=1))
    engine.dispose()
    engine = make_engine(postgres_url)
    try:
        (column,) = [c for c in inspect(engine).get_columns("segment_identity_map") if c["name"] == "user_id"]
        assert isinstance(column["type"], String)
        assert column["type"].length == schema.identity_map.c.user_id.type.length > 255
        with engine.connect() as conn:
            assert conn.execute(select(schema.identity_map.c.user_id)).scalar_one() == "u" * 200
    finally:
        engine.dispose()
