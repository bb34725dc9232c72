"""Identity resolution: metadata, Profiles look-ups, anonymous fallback, reuse and rechecks."""

from __future__ import annotations

import hashlib
import logging

import pandas as pd
import pytest

from s2s_pipeline.segment.identity import email_key, identity_records, resolve_identities

NOW = 1_790_000_000
DAY = 86_400


def customers(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"stripe_customer_id": cid, "email": email, "user_id": user_id}
                         for cid, email, user_id in rows], columns=["stripe_customer_id", "email", "user_id"])


def stored(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"stripe_customer_id": cid, "user_id": user_id, "source": source, "email_key": key,
                          "profiles_checked_at": checked, "updated_at": NOW - DAY}
                         for cid, user_id, source, key, checked in rows],
                        columns=["stripe_customer_id", "user_id", "source", "email_key", "profiles_checked_at",
                                 "updated_at"])


EMPTY = stored()


class FakeProfiles:
    """``lookup`` stand-in: a dict of email -> user id, recording every call."""

    def __init__(self, known: dict[str, str] | None = None):
        self.known = known or {}
        self.calls: list[str] = []

    def __call__(self, email: str) -> str | None:
        self.calls.append(email)
        return self.known.get(email)


def by_id(frame: pd.DataFrame) -> dict[str, dict]:
    return {r.stripe_customer_id: r for r in identity_records(frame)}


def test_email_key_is_sha256_of_the_normalised_email():
    assert email_key("  Ada@Example.COM ") == hashlib.sha256(b"ada@example.com").hexdigest()
    assert email_key(None) is None and email_key(float("nan")) is None and email_key("  ") is None


def test_metadata_profiles_and_anonymous_fallback():
    profiles = FakeProfiles({"bob@example.com": "u_bob"})
    out = resolve_identities(customers(("cus_a", "ada@example.com", "u_ada"), ("cus_b", "bob@example.com", None),
                                       ("cus_c", "cy@example.com", None), ("cus_d", None, None)),
                             EMPTY, lookup=profiles, now=NOW)
    assert list(out.columns) == ["stripe_customer_id", "user_id", "anonymous_id", "source", "email_key",
                                 "profiles_checked_at", "changed"]
    assert out[["stripe_customer_id", "user_id", "anonymous_id", "source"]].values.tolist() == [
        ["cus_a", "u_ada", None, "metadata"],
        ["cus_b", "u_bob", None, "profiles"],
        ["cus_c", None, "cus_c", "anonymous"],
        ["cus_d", None, "cus_d", "anonymous"],
    ]
    assert profiles.calls == ["bob@example.com", "cy@example.com"]  # metadata wins: no look-up for cus_a
    rec = by_id(out)
    assert rec["cus_b"].email_key == email_key("bob@example.com") and rec["cus_b"].profiles_checked_at == NOW
    assert rec["cus_c"].profiles_checked_at == NOW  # checked, nothing found
    assert rec["cus_d"].profiles_checked_at is None and rec["cus_d"].email_key is None  # no email: never checked
    assert rec["cus_a"].anonymous_id is None and rec["cus_c"].anonymous_id == "cus_c"
    assert out["changed"].tolist() == [True, True, True, True]


def test_without_profiles_customers_without_metadata_are_anonymous():
    out = resolve_identities(customers(("cus_a", "ada@example.com", None)), EMPTY, lookup=None, now=NOW)
    assert out[["user_id", "anonymous_id", "source"]].values.tolist() == [[None, "cus_a", "anonymous"]]
    assert pd.isna(out.loc[0, "profiles_checked_at"])


def test_stored_identities_are_reused_without_lookups():
    profiles = FakeProfiles({"bob@example.com": "someone_else"})
    state = stored(("cus_a", "u_ada", "metadata", None, None),
                   ("cus_b", "u_bob", "profiles", email_key("bob@example.com"), NOW - 90 * DAY),
                   ("cus_c", None, "anonymous", email_key("cy@example.com"), NOW - DAY))
    out = resolve_identities(customers(("cus_a", "ada@example.com", "u_ada"),
                                       ("cus_b", "bob.new@example.com", None),  # email changed: still kept
                                       ("cus_c", "cy@example.com", None)),
                             state, lookup=profiles, now=NOW)
    assert profiles.calls == []  # profiles id kept; anonymous checked yesterday with the same email
    assert out[["user_id", "source", "changed"]].values.tolist() == [
        ["u_ada", "metadata", False], ["u_bob", "profiles", False], [None, "anonymous", False]]


def test_metadata_user_id_appearing_later_wins():
    state = stored(("cus_a", None, "anonymous", email_key("ada@example.com"), NOW - DAY),
                   ("cus_b", "u_prof", "profiles", email_key("bob@example.com"), NOW - DAY))
    out = resolve_identities(customers(("cus_a", "ada@example.com", "u_ada"), ("cus_b", "bob@example.com", "u_meta")),
                             state, lookup=FakeProfiles(), now=NOW)
    assert out[["user_id", "anonymous_id", "source", "changed"]].values.tolist() == [
        ["u_ada", None, "metadata", True], ["u_meta", None, "metadata", True]]


def test_stored_metadata_identity_survives_a_removed_metadata_key():
    state = stored(("cus_a", "u_ada", "metadata", None, None))
    profiles = FakeProfiles({"ada@example.com": "other"})
    out = resolve_identities(customers(("cus_a", "ada@example.com", None)), state, lookup=profiles, now=NOW)
    assert out[["user_id", "source", "changed"]].values.tolist() == [["u_ada", "metadata", False]]
    assert profiles.calls == []


def test_recheck_window_for_anonymous_customers():
    state = stored(("cus_recent", None, "anonymous", email_key("r@example.com"), NOW - 6 * DAY),
                   ("cus_stale", None, "anonymous", email_key("s@example.com"), NOW - 8 * DAY))
    profiles = FakeProfiles({"s@example.com": "u_s", "r@example.com": "u_r"})
    out = resolve_identities(customers(("cus_recent", "r@example.com", None), ("cus_stale", "s@example.com", None)),
                             state, lookup=profiles, now=NOW, recheck_after_seconds=7 * DAY)
    assert profiles.calls == ["s@example.com"]
    assert out[["user_id", "source", "changed"]].values.tolist() == [
        [None, "anonymous", False], ["u_s", "profiles", True]]
    # a check that finds nothing still records when it happened
    profiles = FakeProfiles()
    out = resolve_identities(customers(("cus_stale", "s@example.com", None)), state, lookup=profiles, now=NOW)
    assert by_id(out)["cus_stale"].profiles_checked_at == NOW and out["changed"].tolist() == [True]


def test_changed_email_triggers_a_new_lookup():
    state = stored(("cus_a", None, "anonymous", email_key("old@example.com"), NOW - DAY))
    profiles = FakeProfiles({"new@example.com": "u_new"})
    out = resolve_identities(customers(("cus_a", " New@Example.com ", None)), state, lookup=profiles, now=NOW)
    assert profiles.calls == ["New@Example.com"]
    rec = by_id(out)["cus_a"]
    assert (rec.user_id, rec.source, rec.email_key) == (None, "anonymous", email_key("new@example.com"))
    # same email, other case/spaces: no look-up
    state = stored(("cus_a", None, "anonymous", email_key("new@example.com"), NOW - DAY))
    profiles = FakeProfiles()
    resolve_identities(customers(("cus_a", "NEW@example.com", None)), state, lookup=profiles, now=NOW)
    assert profiles.calls == []


def test_max_lookups_takes_the_oldest_checked_first():
    state = stored(("cus_1", None, "anonymous", email_key("1@x.com"), NOW - 10 * DAY),
                   ("cus_2", None, "anonymous", email_key("2@x.com"), NOW - 30 * DAY),
                   ("cus_3", None, "anonymous", email_key("3@x.com"), NOW - 20 * DAY))
    profiles = FakeProfiles({f"{i}@x.com": f"u{i}" for i in range(5)})
    rows = customers(("cus_1", "1@x.com", None), ("cus_2", "2@x.com", None), ("cus_3", "3@x.com", None),
                     ("cus_4", "4@x.com", None))  # cus_4: never checked, first in line
    out = resolve_identities(rows, state, lookup=profiles, now=NOW, max_lookups=2)
    assert sorted(profiles.calls) == ["2@x.com", "4@x.com"]
    assert out[["user_id", "source", "changed"]].values.tolist() == [
        [None, "anonymous", False], ["u2", "profiles", True], [None, "anonymous", False], ["u4", "profiles", True]]
    assert by_id(out)["cus_1"].profiles_checked_at == NOW - 10 * DAY  # left as stored for the next run
    profiles = FakeProfiles()
    resolve_identities(rows, state, lookup=profiles, now=NOW, max_lookups=0)
    assert profiles.calls == []


def test_lookup_failures_propagate_and_only_ids_are_logged(caplog):
    def broken(email):
        raise RuntimeError("profiles down")

    with pytest.raises(RuntimeError, match="profiles down"):
        resolve_identities(customers(("cus_a", "ada@example.com", None)), EMPTY, lookup=broken, now=NOW)
    caplog.set_level(logging.DEBUG, logger="s2s_pipeline.segment.identity")
    resolve_identities(customers(("cus_a", "ada@example.com", None)), EMPTY,
                       lookup=FakeProfiles({"ada@example.com": "u"}), now=NOW)
    assert "cus_a" in caplog.text and "ada@example.com" not in caplog.text


def test_stored_rows_read_back_from_sql_dtypes():
    # as read from SQLite by pandas: str columns with NaN, checked-at as float with NaN
    state = stored(("cus_a", None, "anonymous", email_key("a@x.com"), NOW - DAY), ("cus_b", "u_b", "metadata", None, None))
    state = state.astype({"user_id": "str", "email_key": "str", "profiles_checked_at": "float64"})
    out = resolve_identities(customers(("cus_a", "a@x.com", None), ("cus_b", "b@x.com", "u_b")), state,
                             lookup=FakeProfiles(), now=NOW)
    assert out["changed"].tolist() == [False, False]
    assert str(out["profiles_checked_at"].dtype) == "Int64"
