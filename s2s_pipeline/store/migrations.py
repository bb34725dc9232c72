"""Bring a state store's schema up to ``store.schema``: once, under a lock, skipped when current.

Every step process opens the store, and in the nightly job several start in
the same second. The schema in the database is compared with the SQLAlchemy
metadata by Alembic's autogenerate (``compare_metadata``), so tables and
columns added to ``store/schema.py`` migrate without a hand-written revision,
and the differences are applied with Alembic's ``Operations``:

- missing tables are created (with their indexes), missing columns added
  (nullable, as rows already exist), missing indexes of existing tables created;
- a ``String`` column shorter than the schema's is widened (Postgres; SQLite
  ignores lengths);
- nothing is ever dropped or narrowed: tables the schema does not describe
  (``customer_traits`` is written by pandas) stay as they are. The one exception holds no data:
  an index the schema retired (``schema.RETIRED_INDEXES``: replaced by a wider one, or not worth
  its cost on every write) is dropped, after any replacement is built, so writes stop maintaining it.

Only one process migrates at a time: on Postgres the work runs in one
transaction holding a transaction-level advisory lock (DDL is transactional
there), on SQLite in one ``BEGIN EXCLUSIVE`` transaction. A process that
waited for the lock finds the schema current and does nothing. The schema's
fingerprint (a hash of the metadata) in ``s2s_schema_info`` lets a current
store be recognised with one query, without reflecting it.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Column, Connection, Engine, String, func, inspect, select

from s2s_pipeline.store import (  # noqa: F401 - register tables
    changed_objects, privacy_schema, profile_queue, trait_refresh_plans)
from s2s_pipeline.store import schema

#: pg_advisory_xact_lock key of the state store's schema migration (any fixed 64-bit number).
ADVISORY_LOCK_KEY = 0x5325_0001
VERSION_KEY = "schema_version"


def schema_fingerprint() -> str:
    """What the code expects the schema to be: ``SCHEMA_VERSION`` and a hash of every table, column and index."""
    parts: list[str] = []
    for table in sorted(schema.metadata.tables.values(), key=lambda t: t.name):
        parts.append(f"T {table.name}")
        parts += [f"C {c.name} {c.type} {c.nullable}" for c in table.columns]
        parts += sorted(f"I {i.name} {[c.name for c in i.columns]} {i.unique}" for i in table.indexes)
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return f"{schema.SCHEMA_VERSION}.{digest}"


def migrate(engine: Engine) -> None:
    """Create what is missing and widen what is too narrow; read-only when the schema is current.

    A store whose recorded fingerprint is the code's is current: the common case (every step of every
    run opening a current store) reads that one row, takes no lock and writes nothing. Any other store
    is compared with the schema and changed under the lock, where a process that waited for another's
    migration finds the fingerprint recorded and stops. (Comparing costs a reflection of every table:
    about 0.1-0.15 s on a 2-core machine, which every step paid, and a fresh store paid twice.)
    """
    expected = schema_fingerprint()
    with engine.connect() as conn:
        if _recorded_fingerprint(conn) == expected:
            return
    with _exclusive(engine) as conn:
        if _recorded_fingerprint(conn) == expected:  # another process migrated it meanwhile
            return
        for change in _pending_changes(conn):
            _apply(change, conn)
        _record_fingerprint(conn, expected)


def _recorded_fingerprint(conn: Connection) -> str | None:
    if not inspect(conn).has_table(schema.schema_info.name):
        return None
    return conn.execute(select(schema.schema_info.c.value)
                        .where(schema.schema_info.c.key == VERSION_KEY)).scalar_one_or_none()


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """One transaction that no other process's migration runs beside; committed on success."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
            yield conn
        return
    if engine.dialect.name == "sqlite":
        # pysqlite would only BEGIN before DML; drive the transaction ourselves so the DDL is inside it.
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        return
    with engine.begin() as conn:  # other dialects: no cross-process lock
        yield conn


def _pending_changes(conn: Connection) -> list[tuple]:
    """The additive changes (see the module docstring) that would bring the database up to the schema."""
    context = MigrationContext.configure(conn, opts={"compare_type": _is_narrower})
    changes = [d for d in _flatten(compare_metadata(context, schema.metadata))
               if d[0] in ("add_table", "add_column", "add_index")
               or (d[0] == "modify_type" and conn.dialect.name != "sqlite")
               or (d[0] == "remove_index" and d[1].name in schema.RETIRED_INDEXES)]
    new_tables = {d[1].name for d in changes if d[0] == "add_table"}
    # a new table is created with its indexes; a retired index goes after its replacement is built
    changes = [d for d in changes if not (d[0] == "add_index" and d[1].table.name in new_tables)]
    return sorted(changes, key=lambda d: d[0] == "remove_index")


def _apply(change: tuple, conn: Connection) -> None:
    operations = Operations(MigrationContext.configure(conn))
    kind = change[0]
    if kind == "add_table":
        schema.metadata.tables[change[1].name].create(conn)
    elif kind == "add_column":
        _, _, table_name, column = change
        operations.add_column(table_name, _nullable_copy(column))
    elif kind == "add_index":
        change[1].create(conn)
    elif kind == "remove_index":
        operations.drop_index(change[1].name, table_name=change[1].table.name)
    elif kind == "modify_type":
        _, _, table_name, column_name, _, existing, wanted = change
        operations.alter_column(table_name, column_name, type_=wanted, existing_type=existing)


def _flatten(diffs: list) -> Iterator[tuple]:
    """compare_metadata nests column modifications in lists; yield one tuple per change."""
    for diff in diffs:
        if isinstance(diff, list):
            yield from diff
        else:
            yield diff


def _is_narrower(context, inspected_column, metadata_column, inspected_type, metadata_type) -> bool | None:
    """Alembic ``compare_type`` hook: report a type change only for a String the schema made longer."""
    if isinstance(inspected_type, String) and isinstance(metadata_type, String):
        old, new = inspected_type.length, metadata_type.length
        return old is not None and (new is None or new > old)
    return False


def _nullable_copy(column: Column) -> Column:
    """The column as it can be added to a table that already has rows."""
    copy = column._copy()  # noqa: SLF001 - SQLAlchemy's public-in-practice column copy
    copy.nullable = True
    copy.primary_key = False
    return copy


def _record_fingerprint(conn: Connection, fingerprint: str) -> None:
    info = schema.schema_info
    updated = conn.execute(info.update().where(info.c.key == VERSION_KEY).values(value=fingerprint)).rowcount
    if not updated:
        conn.execute(info.insert().values(key=VERSION_KEY, value=fingerprint))
