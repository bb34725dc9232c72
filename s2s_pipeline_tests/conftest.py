"""Shared fixtures: Stripe example objects, state stores on SQLite and Postgres."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
FIXTURES3 = REPO.parent / "shared" / "stripe-fixtures" / "fixtures3.json"
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def stripe_fixtures() -> dict:
    """Stripe's official example objects (current API shapes), keyed by resource name."""
    if not FIXTURES3.exists():
        pytest.skip(f"Stripe fixtures not found at {FIXTURES3}")
    return json.loads(FIXTURES3.read_text())["resources"]


def _pg_admin_url() -> str | None:
    url = os.environ.get("S2S_TEST_DATABASE_URL")
    if url:
        return url
    if os.environ.get("CI") == "true":
        return DEFAULT_PG_URL
    return None


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh, empty Postgres database for this test session (dropped afterwards).

    Uses S2S_TEST_DATABASE_URL (CI: postgresql://postgres@127.0.0.1:5432/test).
    Skipped with a visible reason when unset outside CI; a failure in CI.
    """
    from s2s_pipeline.store.db import normalize_url

    admin = _pg_admin_url()
    if admin is None:
        pytest.skip("Postgres tests need S2S_TEST_DATABASE_URL (CI sets it)")
    admin = normalize_url(admin)
    name = f"s2s_test_{uuid.uuid4().hex[:10]}"
    try:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - report any connection problem
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Postgres at {admin} is unreachable: {exc}")
        pytest.skip(f"Postgres unreachable at {admin}: {exc}")
    base, _, _ = admin.rpartition("/")
    yield f"{base}/{name}"
    with engine.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request, tmp_path):
    """A state store URL on each supported backend (Postgres: fresh schema per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    base = request.getfixturevalue("postgres_url")
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return base


@pytest.fixture
def state_store(state_url):
    from s2s_pipeline.store.state_store import StateStore

    store = StateStore.from_url(state_url)
    yield store
    store.dispose()


@pytest.fixture
def mirror(state_store):
    return state_store.mirror
