"""Every kind of trait value comes back from ``customer_traits`` as it was written, on both backends.

On Postgres the rows go in by COPY of CSV (``store.arrow_copy``): a text value must never be read as
NULL (an empty string, a customer named ``\\N``), quotes, commas and newlines must survive, and every
pandas null (None, NaN, pd.NA) must be NULL, both for a whole table (a full recompute) and for some
customers' rows (an incremental one).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from s2s_pipeline.store.traits_table import TraitsTable
from s2s_pipeline.store.traits_rows import TraitRows

NAMES = ["\\N", "", 'Ann "the \'Boss\'" O\'Neil, Jr.', "line one\nline two", "Zoë 日本", None]


def _traits(names: list) -> pd.DataFrame:
    n = len(names)
    return pd.DataFrame({
        "stripe_customer_id": [f"cus_{i}" for i in range(n)],
        "name": pd.Series(names, dtype=object),
        "email": pd.Series([None, np.nan, pd.NA, "a@example.com", "b@example.com", "c@example.com"][:n], dtype=object),
        "mrr": [0.1, np.nan, 1e-05, 2.5e300, -1.5, 12.34][:n],
        "refund_rate": pd.array([0.5, None, 0.0, 1.0, None, 0.3333][:n], dtype="Float64"),
        "payment_count": pd.array([1, None, 2**62, 0, -5, 7][:n], dtype="Int64"),
        "paying_customer": pd.array([True, None, False, True, False, None][:n], dtype="boolean"),
    })


def _back(stored: pd.DataFrame) -> dict:
    def plain(v):
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return None
        return v.item() if hasattr(v, "item") else v
    rows = stored.sort_values("stripe_customer_id").to_dict("records")
    return {r["stripe_customer_id"]: {k: plain(v) for k, v in r.items()} for r in rows}


def _expected(traits: pd.DataFrame) -> dict:
    return _back(traits.astype(object))


def test_a_whole_table_and_some_customers_rows_come_back_as_written(state_store):
    traits = _traits(NAMES)
    table = TraitsTable(state_store.engine)
    table.write(traits)
    stored = _back(table.read())
    assert stored == _expected(traits)
    assert stored["cus_0"]["name"] == "\\N" and stored["cus_1"]["name"] == "" and stored["cus_5"]["name"] is None

    # an incremental refresh replaces two customers' rows with the same kinds of values, reversed
    changed = _traits(list(reversed(NAMES))).iloc[[0, 5]]
    TraitRows(state_store.engine).replace_customers(changed, ["cus_0", "cus_5"])
    stored = _back(table.read())
    assert stored["cus_0"]["name"] is None and stored["cus_5"]["name"] == "\\N"
    assert {k: v for k, v in stored.items() if k in ("cus_0", "cus_5")} == _expected(changed)
    assert {k: v for k, v in stored.items() if k not in ("cus_0", "cus_5")} == \
        {k: v for k, v in _expected(traits).items() if k not in ("cus_0", "cus_5")}


def test_dict_and_list_cells_are_stored_as_json_text_and_text_columns_as_they_are(state_store):
    traits = pd.DataFrame({"stripe_customer_id": ["cus_a", "cus_b", "cus_c"],
                           "extra": pd.Series([{"k": [1, 2]}, None, ["x"]], dtype=object),
                           "name": pd.Series(["{not json}", None, "[1]"], dtype=object)})
    table = TraitsTable(state_store.engine)
    table.write(traits)
    stored = _back(table.read())
    assert [stored[c]["extra"] for c in ("cus_a", "cus_b", "cus_c")] == ['{"k": [1, 2]}', None, '["x"]']
    assert [stored[c]["name"] for c in ("cus_a", "cus_b", "cus_c")] == ["{not json}", None, "[1]"]
