"""What Segment has acknowledged (pushed traits) and who each customer is (identity map)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, func, select, union_all

from s2s_pipeline.store import schema
from s2s_pipeline.store.mirror import MirrorStore

_CHUNK = 500


def read_pushed(engine: Engine) -> pd.DataFrame:
    """Every customer's last acknowledged identify/group values (empty frame on a first run)."""
    with engine.connect() as conn:
        return pd.read_sql(select(schema.pushed_traits), conn)


def read_identity_map(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(select(schema.identity_map), conn)


def _upsert(store: MirrorStore, table, rows: list[dict], key: str) -> None:
    if not rows:
        return
    by_shape: dict[tuple, list[dict]] = {}
    for row in rows:
        by_shape.setdefault(tuple(sorted(row)), []).append(row)
    with store.engine.begin() as conn:
        for keys, group in by_shape.items():
            stmt = store._insert(table)
            stmt = stmt.on_conflict_do_update(index_elements=[table.c[key]],
                                              set_={k: stmt.excluded[k] for k in keys if k != key})
            for i in range(0, len(group), _CHUNK):
                conn.execute(stmt, group[i : i + _CHUNK])


def record_pushed(store: MirrorStore, rows: list[dict]) -> None:
    """Upsert acknowledged values; each row updates only the columns it carries."""
    _upsert(store, schema.pushed_traits, rows, "stripe_customer_id")


_IDENTITY_COLUMNS = ["stripe_customer_id", "user_id", "source", "email_key", "profiles_checked_at"]


def record_identities(store: MirrorStore, resolved: pd.DataFrame, now: int) -> None:
    """Store the identities ``resolve_identities`` marked ``changed`` (new or different from the stored ones)."""
    changed = resolved.loc[resolved["changed"].astype(bool), _IDENTITY_COLUMNS].astype(object)
    changed = changed.where(changed.notna(), None)
    _upsert(store, schema.identity_map,
            [{**row, "updated_at": now} for row in changed.to_dict("records")], "stripe_customer_id")


def customer_last_change(engine: Engine) -> pd.Series:
    """Per customer, the Stripe-clock time of the newest mirrored change about it.

    Used as the ``timestamp`` of identify calls: the time the traits became
    true in Stripe, not the time this job happened to run.
    """
    parts = [select(schema.customers.c.id.label("customer"), schema.customers.c.version_ts)]
    for table in (schema.subscriptions, schema.invoices, schema.charges):
        parts.append(select(table.c.customer, table.c.version_ts).where(table.c.customer.is_not(None)))
    unioned = union_all(*parts).subquery()
    query = select(unioned.c.customer, func.max(unioned.c.version_ts).label("last_change")).group_by(
        unioned.c.customer)
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    return frame.set_index("customer")["last_change"]
