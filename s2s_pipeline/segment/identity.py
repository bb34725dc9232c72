"""The Segment identity of each Stripe customer (contract "Identity").

- ``userId``: the customer's metadata user id (the trait table's ``user_id``,
  from the configured metadata keys) when present; else, when the Profiles
  API is configured (``lookup`` given), the first ``user_id`` external id of
  profile ``email:<email>``; else no userId.
- Without a userId, calls use ``anonymousId`` = the Stripe customer id.
- The resolved identity is stored (``segment_identity_map``) and reused, so
  every call about one customer uses the same identity.

Rule decisions:

- **Metadata always wins** when present, also over a stored Profiles or
  anonymous identity, and a changed metadata user id replaces the stored one
  (the metadata is the customer's own statement of who they are).
- **A stored metadata identity is kept** when the metadata key later
  disappears: identities are reused, and a removed key is far more often an
  edit than a real change of person. (Set a new metadata user id to move the
  customer.)
- **A stored Profiles identity is kept** without new look-ups, even when the
  email changes or Profiles is no longer configured.
- **Anonymous customers with an email are looked up** (Profiles configured)
  when never checked, checked more than ``recheck_after_seconds`` ago, or
  their email changed since the last look-up (``email_key`` differs). At most
  ``max_lookups`` per run, oldest check first (never checked first; ties by
  Stripe id); the rest keep their stored state and wait for the next run.
- A look-up that finds no profile (or no ``user_id`` on it) leaves the
  customer anonymous and records the check (``profiles_checked_at``,
  ``email_key``). A look-up that fails (an exception from ``lookup``) aborts
  the resolution: identities must never silently fall back to anonymous
  because Profiles was unreachable.
- ``email_key`` is the SHA-256 of the stripped, lower-cased email: a changed
  email is detected without storing another copy of it. Only the Stripe
  customer id is ever logged.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SOURCE_METADATA = "metadata"
SOURCE_PROFILES = "profiles"
SOURCE_ANONYMOUS = "anonymous"

#: Columns of ``resolve_identities``' result.
IDENTITY_COLUMNS = ("stripe_customer_id", "user_id", "anonymous_id", "source", "email_key",
                    "profiles_checked_at", "changed")


@dataclass(frozen=True)
class IdentityRecord:
    """One customer's resolved identity (a row of ``segment_identity_map``)."""

    stripe_customer_id: str
    user_id: str | None
    source: str  # metadata | profiles | anonymous
    email_key: str | None
    profiles_checked_at: int | None

    @property
    def anonymous_id(self) -> str | None:
        """The Stripe customer id when there is no user id."""
        return None if self.user_id is not None else self.stripe_customer_id


def email_key(email) -> str | None:
    """SHA-256 (hex) of the stripped, lower-cased email; None for a missing or blank email."""
    if email is None or (not isinstance(email, str) and pd.isna(email)):
        return None
    text = str(email).strip().lower()
    if not text:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Object values with None for null, and the null mask."""
    if column not in frame.columns:
        n = len(frame)
        return np.full(n, None, dtype=object), np.ones(n, dtype=bool)
    values = frame[column].to_numpy(dtype=object)
    null = np.asarray(pd.isna(values), dtype=bool)
    if null.any():
        values = values.copy()
        values[null] = None
    return values, null


def _ints(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Int64 values (0 where null) and the null mask."""
    if column not in frame.columns:
        n = len(frame)
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    f = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    null = np.isnan(f)
    return np.where(null, 0, f).astype(np.int64), null


def _same(a: np.ndarray, a_null: np.ndarray, b: np.ndarray, b_null: np.ndarray) -> np.ndarray:
    same = np.asarray(a == b, dtype=bool)
    return (same & ~a_null & ~b_null) | (a_null & b_null)


def resolve_identities(customers: pd.DataFrame, stored: pd.DataFrame, *,
                       lookup: Callable[[str], str | None] | None, now: int,
                       recheck_after_seconds: int = 7 * 86400, max_lookups: int | None = None) -> pd.DataFrame:
    """Resolve every customer's identity for this run.

    ``customers``: ``stripe_customer_id``, ``email``, ``user_id`` (from
    metadata, or null). ``stored``: ``segment_identity_map`` rows (may be
    empty). ``lookup(email)`` returns the profile's user id or None (e.g.
    ``ProfilesClient.user_id_for_email``); None when Profiles is not
    configured. ``now``: Unix seconds of this run.

    Returns one row per customer (``customers``' order): ``stripe_customer_id``,
    ``user_id``, ``anonymous_id`` (the Stripe id when ``user_id`` is null, else
    None), ``source``, ``email_key``, ``profiles_checked_at`` (``Int64``) and
    ``changed`` (the row differs from the stored one or is new: write it).
    Column-wise except the look-ups themselves (and the email hashing of the
    anonymous customers that may need one).
    """
    if max_lookups is not None and max_lookups < 0:
        raise ValueError(f"max_lookups must be >= 0, got {max_lookups}")
    n = len(customers)
    ids = customers["stripe_customer_id"].to_numpy(dtype=object)
    if not pd.Index(ids).is_unique:
        raise ValueError("customers hold several rows for one stripe_customer_id")
    meta_user, meta_null = _text(customers, "user_id")
    emails, email_null = _text(customers, "email")

    # stored state, aligned to the customers
    if len(stored):
        at = pd.Index(stored["stripe_customer_id"].to_numpy(dtype=object)).get_indexer(pd.Index(ids))
    else:
        at = np.full(n, -1, dtype=np.int64)
    has_stored = at >= 0
    take = np.where(has_stored, at, 0)

    def stored_text(column: str) -> tuple[np.ndarray, np.ndarray]:
        if not len(stored):
            return np.full(n, None, dtype=object), np.ones(n, dtype=bool)
        values, null = _text(stored, column)
        values, null = values[take], null[take] | ~has_stored
        values[null] = None
        return values, null

    s_user, s_user_null = stored_text("user_id")
    s_source, _ = stored_text("source")
    s_key, s_key_null = stored_text("email_key")
    if len(stored):
        s_checked, s_checked_null = _ints(stored, "profiles_checked_at")
        s_checked, s_checked_null = s_checked[take], s_checked_null[take] | ~has_stored
    else:
        s_checked, s_checked_null = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)

    # start from the stored state (new customers: anonymous, never checked)
    user = s_user.copy()
    source = np.where(has_stored & (s_source != None), s_source, SOURCE_ANONYMOUS).astype(object)  # noqa: E711
    key, key_null = s_key.copy(), s_key_null.copy()
    checked, checked_null = s_checked.copy(), s_checked_null.copy()
    # a stored row without user id is anonymous whatever its source says
    user_null = s_user_null.copy()
    source[user_null] = SOURCE_ANONYMOUS

    # 1. metadata wins
    use_meta = ~meta_null
    user[use_meta] = meta_user[use_meta]
    user_null[use_meta] = False
    source[use_meta] = SOURCE_METADATA

    # 2. anonymous customers with an email: look up in Profiles when due
    anonymous = user_null
    lookups_done = lookups_found = 0
    if lookup is not None:
        eligible = np.flatnonzero(anonymous & ~email_null)
        if len(eligible):
            keys = np.array([email_key(e) for e in emails[eligible]], dtype=object)
            never = s_checked_null[eligible]
            stale = ~never & (now - s_checked[eligible] > recheck_after_seconds)
            moved = ~_same(keys, pd.isna(keys), s_key[eligible], s_key_null[eligible])
            due = (never | stale | moved) & pd.notna(keys)
            rows, keys = eligible[due], keys[due]
            if max_lookups is not None and len(rows) > max_lookups:
                # oldest check first: never checked (-inf) first, ties by Stripe id
                age = np.where(s_checked_null[rows], np.iinfo(np.int64).min, s_checked[rows])
                order = np.lexsort((ids[rows].astype(str), age))[:max_lookups]
                order.sort()  # keep customer order for the calls
                rows, keys = rows[order], keys[order]
            for i, k in zip(rows.tolist(), keys.tolist()):
                found = lookup(str(emails[i]).strip())
                lookups_done += 1
                if found is not None and not (isinstance(found, str) and not found.strip()):
                    user[i] = str(found)
                    user_null[i] = False
                    source[i] = SOURCE_PROFILES
                    lookups_found += 1
                    log.debug("profiles: %s resolved to a user id", ids[i])
                else:
                    log.debug("profiles: %s has no user id", ids[i])
                key[i], key_null[i] = k, False
                checked[i], checked_null[i] = now, False
    if lookups_done:
        log.info("profiles: %d look-ups, %d user ids found", lookups_done, lookups_found)

    anonymous_id = np.where(user_null, ids, None).astype(object)
    changed = ~has_stored | ~_same(user, user_null, s_user, s_user_null) | (source != s_source) \
        | ~_same(key, key_null, s_key, s_key_null) \
        | ~((checked == s_checked) & ~checked_null & ~s_checked_null | (checked_null & s_checked_null))
    return pd.DataFrame({
        "stripe_customer_id": pd.Series(ids, dtype=object),
        "user_id": pd.Series(np.where(user_null, None, user), dtype=object),
        "anonymous_id": pd.Series(anonymous_id, dtype=object),
        "source": pd.Series(source, dtype=object),
        "email_key": pd.Series(np.where(key_null, None, key), dtype=object),
        "profiles_checked_at": pd.Series(pd.arrays.IntegerArray(checked, checked_null.copy())),
        "changed": pd.Series(np.asarray(changed, dtype=bool)),
    })


def identity_records(resolved: pd.DataFrame) -> list[IdentityRecord]:
    """The rows of ``resolve_identities``' result as records (for small frames and tests)."""
    out = []
    for row in resolved.itertuples(index=False):
        checked = row.profiles_checked_at
        out.append(IdentityRecord(row.stripe_customer_id, row.user_id, row.source, row.email_key,
                                  None if pd.isna(checked) else int(checked)))
    return out
