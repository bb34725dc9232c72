"""The state store's connection: URL resolution, engine, automatic schema migration (``store.migrations``)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from s2s_pipeline.store import (  # noqa: F401 - register tables
    changed_objects, privacy_schema, profile_queue, trait_refresh_plans)
from s2s_pipeline.store.migrations import migrate


class StateStoreConfigError(ValueError):
    """S2S_DATABASE_URL is malformed or the store cannot be reached; the message says which."""


def default_database_url() -> str:
    """A SQLite file under $DAGSTER_HOME (or ./.dagster_home when unset)."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").expanduser().resolve()
    return f"sqlite:///{home / 's2s_state.db'}"


def normalize_url(url: str) -> str:
    """Map plain ``postgresql://`` to psycopg2, the driver dagster-postgres also uses.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, which is not installed
    (and would break dagster-postgres if it were).
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def make_engine(url: str | None = None) -> Engine:
    """An engine for the state store, with the schema created or migrated."""
    raw = url or default_database_url()
    try:
        parsed = make_url(normalize_url(raw))
    except ArgumentError as exc:
        raise StateStoreConfigError(f"S2S_DATABASE_URL is malformed (expected a SQLAlchemy URL such as "
                                    f"sqlite:///state.db or postgresql+psycopg2://user@host/db): {exc}") from exc
    except ValueError as exc:  # SQLAlchemy parses the port with int()
        raise StateStoreConfigError(f"S2S_DATABASE_URL has a malformed port (expected a number such as "
                                    f"host:5432): {exc}") from exc
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise StateStoreConfigError(f"S2S_DATABASE_URL has port {parsed.port}, outside 1..65535")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: a failed statement's message (which reaches the Dagster event log) shows the SQL,
    # never the values bound to it (user ids, emails, names).
    kwargs: dict = {"future": True, "hide_parameters": True}
    if parsed.get_backend_name() == "postgresql":
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
    try:
        engine = create_engine(parsed, **kwargs)
    except Exception as exc:  # missing driver, bad option
        raise StateStoreConfigError(f"S2S_DATABASE_URL cannot be used: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        _tune_sqlite(engine)
    try:
        migrate(engine)
    except OperationalError as exc:
        safe = parsed.render_as_string(hide_password=True)
        raise StateStoreConfigError(f"state store at {safe} (S2S_DATABASE_URL) is unreachable: {exc.orig}") from exc
    return engine


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - DBAPI objects
        cur = dbapi_conn.cursor()
        # WAL lets the UI read while a run writes; busy_timeout rides out short locks.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
