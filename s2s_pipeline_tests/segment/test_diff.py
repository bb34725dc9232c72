"""Identify and group diffs against the pushed state: hand-computed cases and properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert

from s2s_pipeline.segment.canonical import canonical_traits
from s2s_pipeline.segment.diff import apply_identify, diff_group, diff_identify
from s2s_pipeline.store import schema
from s2s_pipeline.core.contract import IDENTIFY_TRAITS

STORED = [t for t in IDENTIFY_TRAITS if t != "stripe_customer_id"]


def customer(cid="cus_1", user_id=None, **traits):
    """One trait-table row with realistic values (override any trait)."""
    row = {
        "stripe_customer_id": cid, "user_id": user_id, "anonymous_id": None if user_id else cid,
        "email": f"{cid}@example.com", "name": "Ada Lovelace", "currency": "usd",
        "lifetime_value": 120.5, "mrr": 29.0, "spend_tier": "medium", "refund_rate": 0.0, "payment_count": 4,
        "first_payment_at": "2026-01-01T00:00:00Z", "last_payment_at": "2026-04-01T00:00:00Z",
        "payment_frequency_days": 30.0, "paying_customer": True, "trial_converted_at": "2026-01-01T00:00:00Z",
        "plan": "Pro", "billing_interval": "month", "subscription_status": "active", "cancel_at_period_end": False,
        "next_billing_date": "2026-06-01T00:00:00Z", "trial_end_date": None, "payment_delinquent": False,
        "payment_method_type": "card", "card_brand": "visa",
    }
    row.update(traits)
    return row


def table(*rows) -> pd.DataFrame:
    """A trait table with the dtypes ``compute_customer_traits`` gives."""
    frame = pd.DataFrame(list(rows))
    for name in frame.columns:
        if name in ("payment_count",):
            frame[name] = frame[name].astype("Int64")
        elif name in ("cancel_at_period_end", "payment_delinquent", "paying_customer"):
            frame[name] = frame[name].astype("boolean")
        elif name in ("lifetime_value", "mrr", "refund_rate", "payment_frequency_days"):
            frame[name] = frame[name].astype("float64")
        else:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def as_pushed(frame: pd.DataFrame) -> pd.DataFrame:
    """The pushed-traits rows for ``frame``, as the state store holds them."""
    out = frame[["stripe_customer_id", "user_id", "anonymous_id"]].copy()
    for name in STORED:
        out[f"trait_{name}"] = frame[name]
    return out


def sqlite_roundtrip(pushed: pd.DataFrame) -> pd.DataFrame:
    """``pushed`` written to and read back from a real SQLite ``segment_pushed_traits`` table."""
    engine = create_engine("sqlite://")
    schema.pushed_traits.create(engine)
    records = pushed.astype(object).where(pushed.notna(), None).to_dict("records")
    with engine.begin() as conn:
        conn.execute(insert(schema.pushed_traits), records)
    # raw read (booleans come back as 0/1 through pandas' SQL reader with a text query)
    return pd.read_sql_query("SELECT * FROM segment_pushed_traits ORDER BY stripe_customer_id", engine)


def records(diff: pd.DataFrame) -> list[dict]:
    return diff.to_dict("records")


# -- identify: hand-computed cases ------------------------------------------------------------------


def test_first_push_sends_all_known_traits_without_nulls():
    current = table(customer("cus_1", trial_end_date=None, card_brand=None, refund_rate=float("nan")))
    [row] = records(diff_identify(current, pd.DataFrame()))
    assert row["reason"] == "first"
    assert row["anonymous_id"] == "cus_1" and row["user_id"] is None and row["previous_user_id"] is None
    traits = row["traits"]
    assert "trial_end_date" not in traits and "card_brand" not in traits and "refund_rate" not in traits
    assert traits["stripe_customer_id"] == "cus_1"
    assert traits["mrr"] == 29.0 and type(traits["mrr"]) is float
    assert traits["payment_count"] == 4 and type(traits["payment_count"]) is int
    assert traits["cancel_at_period_end"] is False
    assert set(traits) == set(IDENTIFY_TRAITS) - {"trial_end_date", "card_brand", "refund_rate"}


def test_unchanged_customers_produce_nothing():
    current = table(customer("cus_1"), customer("cus_2", user_id="u2"))
    assert diff_identify(current, as_pushed(current)).empty


def test_one_changed_trait_sends_only_it_plus_email():
    before = table(customer("cus_1"), customer("cus_2"))
    after = table(customer("cus_1", mrr=99.0), customer("cus_2"))
    [row] = records(diff_identify(after, as_pushed(before)))
    assert row["stripe_customer_id"] == "cus_1" and row["reason"] == "changed"
    assert row["traits"] == {"mrr": 99.0, "email": "cus_1@example.com"}
    [row] = records(diff_identify(after, as_pushed(before), add_email=False))
    assert row["traits"] == {"mrr": 99.0}


def test_trait_that_became_unknown_is_sent_as_none():
    before = table(customer("cus_1"))
    after = table(customer("cus_1", next_billing_date=None, refund_rate=float("nan"), payment_count=None))
    [row] = records(diff_identify(after, as_pushed(before), add_email=False))
    assert row["traits"] == {"next_billing_date": None, "refund_rate": None, "payment_count": None}


def test_representation_noise_is_no_change():
    current = table(customer("cus_1", mrr=10.0, refund_rate=0.1234, trial_end_date=None, card_brand=None))
    pushed = as_pushed(current)
    pushed["trait_mrr"] = 10.000000001
    pushed["trait_refund_rate"] = 0.12340000001
    pushed["trait_cancel_at_period_end"] = 0  # SQLite booleans
    pushed["trait_payment_delinquent"] = 0
    pushed["trait_payment_count"] = 4.0
    pushed["trait_trial_end_date"] = float("nan")  # NaN vs None
    pushed["trait_card_brand"] = pd.NA
    assert diff_identify(current, pushed).empty
    current.loc[0, "cancel_at_period_end"] = True
    pushed["trait_cancel_at_period_end"] = 1
    assert diff_identify(current, pushed).empty


def test_values_read_back_from_sqlite_compare_equal():
    current = table(customer("cus_1", lifetime_value=0.1 + 0.2, trial_end_date=None),
                    customer("cus_2", user_id="u2", cancel_at_period_end=True, card_brand=None, refund_rate=None))
    pushed = sqlite_roundtrip(as_pushed(current))
    assert diff_identify(current, pushed).empty
    assert diff_identify(current.iloc[::-1].reset_index(drop=True), pushed).empty  # any row order


def test_identity_change_resends_all_known_traits_under_the_new_identity():
    before = table(customer("cus_1"), customer("cus_2", user_id="old"))
    after = table(customer("cus_1", user_id="u1", card_brand=None), customer("cus_2", user_id="new"))
    rows = records(diff_identify(after, as_pushed(before)))
    assert [(r["stripe_customer_id"], r["reason"], r["user_id"], r["anonymous_id"], r["previous_user_id"])
            for r in rows] == [("cus_1", "identity_changed", "u1", None, None),
                               ("cus_2", "identity_changed", "new", None, "old")]
    assert "card_brand" not in rows[0]["traits"]
    assert set(rows[1]["traits"]) == set(IDENTIFY_TRAITS) - {"trial_end_date"}


def test_allow_list_restricts_compared_and_sent_traits():
    before = table(customer("cus_1"))
    after = table(customer("cus_1", mrr=50.0, plan="Scale", name="Ada King"))
    [row] = records(diff_identify(after, as_pushed(before), allow_list=["mrr", "name"]))
    assert row["traits"] == {"mrr": 50.0, "name": "Ada King"}  # email not allowed: not added
    # only non-allowed traits changed: nothing to send
    assert diff_identify(after, as_pushed(before), allow_list=["lifetime_value"]).empty
    # first push: allowed known traits plus the always-allowed stripe_customer_id
    [row] = records(diff_identify(after, pd.DataFrame(), allow_list=["mrr", "email"]))
    assert row["traits"] == {"email": "cus_1@example.com", "stripe_customer_id": "cus_1", "mrr": 50.0}
    with pytest.raises(ValueError, match="unknown traits: nope"):
        diff_identify(after, pd.DataFrame(), allow_list=["mrr", "nope"])


def test_new_customers_among_pushed_ones_and_output_order():
    before = table(customer("cus_b"), customer("cus_gone"))
    after = table(customer("cus_c"), customer("cus_b", plan="Team"), customer("cus_a"))
    rows = records(diff_identify(after, as_pushed(before)))
    assert [(r["stripe_customer_id"], r["reason"]) for r in rows] == [
        ("cus_a", "first"), ("cus_b", "changed"), ("cus_c", "first")]  # cus_gone: nothing


def test_new_trait_column_missing_from_pushed_is_sent():
    current = table(customer("cus_1"))
    pushed = as_pushed(current).drop(columns=["trait_card_brand"])
    [row] = records(diff_identify(current, pushed, add_email=False))
    assert row["traits"] == {"card_brand": "visa"}


def test_exact_path_when_row_hashing_is_impossible(monkeypatch):
    import s2s_pipeline.segment.diff as diff_module

    before = table(customer("cus_1"), customer("cus_2"), customer("cus_3"))
    after = table(customer("cus_1", plan="Team"), customer("cus_2"), customer("cus_3", user_id="u3"))
    expected = records(diff_identify(after, as_pushed(before)))
    assert [(r["stripe_customer_id"], r["reason"]) for r in expected] == [
        ("cus_1", "changed"), ("cus_3", "identity_changed")]
    monkeypatch.setattr(diff_module, "_row_hash", lambda columns, n: None)
    assert records(diff_identify(after, as_pushed(before))) == expected
    monkeypatch.undo()
    pushed = as_pushed(before)
    pushed["trait_name"] = pushed["trait_name"].astype(object)
    pushed.at[1, "trait_name"] = ["not", "hashable"]  # unhashable stored value: exact comparison everywhere
    rows = records(diff_identify(after, pushed, add_email=False))
    assert [(r["stripe_customer_id"], r["traits"]) for r in rows][:2] == [
        ("cus_1", {"plan": "Team"}), ("cus_2", {"name": "Ada Lovelace"})]


def test_duplicate_customers_are_refused():
    current = table(customer("cus_1"), customer("cus_1"))
    with pytest.raises(ValueError, match="several rows"):
        diff_identify(current, pd.DataFrame())
    one = table(customer("cus_1"))
    with pytest.raises(ValueError, match="pushed traits hold several rows"):
        diff_identify(one, pd.concat([as_pushed(one)] * 2, ignore_index=True))


def test_canonical_traits_dtypes():
    frame = pd.DataFrame({
        "stripe_customer_id": ["cus_1", "cus_2"], "mrr": [10.004999, None], "refund_rate": [0.123456, np.nan],
        "payment_count": [3.0, None], "cancel_at_period_end": [1, 0], "payment_delinquent": [None, True],
        "plan": pd.Series(["Pro", None], dtype="str"),
    })
    out = canonical_traits(frame)
    assert out["mrr"].tolist()[0] == 10.0 and math.isnan(out["mrr"].tolist()[1])
    assert out["refund_rate"].tolist()[0] == 0.1235
    assert str(out["payment_count"].dtype) == "Int64" and out["payment_count"].tolist() == [3, pd.NA]
    assert str(out["cancel_at_period_end"].dtype) == "boolean"
    assert out["cancel_at_period_end"].tolist() == [True, False]
    assert out["payment_delinquent"].tolist() == [pd.NA, True]
    assert out["plan"].dtype == object and out["plan"].tolist() == ["Pro", None]
    assert out["card_brand"].tolist() == [None, None]  # missing trait column: all null


# -- group ------------------------------------------------------------------------------------------


def group_row(cid="cus_1", company_id="co_1", company_name="Acme", plan="Pro", mrr=29.0, user_id=None):
    return {"stripe_customer_id": cid, "user_id": user_id, "anonymous_id": None if user_id else cid,
            "company_id": company_id, "company_name": company_name, "plan": plan, "mrr": mrr}


def group_pushed(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"stripe_customer_id": r["stripe_customer_id"], "user_id": r["user_id"],
                          "anonymous_id": r["anonymous_id"], "group_id": r["company_id"],
                          "group_name": r["company_name"], "group_plan": r["plan"], "group_mrr": r["mrr"]}
                         for r in rows])


def test_group_first_push_only_for_customers_with_a_company():
    current = pd.DataFrame([group_row("cus_1"), group_row("cus_2", company_id=None),
                            group_row("cus_3", company_name=None)])
    rows = records(diff_group(current, pd.DataFrame()))
    assert [(r["stripe_customer_id"], r["group_id"], r["reason"], r["traits"]) for r in rows] == [
        ("cus_1", "co_1", "first", {"name": "Acme", "plan": "Pro", "mrr": 29.0}),
        ("cus_3", "co_1", "first", {"plan": "Pro", "mrr": 29.0}),
    ]


def test_group_unchanged_changed_moved_and_dropped():
    before = [group_row("cus_1"), group_row("cus_2"), group_row("cus_3"), group_row("cus_4"), group_row("cus_5")]
    after = pd.DataFrame([
        group_row("cus_1", mrr=29.000000001),  # noise: unchanged
        group_row("cus_2", mrr=99.0),  # changed
        group_row("cus_3", company_id="co_2"),  # moved to another group
        group_row("cus_4", company_id=None),  # company removed: no call
        group_row("cus_5", plan=None),  # plan became unknown
    ])
    rows = records(diff_group(after, group_pushed(*before)))
    assert [(r["stripe_customer_id"], r["group_id"], r["reason"], r["traits"]) for r in rows] == [
        ("cus_2", "co_1", "changed", {"name": "Acme", "plan": "Pro", "mrr": 99.0}),
        ("cus_3", "co_2", "first", {"name": "Acme", "plan": "Pro", "mrr": 29.0}),
        ("cus_5", "co_1", "changed", {"name": "Acme", "plan": None, "mrr": 29.0}),
    ]


def test_group_resent_when_identity_changes_but_not_for_group_only_rows():
    before = group_pushed(group_row("cus_1"), group_row("cus_2"))
    before.loc[1, ["user_id", "anonymous_id"]] = None  # written by a group call alone
    after = pd.DataFrame([group_row("cus_1", user_id="u1"), group_row("cus_2")])
    rows = records(diff_group(after, before))
    assert [(r["stripe_customer_id"], r["reason"], r["user_id"]) for r in rows] == [
        ("cus_1", "identity_changed", "u1")]


# -- properties -------------------------------------------------------------------------------------

_text = st.one_of(st.none(), st.sampled_from(["a", "b", "Pro", "é", ""]))
_money = st.one_of(st.none(), st.floats(min_value=0, max_value=1e7, allow_nan=False).map(lambda x: round(x, 2)))
_rate = st.one_of(st.none(), st.floats(min_value=0, max_value=1, allow_nan=False).map(lambda x: round(x, 4)))
_count = st.one_of(st.none(), st.integers(min_value=0, max_value=10**6))
_flag = st.one_of(st.none(), st.booleans())


_days = st.one_of(st.none(), st.floats(min_value=0, max_value=365, allow_nan=False).map(lambda x: round(x, 1)))


def _value(name):
    if name in ("lifetime_value", "mrr"):
        return _money
    if name == "refund_rate":
        return _rate
    if name == "payment_frequency_days":
        return _days
    if name == "payment_count":
        return _count
    if name in ("cancel_at_period_end", "payment_delinquent", "paying_customer"):
        return _flag
    return _text


@st.composite
def trait_tables(draw, ids):
    rows = []
    for cid in ids:
        user_id = draw(st.one_of(st.none(), st.sampled_from(["u1", "u2"])))
        row = {"stripe_customer_id": cid, "user_id": user_id, "anonymous_id": None if user_id else cid}
        for name in STORED:
            row[name] = draw(_value(name))
        rows.append(row)
    return table(*rows) if rows else table(customer("cus_x")).iloc[:0]


_ids = st.lists(st.sampled_from([f"cus_{i}" for i in range(12)]), unique=True, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_diff_against_itself_is_empty(data):
    current = data.draw(trait_tables(data.draw(_ids)))
    assert diff_identify(current, as_pushed(current)).empty
    if len(current):
        assert diff_identify(current, sqlite_roundtrip(as_pushed(current))).empty


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_applying_the_diff_to_pushed_yields_current(data):
    current = data.draw(trait_tables(data.draw(_ids)))
    before = data.draw(trait_tables(data.draw(_ids)))
    pushed = as_pushed(before)
    diff = diff_identify(current, pushed)
    if len(pushed):  # the same diff against the state read back from SQLite (other dtypes, row order)
        assert records(diff_identify(current, sqlite_roundtrip(pushed))) == records(diff)
    after = apply_identify(pushed, diff)
    # every current customer is now in the pushed state with its current values and identity
    expected = canonical_traits(as_pushed(current), STORED, prefix="trait_").sort_values("stripe_customer_id")
    got = after[after["stripe_customer_id"].isin(current["stripe_customer_id"])]
    got = got.set_index("stripe_customer_id").loc[expected["stripe_customer_id"]].reset_index()
    for column in expected.columns:
        left = expected[column].astype(object).where(expected[column].notna(), None).tolist()
        right = got[column].astype(object).where(got[column].notna(), None).tolist()
        assert left == right, column
    # and a second diff finds nothing more to send
    assert diff_identify(current, after).empty
