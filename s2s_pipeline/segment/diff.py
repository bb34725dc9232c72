"""What to send to Segment: the new trait table against what Segment acknowledged.

Contract ("Identify traits", "Group", "Delivery guarantees"): an identify is
sent only for a customer whose traits changed and carries the changed traits;
a customer's first identify carries all its known traits (nulls left out); a
trait that becomes unknown is sent as null.

Everything is column-wise (numpy/pandas); Python only loops over the rows that
produce a message, to build their trait dicts.

Rule decisions (for the user docs):

- **Canonical values**: both sides are compared in ``segment.canonical``'s form.
- **Reasons.** ``first``: no pushed row for the customer: all known traits.
  ``identity_changed``: the customer's resolved identity (``user_id`` /
  ``anonymous_id``) differs from the one its pushed values were sent under
  (e.g. a user id appeared): all known traits again, under the new identity
  (nulls left out, as for a first identify: the new profile has no value to
  clear). ``changed``: only the traits whose canonical value changed, a trait
  that became unknown as ``None``. Customers with nothing to send give no row.
- **Customers only in ``pushed``** (deleted in Stripe, or filtered out
  upstream) give no row: nothing is sent about them.
- **Allow-list.** ``allow_list`` restricts which traits are compared and sent.
  ``stripe_customer_id`` is always allowed: it is the join key back to Stripe,
  never changes after the first identify (so it only travels with ``first`` /
  ``identity_changed`` calls) and is not personal data. ``email`` is *not*
  implicitly allowed: an allow-list is how users keep personal data away from
  destinations, so ``email`` travels only when listed (or without allow-list).
- **email on changed identifies.** The contract lets a changed identify "add
  ``email``". With ``add_email=True`` (the default) every ``changed`` identify
  also carries the customer's current email when it is known and allowed,
  even if the email itself did not change: email-keyed destinations (Customer.io,
  Mailchimp, Braze...) then match the profile on every update. The value
  equals the pushed one, so applying it to the state changes nothing, and it is
  part of the deterministic messageId input like every other sent value.
- **Group.** Customers whose ``company_id`` is set get ``group(company_id,
  {name, plan, mrr})`` when they were never grouped, the group id changed,
  their identity changed, or one of the three traits changed. A group call
  carries the full known group trait set (several destinations create or
  update the account record from each call), plus ``None`` for a group trait
  that became unknown. A customer whose ``company_id`` disappears gets no group
  call: Segment has no "ungroup", and the pushed group columns are left as
  they were.
- **Output order** is by ``stripe_customer_id``, for determinism.

The state writer applies an acknowledged message with :func:`apply_identify`
semantics: the sent values replace the stored ones; for ``first`` and
``identity_changed`` every trait not in the message is stored as null.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import compress
from typing import Sequence

import numpy as np
import pandas as pd

from s2s_pipeline.core.contract import GROUP_TRAITS, IDENTIFY_TRAITS
from s2s_pipeline.segment.canonical import CanonicalColumn, canonical_column, canonical_traits
from s2s_pipeline.segment.messages import ALWAYS_ALLOWED  # the allow-list rule every identify follows
from s2s_pipeline.store.schema import GROUP_TRAIT_COLUMNS

#: Prefix of the identify-trait columns of ``segment_pushed_traits``.
PUSHED_PREFIX = "trait_"

REASON_FIRST = "first"
REASON_IDENTITY = "identity_changed"
REASON_CHANGED = "changed"

IDENTIFY_COLUMNS = ("stripe_customer_id", "user_id", "anonymous_id", "previous_user_id", "reason", "traits")
GROUP_COLUMNS = ("stripe_customer_id", "user_id", "anonymous_id", "group_id", "reason", "traits")
#: Group trait columns of the pushed table -> trait name as sent.
GROUP_SENT_NAMES: dict[str, str] = {f"group_{name}": name for name in GROUP_TRAITS}


@contextmanager
def _no_gc():
    """Pause the cyclic garbage collector while building many containers.

    Building a million trait dicts would otherwise trigger full collections
    over and over (each one walking every tracked object); nothing built here
    is cyclic.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- identity and alignment ----------------------------------------------------------------------


def _text(frame: pd.DataFrame, column: str) -> CanonicalColumn:
    return canonical_column(frame[column] if column in frame.columns else None, column, len(frame))


def _identity(frame: pd.DataFrame) -> tuple[CanonicalColumn, CanonicalColumn]:
    """(user_id, anonymous_id); anonymous_id defaults to the Stripe id when user_id is null."""
    user = _text(frame, "user_id")
    if "anonymous_id" in frame.columns:
        anon = _text(frame, "anonymous_id")
    else:
        ids = frame["stripe_customer_id"].to_numpy(dtype=object)
        values = np.where(user.null, ids, None)
        anon = CanonicalColumn("text", values, ~user.null)
    return user, anon


def _eq(a: CanonicalColumn, b: CanonicalColumn) -> np.ndarray:
    """Null-aware equality of two canonical columns of the same kind."""
    both_null = a.null & b.null
    if a.kind == "text":
        with np.errstate(invalid="ignore"):
            same = np.asarray(a.values == b.values, dtype=bool)
    else:
        same = a.values == b.values
    return (same & ~a.null & ~b.null) | both_null


def _customer_ids(frame: pd.DataFrame, what: str) -> np.ndarray:
    if "stripe_customer_id" not in frame.columns:
        raise ValueError(f"{what} frame has no stripe_customer_id column")
    ids = frame["stripe_customer_id"].to_numpy(dtype=object)
    return ids


def _align(current_ids: np.ndarray, pushed: pd.DataFrame) -> np.ndarray:
    """Row of ``pushed`` for each current customer, -1 where there is none.

    Raises ``ValueError`` when either side holds a customer twice. One hash
    table (of the current ids) serves both the uniqueness check and the join;
    when both sides list the same customers in the same order (e.g. both
    read ordered by id) no hash table is built at all.
    """
    n = len(current_ids)
    if len(pushed) == 0:
        _check_unique(current_ids)
        return np.full(n, -1, dtype=np.int64)
    pushed_ids = _customer_ids(pushed, "pushed")
    if len(pushed_ids) == n and (n == 0 or pushed_ids[0] == current_ids[0]) and np.array_equal(pushed_ids, current_ids):
        # Same customers in the same order; the pushed ids are the table's primary key, so unique.
        return np.arange(n, dtype=np.int64)
    try:
        position = pd.Index(current_ids).get_indexer(pd.Index(pushed_ids))
    except pd.errors.InvalidIndexError:
        raise ValueError("current traits hold several rows for one stripe_customer_id") from None
    found = position >= 0
    if found.any() and np.bincount(position[found], minlength=n).max() > 1:
        raise ValueError("pushed traits hold several rows for one stripe_customer_id")
    at = np.full(n, -1, dtype=np.int64)
    at[position[found]] = np.flatnonzero(found)
    return at


def _check_unique(ids: np.ndarray) -> None:
    if not pd.Index(ids).is_unique:
        raise ValueError("current traits hold several rows for one stripe_customer_id")


def _considered(traits: Sequence[str], allow_list: Sequence[str] | None) -> list[str]:
    traits = list(traits)
    if allow_list is None:
        return traits
    if isinstance(allow_list, str):
        raise TypeError("allow_list must be a sequence of trait names, not a string")
    unknown = sorted(set(allow_list) - set(traits))
    if unknown:
        raise ValueError(f"trait allow-list names unknown traits: {', '.join(unknown)}; "
                         f"known: {', '.join(traits)}")
    allowed = set(allow_list) | ALWAYS_ALLOWED
    return [t for t in traits if t in allowed]


def _sorted_rows(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` ordered by their customer id."""
    if len(rows) <= 1:
        return rows
    order = pd.Index(ids[rows]).argsort()
    return rows[order]


# -- identify ------------------------------------------------------------------------------------


@dataclass
class _Stored:
    """A text column of the pushed table as stored: raw object values and their likely null token.

    Normalising a whole stored text column (``pd.isna`` over a million
    strings scattered in memory) is the most expensive step of a diff, so
    stored text is compared through row hashes first (see ``_row_hash``) and
    normalised only at the few candidate rows.
    """

    values: np.ndarray
    token: object  # the value a null most likely has here (None, np.nan, pd.NA)

    @classmethod
    def of(cls, series: pd.Series | None, name: str, n: int) -> "_Stored":
        if series is None:
            return cls(np.full(n, None, dtype=object), None)
        dtype = series.dtype
        if isinstance(dtype, pd.StringDtype):
            return cls(series.to_numpy(dtype=object), dtype.na_value)
        if dtype == object:
            return cls(series.to_numpy(dtype=object), None)
        return cls(canonical_column(series, name, n).values, None)  # e.g. an all-NULL column read as float

    def exact(self, rows: np.ndarray) -> CanonicalColumn:
        """Canonical values at ``rows`` (``-1``: no pushed row, null)."""
        values = self.values[np.maximum(rows, 0)]  # fancy indexing: a copy
        null = np.asarray(pd.isna(values), dtype=bool) | (rows < 0)
        values[null] = None
        return CanonicalColumn("text", values, null)


def _row_hash(columns: list[np.ndarray], n: int) -> np.ndarray | None:
    """One 64-bit hash per row of the given object columns (None: a value is unhashable).

    Walks the rows in memory order: for a table read from a database, a row's
    strings sit next to each other, so this one pass is far cheaper than a
    column-by-column scan. Equal rows hash equally; a different row hashes
    equally with probability about 2**-64 (and would go unsent until its
    next change).
    """
    if not columns:
        return np.zeros(n, dtype=np.int64)
    try:
        return np.fromiter(map(hash, zip(*columns)), dtype=np.int64, count=n)
    except TypeError:
        return None


def diff_identify(current: pd.DataFrame, pushed: pd.DataFrame, *, traits: Sequence[str] = IDENTIFY_TRAITS,
                  allow_list: Sequence[str] | None = None, add_email: bool = True) -> pd.DataFrame:
    """The identify calls to send: one row per customer with something to send.

    ``current``: one row per customer: ``stripe_customer_id``, ``user_id``,
    ``anonymous_id`` (the identity resolved for this run; when the column is
    absent it is the Stripe id for customers without user id) and the trait
    columns. ``pushed``: rows of ``segment_pushed_traits`` (``trait_<name>``
    columns; may be empty, even without columns).

    Returns columns ``stripe_customer_id``, ``user_id``, ``anonymous_id``,
    ``previous_user_id`` (the pushed user id for ``identity_changed`` rows,
    else ``None``), ``reason`` (``first`` | ``identity_changed`` |
    ``changed``) and ``traits`` (dict of plain Python values), sorted by
    ``stripe_customer_id``. See the module doc for the rules.

    Cost: numeric traits are compared column-wise on all rows; text traits and
    the identity are compared exactly only on the rows whose row hash (all
    text columns at once) differs from the pushed one.
    """
    names = _considered(traits, allow_list)
    n = len(current)
    ids = _customer_ids(current, "current")
    at = _align(ids, pushed)
    was_pushed = at >= 0
    have_pushed = bool(was_pushed.any())
    m = len(pushed)

    user, anon = _identity(current)
    cur_cols: list[CanonicalColumn] = [canonical_column(current[name] if name in current.columns else None, name, n)
                                       for name in names]
    changed = np.zeros((n, len(names)), dtype=bool)
    identity_changed = np.zeros(n, dtype=bool)
    p_user_exact: CanonicalColumn | None = None
    if have_pushed:
        take = np.where(was_pushed, at, 0)
        missing = ~was_pushed
        # numeric traits: exact, column-wise
        for j, name in enumerate(names):
            if cur_cols[j].kind == "text":
                continue
            column = PUSHED_PREFIX + name
            old = canonical_column(pushed[column] if column in pushed.columns else None, name, m)
            changed[:, j] = ~_eq(cur_cols[j], old.take(take, missing))
        # text traits and identity: row-hash filter, then exact on the candidates
        text_j = [j for j, name in enumerate(names) if cur_cols[j].kind == "text" and name != "stripe_customer_id"]
        if "anonymous_id" in pushed.columns:
            p_user = _Stored.of(pushed.get("user_id"), "user_id", m)
            p_anon = _Stored.of(pushed["anonymous_id"], "anonymous_id", m)
        else:  # derive it as for current (Stripe id when no user id)
            pu, pa = _identity(pushed)
            p_user, p_anon = _Stored(pu.values, None), _Stored(pa.values, None)
        stored = [p_user, p_anon] + [_Stored.of(pushed.get(PUSHED_PREFIX + names[j]), names[j], m) for j in text_j]
        mine = [user, anon] + [cur_cols[j] for j in text_j]
        hashed_mine = []
        for col, old in zip(mine, stored):
            values = col.values
            if old.token is not None and col.null.any():
                values = values.copy()
                values[col.null] = old.token  # hash nulls as the stored side writes them
            hashed_mine.append(values)
        h_cur = _row_hash(hashed_mine, n)
        h_old = _row_hash([old.values for old in stored], m)
        if h_cur is None or h_old is None:
            candidates = np.flatnonzero(was_pushed)
        else:
            candidates = np.flatnonzero(was_pushed & (h_cur != h_old[take]))
        if len(candidates):
            rows = at[candidates]
            differs = [~_eq(col.take(candidates), old.exact(rows)) for col, old in zip(mine, stored)]
            identity_changed[candidates] = differs[0] | differs[1]
            for j, d in zip(text_j, differs[2:]):
                changed[candidates, j] = d
            p_user_exact = p_user
    full = ~was_pushed | identity_changed  # rows that send every known trait
    plain_changed = ~full & changed.any(axis=1)

    send = full | plain_changed
    rows = _sorted_rows(ids, np.flatnonzero(send))
    if len(rows) == 0:
        return _empty(IDENTIFY_COLUMNS)

    # Which traits each output row carries.
    known = np.column_stack([~c.null[rows] for c in cur_cols]) if names else np.zeros((len(rows), 0), bool)
    include = np.where(full[rows][:, None], known, changed[rows])
    if add_email and "email" in names:
        e = names.index("email")
        include[:, e] |= known[:, e]  # changed rows also carry the (known) email
    with _no_gc():
        values = [c.python(rows) for c in cur_cols]
        trait_dicts = [dict(compress(zip(names, vals), inc)) for vals, inc in zip(zip(*values), include.tolist())]
        del values

    reason = np.where(~was_pushed[rows], REASON_FIRST,
                      np.where(identity_changed[rows], REASON_IDENTITY, REASON_CHANGED)).astype(object)
    previous = np.full(len(rows), None, dtype=object)
    ic = identity_changed[rows]
    if ic.any() and p_user_exact is not None:
        previous[ic] = p_user_exact.exact(at[rows[ic]]).python(np.arange(int(ic.sum())))
    return pd.DataFrame({
        "stripe_customer_id": pd.Series(ids[rows], dtype=object),
        "user_id": pd.Series(user.python(rows), dtype=object),
        "anonymous_id": pd.Series(anon.python(rows), dtype=object),
        "previous_user_id": pd.Series(previous, dtype=object),
        "reason": pd.Series(reason, dtype=object),
        "traits": pd.Series(trait_dicts, dtype=object),
    })


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


# -- group ---------------------------------------------------------------------------------------


def diff_group(current: pd.DataFrame, pushed: pd.DataFrame) -> pd.DataFrame:
    """The group calls to send (B2B).

    ``current`` needs ``stripe_customer_id``, ``user_id``, ``anonymous_id``,
    ``company_id``, ``company_name``, ``plan`` and ``mrr``; ``pushed`` the
    ``segment_pushed_traits`` rows (``group_id``, ``group_name``,
    ``group_plan``, ``group_mrr``, and the identity columns).

    Returns ``stripe_customer_id``, ``user_id``, ``anonymous_id``,
    ``group_id``, ``reason`` (``first``: never grouped or a new group id;
    ``identity_changed``; ``changed``) and ``traits`` (``{name, plan, mrr}``:
    the known ones, plus ``None`` for one that became unknown), sorted by
    ``stripe_customer_id``. Customers without ``company_id`` give no row.
    """
    n = len(current)
    ids = _customer_ids(current, "current")
    company = _text(current, "company_id")
    grouped = ~company.null
    cur = {
        "group_name": _text(current, "company_name"),
        "group_plan": _text(current, "plan"),
        "group_mrr": canonical_column(current["mrr"] if "mrr" in current.columns else None, "group_mrr", n),
    }
    user, anon = _identity(current)

    at = _align(ids, pushed)
    was_pushed = at >= 0
    take = np.where(was_pushed, at, 0)
    missing = ~was_pushed
    names = list(GROUP_TRAIT_COLUMNS)
    changed = np.zeros((n, len(names)), dtype=bool)
    if len(pushed):
        p_group = _text(pushed, "group_id").take(take, missing)
        p_user, p_anon = _identity(pushed)
        p_user, p_anon = p_user.take(take, missing), p_anon.take(take, missing)
        # A row written by a group call alone has no recorded identity: not a change of identity.
        identity_known = ~(p_user.null & p_anon.null)
        identity_changed = identity_known & ~(_eq(user, p_user) & _eq(anon, p_anon))
        new_group = ~_eq(company, p_group) | p_group.null
        for j, name in enumerate(names):
            col = canonical_column(pushed[name] if name in pushed.columns else None, name, len(pushed))
            changed[:, j] = ~_eq(cur[name], col.take(take, missing))
    else:
        identity_changed = np.zeros(n, dtype=bool)
        new_group = np.ones(n, dtype=bool)
    identity_changed &= ~new_group
    send = grouped & (new_group | identity_changed | changed.any(axis=1))
    rows = _sorted_rows(ids, np.flatnonzero(send))
    if len(rows) == 0:
        return _empty(GROUP_COLUMNS)

    known = np.column_stack([~cur[name].null[rows] for name in names])
    # known values, plus None for ones that became unknown (not on a first call to a group)
    include = known | (changed[rows] & ~new_group[rows][:, None])
    sent_names = [GROUP_SENT_NAMES[name] for name in names]
    with _no_gc():
        values = [cur[name].python(rows) for name in names]
        trait_dicts = [dict(compress(zip(sent_names, vals), inc)) for vals, inc in zip(zip(*values), include.tolist())]
        del values
    reason = np.where(new_group[rows], REASON_FIRST,
                      np.where(identity_changed[rows], REASON_IDENTITY, REASON_CHANGED)).astype(object)
    return pd.DataFrame({
        "stripe_customer_id": pd.Series(ids[rows], dtype=object),
        "user_id": pd.Series(user.python(rows), dtype=object),
        "anonymous_id": pd.Series(anon.python(rows), dtype=object),
        "group_id": pd.Series(company.python(rows), dtype=object),
        "reason": pd.Series(reason, dtype=object),
        "traits": pd.Series(trait_dicts, dtype=object),
    })


# -- newer acknowledged values ------------------------------------------------------------------

#: Traits another path writes too (the failed-payment alert), each with the pushed column holding its time.
TIMED_TRAITS = {"payment_delinquent": "payment_delinquent_as_of"}


def keep_newer_pushed(current: pd.DataFrame, pushed: pd.DataFrame, as_of: int) -> pd.DataFrame:
    """``current`` (the trait table, computed at ``as_of``) with each timed trait's acknowledged value
    where that value is newer than the table, plus a ``<trait>_as_of`` column: the time of the value
    each row now carries.

    Contract: a later run never sends an older value over a newer one. A trait table computed
    before a failed-payment alert's event still says ``payment_delinquent = false``; against the
    alert's ``true`` the diff then sees no change, and a table computed after the invoice is paid
    sends false.
    """
    out = current.copy()
    for trait, time_column in TIMED_TRAITS.items():
        out[time_column] = int(as_of)
        if trait not in out.columns or pushed.empty or time_column not in pushed.columns:
            continue
        stored = pushed.set_index("stripe_customer_id")
        stored_at = pd.to_numeric(out["stripe_customer_id"].map(stored[time_column]), errors="coerce")
        newer = (stored_at > as_of).to_numpy()
        if newer.any():
            out[trait] = out[trait].astype(object)
            out.loc[newer, trait] = out.loc[newer, "stripe_customer_id"].map(
                stored[PUSHED_PREFIX + trait]).astype(object).to_numpy()
            out.loc[newer, time_column] = stored_at[newer].astype("int64").to_numpy()
    return out


# -- applying acknowledged messages --------------------------------------------------------------


def apply_identify(pushed: pd.DataFrame, diff: pd.DataFrame, *,
                   traits: Sequence[str] = IDENTIFY_TRAITS) -> pd.DataFrame:
    """``pushed`` after Segment acknowledged every row of ``diff`` (reference semantics).

    The sent values replace the stored ones and the identity becomes the one
    sent under; for ``first`` and ``identity_changed`` rows every trait absent
    from the message is stored as null. Returns a new frame indexed like
    ``segment_pushed_traits`` (one row per customer, ``trait_<name>`` columns),
    sorted by ``stripe_customer_id``. Row-wise: meant for acknowledged batches
    and tests, not for whole tables.
    """
    stored = [t for t in traits if t != "stripe_customer_id"]
    columns = ["stripe_customer_id", "user_id", "anonymous_id", *[PUSHED_PREFIX + t for t in stored]]
    records: dict[str, dict] = {}
    if len(pushed):
        base = pushed.reindex(columns=columns).astype(object)
        base = base.where(pd.notna(base), None)
        for rec in base.to_dict("records"):
            records[rec["stripe_customer_id"]] = rec
    for row in diff.itertuples(index=False):
        rec = records.get(row.stripe_customer_id)
        if rec is None or row.reason != REASON_CHANGED:
            rec = {c: None for c in columns} if rec is None else rec
            for t in stored:
                rec[PUSHED_PREFIX + t] = None
        rec["stripe_customer_id"] = row.stripe_customer_id
        rec["user_id"] = row.user_id
        rec["anonymous_id"] = row.anonymous_id
        for name, value in row.traits.items():
            if name != "stripe_customer_id":
                rec[PUSHED_PREFIX + name] = value
        records[row.stripe_customer_id] = rec
    out = pd.DataFrame([records[k] for k in sorted(records)], columns=columns)
    return canonical_traits(out.astype(object), stored, prefix=PUSHED_PREFIX) if len(out) else out
