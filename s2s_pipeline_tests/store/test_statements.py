"""``statements.insert_rows``: upserts of many rows as multi-row statements, with row-by-row results.

The statements are seen with a ``before_cursor_execute`` listener, which records the rows in each
statement: on SQLite the rows of its VALUES (without RETURNING, an executemany of ``INSERT ... ON
CONFLICT`` reaches the driver as a one-row statement with a list of parameter sets, run one row at a
time; ``insert_rows`` makes it one statement of many rows per chunk of 500); on Postgres the rows of
the JSON document of its ``INSERT ... SELECT ... FROM json_to_recordset(...)``, or the length of the
arrays of ``INSERT ... SELECT unnest(...)`` for rows holding a value JSON cannot carry (one statement
per 5,000 rows either way).
"""

from __future__ import annotations

import json

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
        if not statement.lstrip().upper().startswith("INSERT"):
            return
        if "json_to_recordset(" in statement:  # Postgres: one JSON document of the rows
            executed.append(len(json.loads(parameters["records"])))
        elif "unnest(" in statement:  # Postgres, a value json cannot carry: one array per column
            executed.append(len(parameters["c0"]))
        else:
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
    # 1,200 rows in chunks of 500 on SQLite: 500 + 500 + 200, one multi-row statement each (not 1,200
    # statements); on Postgres one statement of 1,200-element arrays
    chunked = [1_200] if engine.dialect.name == "postgresql" else [500, 500, 200]
    assert executed == chunked
    assert len(_stored(engine)) == 1_200

    # and the update path: the same 1,200 keys again, new values
    executed.clear()
    with engine.begin() as conn:
        upsert_by_key(conn, engine.dialect.name, p, [{**r, "user_id": r["user_id"] + "b"} for r in rows],
                      "stripe_customer_id")
    assert executed == chunked
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


def test_every_kind_of_value_is_stored_as_a_plain_insert_stores_it(engine):
    # Postgres sends a column of values as one array: a JSON list must stay one JSON document (bound as
    # an array it would become a dimension of it), None must be JSON null or SQL NULL as the column says,
    # and booleans, big integers, floats and text with quotes and newlines must come back as given.
    coupons = schema.metadata.tables["stripe_coupons"]
    base = {"livemode": False, "created": 2**33, "version_ts": 1, "deleted": False}
    rows = [
        {**base, "id": "co_list", "applies_to_products": ["prod_a", "prod_b"], "currency_options": {"eur": {"amount_off": 5}},
         "valid": True, "percent_off": 12.5},
        {**base, "id": "co_none", "applies_to_products": None, "currency_options": None, "valid": None,
         "percent_off": None},
        {**base, "id": "co_str", "applies_to_products": [], "currency_options": {"q": "it's \"x\"\nand \\N"},
         "valid": False, "percent_off": 100},
    ]
    audit = schema.metadata.tables["segment_delivery_audit"]
    audits = [{"message_id": f"m{i}", "call_type": "identify", "event": None, "stripe_customer_id": "cus_1",
               "trait_names": names, "property_names": None, "integrations": integrations, "run_id": "r",
               "acknowledged_at": 2**40 + i}
              for i, (names, integrations) in enumerate([(["mrr", "plan"], None), (None, {"All": False})])]
    with engine.begin() as conn:
        insert_rows(conn, insert_for(engine.dialect.name, coupons).on_conflict_do_nothing(), rows, "id")
        insert_rows(conn, insert_for(engine.dialect.name, audit), audits, "message_id")
        coupon_back = {r.id: (r.applies_to_products, r.currency_options, r.valid, r.percent_off, r.created)
                       for r in conn.execute(select(coupons.c.id, coupons.c.applies_to_products, coupons.c.currency_options,
                                                    coupons.c.valid, coupons.c.percent_off, coupons.c.created))}
        nulls = dict(conn.execute(select(audit.c.message_id, audit.c.integrations.is_(None))).tuples().all())
        audit_back = {r.message_id: (r.trait_names, r.integrations, r.acknowledged_at)
                      for r in conn.execute(select(audit.c.message_id, audit.c.trait_names, audit.c.integrations,
                                                   audit.c.acknowledged_at))}
    assert coupon_back == {"co_list": (["prod_a", "prod_b"], {"eur": {"amount_off": 5}}, True, 12.5, 2**33),
                           "co_none": (None, None, None, None, 2**33),
                           "co_str": ([], {"q": "it's \"x\"\nand \\N"}, False, 100.0, 2**33)}
    assert audit_back == {"m0": (["mrr", "plan"], None, 2**40), "m1": (None, {"All": False}, 2**40 + 1)}
    # integrations is JSON(none_as_null=True): None is SQL NULL; a dict is not
    assert nulls == {"m0": True, "m1": False}


@pytest.mark.postgres
def test_the_json_document_stores_what_the_arrays_store_and_refuses_what_they_refuse(postgres_url):
    """Postgres writes rows as one JSON document (``json_to_recordset``); a value JSON cannot carry (a
    float that is not finite) sends the rows as arrays (``unnest``). Both store the very same values,
    and a value the database refuses is refused through either, as a refusal."""
    import numpy as np
    from sqlalchemy import create_engine, delete, text

    from s2s_pipeline.store import statements
    from s2s_pipeline.store.refusals import refusal_reason
    from s2s_pipeline.store.state_store import StateStore

    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    store = StateStore.from_url(postgres_url)
    engine = store.engine
    coupons = schema.metadata.tables["stripe_coupons"]
    base = {"livemode": False, "version_ts": 1, "deleted": False}
    rows = [
        {**base, "id": "co_text", "name": "zß水🙂 it's \"q\" \\N \\u0000 tab\tnl\n", "created": 2**63 - 1,
         "percent_off": 0.1, "valid": True, "applies_to_products": ["prod_é", "prod_\"b\""],
         "currency_options": {"eur": {"amount_off": 5, "note": "水"}, "empty": {}, "list": []}},
        {**base, "id": "co_edges", "name": "", "created": -2**63, "percent_off": 5e-324, "valid": False,
         "applies_to_products": [], "currency_options": {}},
        {**base, "id": "co_nulls", "name": None, "created": None, "percent_off": None, "valid": None,
         "applies_to_products": None, "currency_options": None},
        # a NumPy integer, as rows taken from frames carry them: written as the integer it holds
        {**base, "id": "co_numpy", "name": "n", "created": np.int64(2**40), "percent_off": np.float64(12.5),
         "valid": np.bool_(True), "applies_to_products": None, "currency_options": None},
    ]
    columns = list(rows[0])
    read = select(*(coupons.c[c] for c in columns)).order_by(coupons.c.id)
    executed = _counting(engine)
    with engine.begin() as conn:
        insert_rows(conn, insert_for("postgresql", coupons), rows, "id")
        as_document = conn.execute(read).all()
        conn.execute(delete(coupons))
        plain = [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()} for row in rows]
        conn.execute(*statements._unnest(conn, insert_for("postgresql", coupons).returning(coupons.c.id), coupons,
                                         plain))
        as_arrays = conn.execute(read).all()
    assert executed == [4, 4]  # the document first (counted by its rows), then the arrays
    assert as_document == as_arrays
    # in id order: co_edges, co_nulls, co_numpy, co_text
    assert [r.created for r in as_document] == [-2**63, None, 2**40, 2**63 - 1]
    assert as_document[3].name == rows[0]["name"] and as_document[0].percent_off == 5e-324

    # A float that is not finite: JSON cannot carry it, the arrays do.
    executed.clear()
    with engine.begin() as conn:
        insert_rows(conn, insert_for("postgresql", coupons), [{**base, "id": "co_nan", "percent_off": float("nan")}],
                    "id")
        stored = conn.execute(select(coupons.c.percent_off).where(coupons.c.id == "co_nan")).scalar_one()
    assert "unnest(" in _last_insert[0] and stored != stored  # NaN

    # What the database refuses, it refuses through the document too: a NUL, a text over VARCHAR(255),
    # a lone surrogate.
    for bad in ({"name": "nul\x00"}, {"id": "co_" + "x" * 300}, {"name": "lone \ud800"}):
        with pytest.raises(Exception) as caught:
            with engine.begin() as conn:
                insert_rows(conn, insert_for("postgresql", coupons), [{**base, "id": "co_bad", **bad}], "id")
        assert refusal_reason(caught.value) is not None, caught.value
    store.dispose()


_last_insert: list[str] = [""]


@pytest.fixture(autouse=True)
def _remember_the_last_insert(request):
    """The SQL of the last INSERT sent to the driver (for the test above)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def remember(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("INSERT"):
            _last_insert[0] = statement

    event.listen(Engine, "before_cursor_execute", remember)
    yield
    event.remove(Engine, "before_cursor_execute", remember)


def test_read_frame_gives_the_frame_pd_read_sql_gives(state_store):
    """The profile pass's reads (pushed state, identities, traits) through ``read_frame`` on PostgreSQL
    (psycopg2's rows straight into ``from_records``) and ``pd.read_sql``: equal frames, dtypes included,
    with NULLs beside integers (float64 then, as pd.read_sql makes them), big integers, floats, booleans
    and texts; and for no rows at all."""
    import pandas as pd
    from sqlalchemy import bindparam, text

    from s2s_pipeline.store.statements import read_frame

    engine = state_store.engine
    pushed = [{"stripe_customer_id": "cus_a", "user_id": "u'a", "identify_pushed_at": 2**62, "group_as_of": None,
               "trait_mrr": 12.5, "trait_paying_customer": True, "trait_plan": "Pro \\N \"x\""},
              {"stripe_customer_id": "cus_b", "user_id": None, "identify_pushed_at": None, "group_as_of": 7,
               "trait_mrr": None, "trait_paying_customer": None, "trait_plan": None}]
    identities = [{"stripe_customer_id": "cus_a", "user_id": "u1", "source": "metadata", "email_key": None,
                   "profiles_checked_at": None, "updated_at": 1},
                  {"stripe_customer_id": "cus_b", "user_id": None, "source": "anonymous", "email_key": "k",
                   "profiles_checked_at": 2**40, "updated_at": 2}]
    with engine.begin() as conn:
        upsert_by_key(conn, engine.dialect.name, p, pushed, "stripe_customer_id")
        upsert_by_key(conn, engine.dialect.name, schema.identity_map, identities, "stripe_customer_id")
        conn.execute(text("CREATE TABLE read_frame_probe (id VARCHAR(20), n BIGINT, x DOUBLE PRECISION, b BOOLEAN)"))
        conn.execute(text("INSERT INTO read_frame_probe VALUES ('a', 1, 0.1, true), ('b', NULL, NULL, NULL)"))
    queries = [
        (select(p).order_by(p.c.stripe_customer_id), None),
        (select(schema.identity_map).order_by(schema.identity_map.c.stripe_customer_id), None),
        (select(p).where(p.c.stripe_customer_id.in_(["cus_a"])), None),
        (select(p).where(p.c.stripe_customer_id.is_(None)), None),  # no rows
        (text("SELECT * FROM read_frame_probe WHERE id IN :ids ORDER BY id")
         .bindparams(bindparam("ids", expanding=True)), {"ids": ["a", "b"]}),
    ]
    with engine.connect() as conn:
        for query, params in queries:
            pd.testing.assert_frame_equal(read_frame(conn, query, params), pd.read_sql(query, conn, params=params))
        probe = read_frame(conn, queries[-1][0], queries[-1][1])
    # NULL beside integers: float64 with NaN, exactly as pd.read_sql gives it
    assert str(probe["n"].dtype) == "float64" and probe["n"].isna().tolist() == [False, True]
