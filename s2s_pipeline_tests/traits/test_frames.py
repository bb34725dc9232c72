"""MirrorFrames: schema alignment, fast dtypes and loading from the state store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from s2s_pipeline.store import schema
from s2s_pipeline.store.db import make_engine
from s2s_pipeline.store.mirror import MirrorStore
from s2s_pipeline.store.schema import MIRROR_FRAME_TABLES as TABLES
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.frames import (
    REFERENCES,
    TABLE_COLUMNS,
    TRAIT_INPUT_COLUMNS,
    apply_fast_dtypes,
    Lookup,
    MirrorFrames,
    empty_frames,
    reference_categorical,
    with_fast_dtypes,
)
from s2s_pipeline.traits.loading import load_mirror_frames
from s2s_pipeline_tests.traits.test_mrr import worked_example
from s2s_pipeline_tests.traits.builders import DAY, NOW


def test_table_columns_match_the_schema():
    for name, table in TABLES.items():
        assert TABLE_COLUMNS[name] == tuple(c.name for c in table.columns if c.name != "raw"), name
        assert set(TRAIT_INPUT_COLUMNS[name]) <= set(TABLE_COLUMNS[name]), name
    for (name, col), target in REFERENCES.items():
        assert col in TABLE_COLUMNS[name] and target in TABLE_COLUMNS
    assert set(TABLES.values()) <= set(schema.metadata.tables.values())


def test_empty_frames_have_every_column():
    frames = empty_frames()
    assert isinstance(frames, MirrorFrames)
    for name, df in frames.tables().items():
        assert tuple(df.columns) == TABLE_COLUMNS[name]
        assert len(df) == 0


def test_reference_categorical_keeps_unknown_values():
    ids = pd.Index(["cus_a", "cus_b"], dtype=object)
    cat = reference_categorical(pd.Series(["cus_b", None, "cus_x", "cus_a"]), ids)
    assert list(cat.categories) == ["cus_a", "cus_b", "cus_x"]
    assert cat.codes.tolist() == [1, -1, 2, 0]
    assert Lookup(pd.Series(["cus_a", "cus_b"])).positions(pd.Series(cat)).tolist() == [1, -1, -1, 0]
    # categories in another order are resolved by value
    other = pd.Series(pd.Categorical(["cus_a", "cus_b"], categories=["cus_b", "cus_a"]))
    assert Lookup(pd.Series(["cus_a", "cus_b"])).positions(other).tolist() == [0, 1]


def test_fast_dtypes_give_the_same_traits():
    frames = worked_example().frames()
    fast = with_fast_dtypes(frames)
    assert isinstance(fast.charges["customer"].dtype, pd.CategoricalDtype)
    assert isinstance(fast.subscriptions["status"].dtype, pd.CategoricalDtype)
    assert str(fast.subscription_items["quantity"].dtype) == "Int64"
    assert frames.charges["customer"].dtype == object  # the input is not modified
    config = TraitsConfig()
    assert compute_customer_traits(frames, config, NOW).equals(compute_customer_traits(fast, config, NOW))


def _store(state_url, mirror_frames: MirrorFrames):
    engine = make_engine(state_url)
    with engine.begin() as conn:
        for name, table in TABLES.items():
            df = getattr(mirror_frames, name)
            rows = [{k: (None if not isinstance(v, (list, dict)) and pd.isna(v) else v) for k, v in r.items()}
                    for r in df.to_dict("records")]
            if rows:
                conn.execute(insert(table), rows)
    return engine


def test_load_mirror_frames_round_trip(state_url):
    mirror = worked_example()
    mirror.customer("cus_deleted", deleted=True).charge("cus_deleted", 5000)
    mirror.charge("cus_1", 10000, amount_refunded=2500).charge("cus_2", 5000, status="failed")
    mirror.invoice("cus_3", created=NOW - DAY, status="open", attempt_count=2)
    mirror.customer("cus_meta", metadata={"segment_user_id": "u_1", "company_id": "acme"})
    frames = mirror.frames()
    engine = _store(state_url, frames)
    try:
        loaded = load_mirror_frames(MirrorStore(engine))
        assert "cus_deleted" not in set(loaded.customers["id"])
        assert tuple(loaded.charges.columns) == TRAIT_INPUT_COLUMNS["charges"]
        assert isinstance(loaded.charges["customer"].dtype, pd.CategoricalDtype)
        assert len(loaded.refunds) == 0 and tuple(loaded.refunds.columns) == TABLE_COLUMNS["refunds"]
        config = TraitsConfig()
        expected = compute_customer_traits(frames, config, NOW)
        expected = expected[expected["stripe_customer_id"] != "cus_deleted"]
        expected = expected.sort_values("stripe_customer_id").reset_index(drop=True)
        got = compute_customer_traits(loaded, config, NOW)
        pd.testing.assert_frame_equal(got, expected)
        assert got.set_index("stripe_customer_id").loc["cus_meta", "user_id"] == "u_1"

        everything = load_mirror_frames(MirrorStore(engine), columns=TABLE_COLUMNS, fast_dtypes=False)
        assert tuple(everything.charges.columns) == TABLE_COLUMNS["charges"]
        assert len(everything.charges) == len(frames.charges)
        with pytest.raises(KeyError):
            load_mirror_frames(MirrorStore(engine), columns={"charges": ("id", "no_such_column")})
    finally:
        engine.dispose()


def test_load_empty_store(state_url):
    engine = make_engine(state_url)
    try:
        loaded = load_mirror_frames(MirrorStore(engine))
        table = compute_customer_traits(loaded, TraitsConfig(), NOW)
        assert len(table) == 0
    finally:
        engine.dispose()


def _arrow_text(values: list) -> pd.Series:
    """Text as a read through Arrow gives it: pandas' pyarrow-backed ``str``."""
    return pd.Series(pd.array(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


@pytest.mark.parametrize("case", ["known references", "a reference to a missing customer", "no rows"])
def test_text_read_through_arrow_gets_the_categoricals_python_strings_get(case):
    # Arrow's index_in / dictionary_encode stand in for pandas' hashing of Python strings: the frames must
    # be identical (values, codes, category order and dtype), including nulls and unknown references.
    ids, refs, statuses = {
        "known references": (["cus_b", "cus_a", "cus_c"], ["cus_c", None, "cus_b", "cus_c"],
                             ["succeeded", "failed", None, "pending"]),
        "a reference to a missing customer": (["cus_a", "cus_b"], ["cus_b", "cus_gone", None, "cus_a"],
                                              [None, None, None, None]),
        "no rows": ([], [], []),
    }[case]
    out = []
    for make in (_arrow_text, lambda values: pd.Series(values, dtype=object)):
        tables = {"customers": pd.DataFrame({"id": make(ids)}),
                  "charges": pd.DataFrame({"id": make([f"ch_{i}" for i in range(len(refs))]),
                                           "customer": make(refs), "status": make(statuses)})}
        apply_fast_dtypes(tables)
        out.append(tables["charges"])
    through_arrow, through_python = out
    for column in ("customer", "status"):
        pd.testing.assert_series_equal(through_arrow[column], through_python[column])
        assert through_arrow[column].cat.categories.dtype == through_python[column].cat.categories.dtype
    if case == "known references":
        # aligned with the customers' ids, in their order: cus_c is the third customer
        assert through_arrow["customer"].cat.codes.tolist() == [2, -1, 0, 2]
        assert list(through_arrow["status"].cat.categories) == ["failed", "pending", "succeeded"]
