"""Fresh Postgres databases for one harness session, dropped afterwards.

The daemon harness in Postgres mode keeps Dagster's storage (the shipped
``dagster.yaml``: ``DAGSTER_PG_URL``) and the state store (``S2S_DATABASE_URL``)
in two databases of their own, as production does, on the server of an admin
URL such as ``postgresql://postgres@127.0.0.1:5432/test``. Nothing that
existed before is touched: the databases are created with random names and
dropped (after their connections are ended) on exit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def fresh_databases(admin_url: str, prefixes: Sequence[str]) -> Iterator[list[str]]:
    """One new, empty database per prefix (``<prefix>_<10 hex>``) on ``admin_url``'s server; yields their
    ``postgresql+psycopg2://`` URLs (what dagster-postgres needs) in the order of ``prefixes``."""
    from sqlalchemy import create_engine, text

    from s2s_pipeline.store.db import normalize_url

    admin_url = normalize_url(admin_url)
    if not admin_url.startswith("postgresql"):
        raise ValueError(f"not a Postgres URL: {admin_url.split('://', 1)[0]}://...")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    base = admin_url.rpartition("/")[0]
    created: list[str] = []
    try:
        with admin.connect() as conn:
            for prefix in prefixes:
                name = f"{prefix}_{uuid.uuid4().hex[:10]}"
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                created.append(name)
        yield [f"{base}/{name}" for name in created]
    finally:
        with admin.connect() as conn:
            for name in created:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                             {"n": name})
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


__all__ = ["fresh_databases"]
