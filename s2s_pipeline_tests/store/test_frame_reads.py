"""Bulk frame reads (``store.frames`` through ``store.arrow_reads``): exact integers, one snapshot, and the
Arrow path on PostgreSQL giving the very frames the cursor path gives (SQLite and Postgres).

``S2S_ARROW_READS=0`` forces the DB-API cursor path on Postgres; by default Postgres reads go through
ADBC and Arrow. SQLite always reads through the cursor (ADBC's SQLite driver next to Python's sqlite3
corrupts the file), which ``test_sqlite_never_reads_through_adbc`` holds.
"""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from sqlalchemy import create_engine, delete, insert, select
from sqlalchemy.pool import NullPool

from s2s_pipeline.store import frames as frames_module
from s2s_pipeline.store import schema
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.traits.frames import TABLE_COLUMNS
from s2s_pipeline.traits.loading import load_mirror_frames

BIG = 2**53 + 1  # 9007199254740993: the first integer a float64 cannot hold (it rounds to 2**53)


@pytest.fixture(params=["arrow", "cursor"])
def read_path(request, monkeypatch):
    """Each read path; on SQLite both are the cursor path."""
    monkeypatch.setenv("S2S_ARROW_READS", "1" if request.param == "arrow" else "0")
    return request.param


@pytest.fixture
def store(state_url):
    s = StateStore.from_url(state_url)
    yield s
    s.dispose()


def _charge(cid: str, amount, customer="cus_1", **extra) -> dict:
    return {"id": cid, "customer": customer, "status": "succeeded", "currency": "usd", "amount": amount,
            "amount_captured": amount, "amount_refunded": 0, "captured": True, "created": 100, "version_ts": 1,
            "deleted": False, **extra}


def _insert(engine, table, *rows: dict) -> None:
    with engine.begin() as conn:
        conn.execute(insert(table), list(rows))


def test_a_bigint_beside_a_null_comes_back_exactly(store, read_path):
    # amount: BIG in one row, NULL in the other. Through float64 (what from_records and pyarrow's
    # to_pandas make of integers with nulls) BIG would come back as 2**53 = 9007199254740992.
    _insert(store.engine, schema.customers,
            {"id": "cus_1", "version_ts": 1, "deleted": False})
    _insert(store.engine, schema.charges, _charge("ch_1", BIG), _charge("ch_2", None))
    read = store.mirror.read_frames({"charges": ("id", "amount", "amount_refunded")})["charges"]
    read = read.sort_values("id", ignore_index=True)
    assert str(read["amount"].dtype) == "Int64"
    assert read["amount"][0] == BIG and pd.isna(read["amount"][1])
    assert read["amount_refunded"].dtype == "int64"  # no nulls: plain int64, as before
    # And what the trait computation gets (fast dtypes leave an Int64 column as it is).
    loaded = load_mirror_frames(store.mirror, {"customers": ("id",), "charges": ("id", "amount")})
    assert loaded.charges.set_index("id")["amount"]["ch_1"] == BIG
    # The shard and customer reads use the same reader.
    shard = store.mirror.read_shard_frames({"charges": ("id", "amount")}, None, None)["charges"]
    some = store.mirror.read_customer_frames({"charges": ("id", "amount")}, ["cus_1"])["charges"]
    for frame in (shard, some):
        assert frame.set_index("id")["amount"]["ch_1"] == BIG


def _money_back(rid: str, charge: str | None, amount: int) -> dict:
    return {"id": rid, "charge": charge, "status": "succeeded", "currency": "usd", "amount": amount,
            "created": 100, "version_ts": 1, "deleted": False}


@pytest.mark.parametrize("chunks", ["one", "one id each"])
def test_a_customers_refunds_and_disputes_are_those_of_its_charges(store, read_path, monkeypatch, chunks):
    """Refunds and disputes belong to a customer through its charges: with or without the charges' ids
    among the columns asked for, in one chunk or one id per query, the same rows."""
    if chunks != "one":
        monkeypatch.setattr(frames_module, "_CUSTOMER_CHUNK", 1)
        monkeypatch.setattr(frames_module, "_CHARGE_CHUNK", 1)
    _insert(store.engine, schema.customers, *({"id": c, "version_ts": 1, "deleted": False}
                                              for c in ("cus_1", "cus_2", "cus_3")))
    _insert(store.engine, schema.charges, _charge("ch_1", 100), _charge("ch_2", 200),
            _charge("ch_3", 300, customer="cus_2"), _charge("ch_4", 400, customer=None))
    _insert(store.engine, schema.refunds, _money_back("re_1", "ch_1", 10), _money_back("re_2", "ch_2", 20),
            _money_back("re_3", "ch_3", 30), _money_back("re_4", "ch_4", 40), _money_back("re_5", None, 50),
            _money_back("re_6", "ch_gone", 60))
    _insert(store.engine, schema.disputes, _money_back("dp_1", "ch_2", 200), _money_back("dp_2", "ch_3", 300))
    asked = {"refunds": ("id", "amount"), "disputes": ("id",)}
    for charges_columns in ((), ("amount",), ("id", "amount")):
        columns = {**asked, "charges": charges_columns} if charges_columns else asked
        read = store.mirror.read_customer_frames(columns, ["cus_1", "cus_3", "cus_9"])
        # cus_1 owns ch_1 and ch_2: re_1, re_2 and dp_1; cus_3 has no charge; cus_9 is not in the mirror.
        assert sorted(read["refunds"]["id"]) == ["re_1", "re_2"], charges_columns
        assert read["refunds"].set_index("id")["amount"].to_dict() == {"re_1": 10, "re_2": 20}
        assert read["disputes"]["id"].tolist() == ["dp_1"], charges_columns
    # No charges at all: empty frames of the columns asked for.
    none = store.mirror.read_customer_frames(asked, ["cus_3"])
    assert list(none["refunds"].columns) == ["id", "amount"] and len(none["refunds"]) == 0
    assert len(none["disputes"]) == 0


def test_ids_holding_quotes_and_backslashes_are_read_as_they_are(store, read_path):
    """The keyed reads inline their ids as SQL text: an id with a quote, a backslash or an SQL fragment
    selects its own rows and nobody else's (on both backends, both read paths)."""
    odd = ["cus_'1", "cus_\\2", "cus_3') OR ('1'='1", "cus_plain"]
    _insert(store.engine, schema.customers, *({"id": c, "version_ts": 1, "deleted": False}
                                              for c in odd + ["cus_other"]))
    _insert(store.engine, schema.charges, *(_charge(f"ch_{i}'\\", 100 + i, customer=c) for i, c in enumerate(odd)),
            _charge("ch_other", 999, customer="cus_other"))
    _insert(store.engine, schema.disputes, *({"id": f"dp_{i}", "charge": f"ch_{i}'\\", "status": "lost",
                                               "currency": "usd", "amount": 100 + i, "created": 100, "version_ts": 1,
                                               "deleted": False} for i in range(len(odd))),
            {"id": "dp_other", "charge": "ch_other", "status": "lost", "currency": "usd", "amount": 999,
             "created": 100, "version_ts": 1, "deleted": False})
    read = store.mirror.read_customer_frames({"customers": ("id",), "charges": ("id", "customer", "amount"),
                                              "disputes": ("id", "amount")}, odd)
    assert read["customers"]["id"].tolist() == sorted(odd)
    assert read["charges"].set_index("customer")["amount"].to_dict() == {c: 100 + i for i, c in enumerate(odd)}
    assert sorted(read["disputes"]["id"]) == [f"dp_{i}" for i in range(len(odd))]


@pytest.mark.postgres
@pytest.mark.parametrize("configured", ["4", "1"])
def test_keyed_reads_plan_for_an_ssd_inside_their_own_transaction(postgres_url, read_path, monkeypatch, configured):
    """A keyed read plans with random_page_cost 1.1 (Postgres' default 4 makes it scan every charge), keeps
    a lower configured value, and leaves the session's setting as it was once its transaction ends."""
    from s2s_pipeline.store.arrow_reads import frame_reads

    monkeypatch.setenv("PGOPTIONS", f"-c random_page_cost={configured}")  # what the server or role would set
    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        with frame_reads(engine) as reader:
            assert reader.setting_rows("SELECT current_setting('random_page_cost')") == [(configured,)]
            reader.favour_index_scans()
            inside = reader.setting_rows("SELECT current_setting('random_page_cost')")
            assert reader.setting_rows("SELECT current_setting('transaction_read_only')") == [("on",)]
        with frame_reads(engine) as reader:
            after = reader.setting_rows("SELECT current_setting('random_page_cost')")
    finally:
        engine.dispose()
    assert inside == [("1.1" if configured == "4" else configured,)]
    assert after == [(configured,)]


class _WriteAfterCustomers(dict):
    """``MIRROR_FRAME_TABLES`` as ``store.frames`` iterates it, committing a write on another connection
    once the customers table has been read (when the loop asks for the next table)."""

    def __init__(self, tables, write) -> None:
        super().__init__(tables)
        self.write = write

    def items(self):
        for name, table in super().items():
            yield name, table
            if name == "customers":
                self.write()


def test_the_frames_of_one_read_are_one_snapshot(store, state_url, read_path, monkeypatch):
    _insert(store.engine, schema.customers, {"id": "cus_1", "version_ts": 1, "deleted": False})
    _insert(store.engine, schema.charges, _charge("ch_1", 500))
    writer = create_engine(store.engine.url)

    def write():  # a customer and its charge, committed while the reader is between two tables
        with writer.begin() as conn:
            conn.execute(insert(schema.customers), [{"id": "cus_2", "version_ts": 2, "deleted": False}])
            conn.execute(insert(schema.charges), [_charge("ch_2", 700, customer="cus_2")])
            conn.execute(delete(schema.charges).where(schema.charges.c.id == "ch_1"))

    monkeypatch.setattr(frames_module, "MIRROR_FRAME_TABLES", _WriteAfterCustomers(schema.MIRROR_FRAME_TABLES,
                                                                                    write))
    read = store.mirror.read_frames({"customers": ("id",), "charges": ("id", "customer")})
    writer.dispose()
    # The customers read saw cus_1 only; the charges must be of that same moment: ch_1, not ch_2.
    assert read["customers"]["id"].tolist() == ["cus_1"]
    assert read["charges"]["id"].tolist() == ["ch_1"]
    monkeypatch.setattr(frames_module, "MIRROR_FRAME_TABLES", schema.MIRROR_FRAME_TABLES)
    again = store.mirror.read_frames({"customers": ("id",), "charges": ("id",)})
    assert sorted(again["customers"]["id"]) == ["cus_1", "cus_2"] and again["charges"]["id"].tolist() == ["ch_2"]


def test_the_reader_holds_its_snapshot_and_reads_only(store, read_path):
    from s2s_pipeline.store.arrow_reads import frame_reads

    c = schema.customers
    _insert(store.engine, c, {"id": "cus_1", "version_ts": 1, "deleted": False})
    other = create_engine(store.engine.url)
    with frame_reads(store.engine) as reader:
        expected = "arrow" if read_path == "arrow" and store.engine.dialect.name == "postgresql" else "cursor"
        assert reader.path == expected
        first = reader.read(select(c.c.id), [c.c.id])
        with other.begin() as conn:
            conn.execute(insert(c), [{"id": "cus_2", "version_ts": 1, "deleted": False}])
        second = reader.read(select(c.c.id).order_by(c.c.id), [c.c.id])
    other.dispose()
    assert first["id"].tolist() == second["id"].tolist() == ["cus_1"]
    if store.engine.dialect.name == "postgresql":
        with frame_reads(store.engine) as reader:
            isolation = reader.read(_show("transaction_isolation"), [_text_column("transaction_isolation")])
            read_only = reader.read(_show("transaction_read_only"), [_text_column("transaction_read_only")])
        assert isolation.iloc[0, 0] == "repeatable read" and read_only.iloc[0, 0] == "on"


def test_the_two_readers_of_a_pair_see_one_snapshot(store, read_path):
    """``frame_read_pair``: a write committed after the pair opened is seen by neither reader, the
    second one included (through ADBC it is a second connection importing the first one's snapshot;
    its own snapshot would be taken at its first query, after the write)."""
    from s2s_pipeline.store.arrow_reads import frame_read_pair

    c, ch = schema.customers, schema.charges
    _insert(store.engine, c, {"id": "cus_1", "version_ts": 1, "deleted": False})
    _insert(store.engine, ch, _charge("ch_1", 500))
    other = create_engine(store.engine.url)
    with frame_read_pair(store.engine) as (first, second):
        two = "arrow" if read_path == "arrow" and store.engine.dialect.name == "postgresql" else "cursor"
        assert (second is not first) == (two == "arrow")
        customers_before = first.read(select(c.c.id), [c.c.id])
        with other.begin() as conn:
            conn.execute(insert(c), [{"id": "cus_2", "version_ts": 2, "deleted": False}])
            conn.execute(insert(ch), [_charge("ch_2", 700, customer="cus_2")])
            conn.execute(delete(ch).where(ch.c.id == "ch_1"))
        charges = second.read(select(ch.c.id), [ch.c.id])
        customers_second = second.read(select(c.c.id), [c.c.id])
        customers_after = first.read(select(c.c.id), [c.c.id])
    other.dispose()
    assert customers_before["id"].tolist() == customers_after["id"].tolist() == ["cus_1"]
    assert customers_second["id"].tolist() == ["cus_1"] and charges["id"].tolist() == ["ch_1"]
    if two == "arrow":
        with pytest.raises(ValueError, match="snapshot id"):
            from s2s_pipeline.store.arrow_reads import ArrowReads

            with ArrowReads.open(store.engine, snapshot="1'; DROP TABLE stripe_charges; --"):
                pass


@pytest.mark.postgres
def test_a_second_connection_refused_reads_one_table_after_another(postgres_url, monkeypatch, caplog):
    """A role allowed one connection (as a server at ``max_connections`` or a pooler's limit would do):
    the pair's second connection is refused, and the customers' frames are read on the first one,
    one table after another, the same frames, with a warning naming the store without its password."""
    import uuid

    from s2s_pipeline.store.frames import read_customer_frames

    monkeypatch.setenv("S2S_ARROW_READS", "1")
    _reset(postgres_url)
    store = StateStore.from_url(postgres_url)
    _insert(store.engine, schema.customers, {"id": "cus_1", "version_ts": 1, "deleted": False},
            {"id": "cus_2", "version_ts": 1, "deleted": False})
    _insert(store.engine, schema.charges, _charge("ch_1", 500), _charge("ch_2", 700, customer="cus_2"))
    wanted = {"customers": ("id",), "charges": ("id", "customer", "amount")}
    both = read_customer_frames(store.engine, wanted, ["cus_1", "cus_2"])
    role = f"s2s_one_conn_{uuid.uuid4().hex[:8]}"
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'not-shown-pw' CONNECTION LIMIT 1")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    limited = create_engine(store.engine.url.set(username=role, password="not-shown-pw"), poolclass=NullPool)
    try:
        with caplog.at_level("WARNING", logger="s2s_pipeline.store.arrow_reads"):
            one = read_customer_frames(limited, wanted, ["cus_1", "cus_2"])
    finally:
        limited.dispose()
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        store.dispose()
    for name in wanted:
        pd.testing.assert_frame_equal(one[name], both[name])
    assert one["charges"]["id"].tolist() == ["ch_1", "ch_2"]
    assert "one table after another" in caplog.text and "not-shown-pw" not in caplog.text


def _show(setting: str):
    from sqlalchemy import func

    return select(func.current_setting(setting).label(setting))


def _text_column(name: str):
    from sqlalchemy import Column, String

    return Column(name, String)


def test_sqlite_never_reads_through_adbc(tmp_path, monkeypatch):
    # ADBC's SQLite driver brings a second SQLite library into the process; it and Python's sqlite3
    # drop each other's POSIX locks on the same file, which can corrupt the database.
    from s2s_pipeline.store.arrow_reads import ArrowReads, CursorReads, frame_reads

    monkeypatch.setenv("S2S_ARROW_READS", "1")
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with frame_reads(store.engine) as reader:
            assert isinstance(reader, CursorReads)
        store.mirror.read_frames(TABLE_COLUMNS)
        with pytest.raises(ValueError, match="PostgreSQL only"):
            with ArrowReads.open(store.engine):
                pass
    finally:
        store.dispose()
    assert "adbc_driver_sqlite" not in sys.modules


@pytest.mark.postgres
def test_arrow_reads_switch(postgres_url, monkeypatch):
    from s2s_pipeline.store.arrow_reads import ArrowReads, CursorReads, frame_reads

    engine = create_engine(postgres_url)
    try:
        monkeypatch.delenv("S2S_ARROW_READS", raising=False)
        with frame_reads(engine) as reader:
            assert isinstance(reader, ArrowReads)
        for off in ("0", "false", "off"):
            monkeypatch.setenv("S2S_ARROW_READS", off)
            with frame_reads(engine) as reader:
                assert isinstance(reader, CursorReads)
    finally:
        engine.dispose()


def test_a_failed_adbc_connection_does_not_show_the_password():
    from s2s_pipeline.store.arrow_reads import ArrowReads, FrameReadError

    from sqlalchemy.engine import URL

    secret = "pw@not/to show"
    # Nothing listens on port 1 of the loopback: the connection is refused at once.
    engine = create_engine(URL.create("postgresql+psycopg2", "postgres", secret, "127.0.0.1", 1, "test"))
    with pytest.raises(FrameReadError) as caught:
        with ArrowReads.open(engine):
            pass
    text = str(caught.value)
    assert "to show" not in text and "not%2F" not in text and "***" in text and "127.0.0.1:1" in text
    assert "S2S_ARROW_READS=0" in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    # A driver message that echoed the URI, in either spelling, loses the password too.
    reader = ArrowReads(None, engine.dialect, "postgresql://postgres:***@127.0.0.1:1/test")
    reader._secret = secret
    for echoed in (secret, "pw%40not%2Fto+show", "pw%40not%2Fto%20show"):
        message = str(reader._error("connecting", RuntimeError(f"no route to postgresql://postgres:{echoed}@h")))
        assert "to show" not in message and "to+show" not in message and "to%20show" not in message


# -- the Arrow path gives the cursor path's frames ----------------------------------------------------

def _both_ways(monkeypatch, read):
    monkeypatch.setenv("S2S_ARROW_READS", "0")
    cursor = read()
    monkeypatch.setenv("S2S_ARROW_READS", "1")
    arrow = read()
    return cursor, arrow


def _assert_same_frames(cursor: dict, arrow: dict) -> None:
    assert cursor.keys() == arrow.keys()
    for name in cursor:
        a, b = cursor[name], arrow[name]
        assert list(a.columns) == list(b.columns), name
        for col in a.columns:
            assert a[col].dtype == b[col].dtype, (name, col, a[col].dtype, b[col].dtype)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)


@pytest.mark.postgres
def test_edge_cases_read_alike_both_ways(postgres_url, monkeypatch):
    """Hand-made rows covering every dtype rule: nulls and no nulls, all-null columns, empty tables."""
    _reset(postgres_url)
    store = StateStore.from_url(postgres_url)
    try:
        _insert(store.engine, schema.customers,
                {"id": "cus_1", "version_ts": 1, "deleted": False, "metadata": {"plan": "gold", "n": [1, 2]},
                 "delinquent": None, "email": "a@example.com"},
                {"id": "cus_2", "version_ts": 1, "deleted": False, "metadata": None, "delinquent": True,
                 "email": None},
                {"id": "cus_3", "version_ts": 1, "deleted": True, "metadata": None, "delinquent": None,
                 "email": "c@example.com"})
        _insert(store.engine, schema.charges,
                _charge("ch_1", BIG, captured=None, failure_message=None, refunded=False),
                _charge("ch_2", None, captured=True, failure_message=None, refunded=True))
        _insert(store.engine, schema.coupons,
                {"id": "co_1", "version_ts": 1, "deleted": False, "percent_off": 12.5, "duration_in_months": 3,
                 "applies_to_products": ["prod_1"], "valid": True, "amount_off": None},
                {"id": "co_2", "version_ts": 1, "deleted": False, "percent_off": None, "duration_in_months": None,
                 "applies_to_products": None, "valid": None, "amount_off": 500})
        cursor, arrow = _both_ways(monkeypatch, lambda: store.mirror.read_frames(TABLE_COLUMNS))
        _assert_same_frames(cursor, arrow)
        charges, coupons = arrow["charges"], arrow["coupons"]
        assert str(charges["amount"].dtype) == "Int64" and charges["amount_refunded"].dtype == "int64"
        assert charges["refunded"].dtype == bool and charges["captured"].dtype == object
        assert charges["failure_message"].tolist() == [None, None]  # all null: object None
        assert coupons["percent_off"].dtype == "float64" and str(coupons["amount_off"].dtype) == "Int64"
        assert arrow["customers"]["metadata"].tolist() == [{"plan": "gold", "n": [1, 2]}, None]
        assert len(arrow["refunds"]) == 0 and all(d == object for d in arrow["refunds"].dtypes)
        cursor, arrow = _both_ways(monkeypatch, lambda: store.mirror.read_customer_frames(
            TABLE_COLUMNS, ["cus_1", "cus_9"]))
        _assert_same_frames(cursor, arrow)
    finally:
        store.dispose()


def _reset(url: str) -> None:
    """An empty public schema in the session's Postgres database (as the ``state_url`` fixture makes)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture
def demo_postgres(postgres_url):
    """The session's Postgres store holding a synced 60-customer demo account; (url, the sync's clock)."""
    from s2s_pipeline_tests.demo_store import sync_demo_account

    _reset(postgres_url)
    return postgres_url, sync_demo_account(postgres_url, customers=60, seed=11).now


@pytest.mark.postgres
def test_a_demo_mirror_reads_alike_both_ways_and_gives_the_same_traits(demo_postgres, monkeypatch):
    from s2s_pipeline.traits.config import TraitsConfig
    from s2s_pipeline.traits.customer_traits import compute_customer_traits
    from s2s_pipeline.traits.loading import load_customer_frames, load_shard_frames

    url, now = demo_postgres
    store = StateStore.from_url(url)
    try:
        mirror = store.mirror
        cursor, arrow = _both_ways(monkeypatch, lambda: mirror.read_frames(TABLE_COLUMNS))
        _assert_same_frames(cursor, arrow)
        # The demo covers the rules that matter: integers with and without nulls, booleans with nulls, JSON.
        dtypes = {str(frame[c].dtype) for frame in arrow.values() for c in frame.columns}
        assert {"Int64", "int64", "bool", "object", "str"} <= dtypes, dtypes
        assert len(arrow["customers"]) == 60 and len(arrow["charges"]) > 60
        ids = sorted(arrow["customers"]["id"])
        some = ids[::3]
        _assert_same_frames(*_both_ways(monkeypatch, lambda: mirror.read_customer_frames(TABLE_COLUMNS, some)))
        lo, hi = ids[10], ids[40]
        for bounds in ((None, lo), (lo, hi), (hi, None)):
            _assert_same_frames(*_both_ways(monkeypatch, lambda: mirror.read_shard_frames(TABLE_COLUMNS, *bounds)))
        # The trait table computed from either read is the same, whole, per customer and per shard.
        config = TraitsConfig()
        for load in (lambda: load_mirror_frames(mirror), lambda: load_customer_frames(mirror, some),
                     lambda: load_shard_frames(mirror, lo, hi)):
            via_cursor, via_arrow = _both_ways(monkeypatch, lambda: compute_customer_traits(load(), config, now))
            assert len(via_arrow) > 0
            pd.testing.assert_frame_equal(via_cursor, via_arrow, check_exact=True)
    finally:
        store.dispose()


def test_the_adbc_uri_is_the_url_without_its_driver_and_fully_encoded():
    from sqlalchemy.engine import URL, make_url

    from s2s_pipeline.store.arrow_reads import libpq_uri

    # SQLAlchemy's own rendering would leave "to show" with its space, which libpq refuses and quotes.
    url = URL.create("postgresql+psycopg2", "s2s", "pw@not/to show:%", "db.internal", 5432, "s2s",
                     query={"sslmode": "require"})
    assert libpq_uri(url) == "postgresql://s2s:pw%40not%2Fto%20show%3A%25@db.internal:5432/s2s?sslmode=require"
    assert libpq_uri(make_url("postgresql+psycopg2://postgres@127.0.0.1:5432/test")) == (
        "postgresql://postgres@127.0.0.1:5432/test")
