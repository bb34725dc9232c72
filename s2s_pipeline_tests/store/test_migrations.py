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
        # recognised by its recorded fingerprint: no table reflected (every step of every run opens the store)
        assert len(statements) <= 3, statements
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


def test_a_store_indexed_by_customer_alone_gets_the_customer_version_index_and_loses_the_old_one(state_url):
    # A store made before the (customer, version_ts) indexes: the three mirror tables indexed by customer
    # alone. Migrating builds the new indexes, then drops the ones they replace; the rows stay.
    engine = make_engine(state_url)
    tables = ("stripe_subscriptions", "stripe_invoices", "stripe_charges")
    try:
        with engine.begin() as conn:
            conn.execute(schema.charges.insert().values(id="ch_1", customer="cus_1", version_ts=5, deleted=False))
            for table in tables:
                conn.execute(text(f"DROP INDEX ix_{table}_customer_version_ts"))
                conn.execute(text(f"CREATE INDEX ix_{table}_customer ON {table} (customer)"))
            conn.execute(schema.schema_info.update().values(value="an older schema"))
        engine.dispose()
        engine = make_engine(state_url)  # opening the store migrates it
        inspector = inspect(engine)
        for table in tables:
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table)}
            assert indexes[f"ix_{table}_customer_version_ts"] == ["customer", "version_ts"], table
            assert f"ix_{table}_customer" not in indexes, table
        with engine.connect() as conn:
            assert conn.execute(select(schema.charges.c.customer)).scalars().all() == ["cus_1"]
    finally:
        engine.dispose()


def test_a_store_with_the_retired_indexes_loses_them_and_gets_their_replacement(state_url):
    # A store made before the charges' (created, customer) index and with the delivery audit indexed
    # by message_id: migrating builds the new index, then drops the charges' index on created alone
    # and the audit's message_id index (neither holds data); the rows stay.
    engine = make_engine(state_url)
    try:
        with engine.begin() as conn:
            conn.execute(schema.charges.insert().values(id="ch_1", customer="cus_1", version_ts=5, deleted=False,
                                                        created=100))
            conn.execute(text("DROP INDEX ix_stripe_charges_created_customer"))
            conn.execute(text("CREATE INDEX ix_stripe_charges_created ON stripe_charges (created)"))
            conn.execute(text("CREATE INDEX ix_segment_delivery_audit_message_id ON segment_delivery_audit (message_id)"))
            conn.execute(schema.schema_info.update().values(value="an older schema"))
        engine.dispose()
        engine = make_engine(state_url)  # opening the store migrates it
        inspector = inspect(engine)
        charges = {i["name"]: i["column_names"] for i in inspector.get_indexes("stripe_charges")}
        assert charges["ix_stripe_charges_created_customer"] == ["created", "customer"]
        assert "ix_stripe_charges_created" not in charges
        audit = {i["name"] for i in inspector.get_indexes("segment_delivery_audit")}
        assert "ix_segment_delivery_audit_message_id" not in audit
        assert "ix_segment_delivery_audit_stripe_customer_id" in audit  # the export's look-up stays
        with engine.connect() as conn:
            assert conn.execute(select(schema.charges.c.id)).scalars().all() == ["ch_1"]
    finally:
        engine.dispose()
