"""The bookkeeping of acknowledged batches commits without waiting for the disk, and only it.

On PostgreSQL the transaction recording a batch Segment acknowledged runs with
``synchronous_commit = off`` (``statements.commit_without_waiting_for_disk``): what the
server may lose on a machine failure is re-sent under the same messageIds. The setting is
``SET LOCAL``: the next transaction on the same pooled connection waits for the disk again.
The check reads the setting from the server, inside the transaction, as the audit row goes in.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from s2s_pipeline.store.state_store import StateStore

pytestmark = pytest.mark.postgres


def _audit_row(message_id: str) -> dict:
    return {"message_id": message_id, "call_type": "identify", "event": None, "stripe_customer_id": "cus_A",
            "trait_names": ["mrr"], "property_names": None, "integrations": None, "run_id": "run_1",
            "acknowledged_at": 1_700_000_000}


@pytest.fixture
def store(postgres_url):
    from sqlalchemy import create_engine

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # a fresh schema per test, as conftest's state_url makes
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    admin.dispose()
    store = StateStore.from_url(postgres_url)
    yield store
    store.dispose()


def _setting_seen_by_audit_insert(store: StateStore, record) -> list[str]:
    """``synchronous_commit`` as the server has it when the audit INSERT of ``record()`` has run."""
    seen: list[str] = []

    def after(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO SEGMENT_DELIVERY_AUDIT"):
            probe = conn.connection.cursor()
            probe.execute("SHOW synchronous_commit")
            seen.append(probe.fetchone()[0])
            probe.close()

    event.listen(store.engine, "after_cursor_execute", after)
    try:
        record()
    finally:
        event.remove(store.engine, "after_cursor_execute", after)
    return seen


def _setting_now(store: StateStore) -> str:
    with store.engine.connect() as conn:
        return conn.execute(text("SHOW synchronous_commit")).scalar_one()


def test_profile_bookkeeping_commits_without_waiting_and_resets(store):
    assert _setting_now(store) == "on"  # the server's default, which every other write keeps
    seen = _setting_seen_by_audit_insert(
        store, lambda: store.record_acknowledged_profiles([], [], [_audit_row("msg_1")], as_of=1_700_000_000))
    assert seen == ["off"]
    assert store.delivery_audit.count() == 1  # committed
    assert _setting_now(store) == "on"  # SET LOCAL: gone with the transaction (the pool reuses the connection)


def test_track_bookkeeping_commits_without_waiting_and_resets(store):
    seen = _setting_seen_by_audit_insert(
        store, lambda: store.record_acknowledged_track([], {}, {}, [_audit_row("msg_2")]))
    assert seen == ["off"]
    assert store.delivery_audit.count() == 1
    assert _setting_now(store) == "on"


def test_other_writes_still_wait_for_the_disk(store):
    """The audit appended outside the bookkeeping (the same repository, its own transaction) waits as usual."""
    seen = _setting_seen_by_audit_insert(store, lambda: store.delivery_audit.append([_audit_row("msg_3")]))
    assert seen == ["on"]
