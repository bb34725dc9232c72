"""What each customer actually paid: captured money, refunds after capture, lost disputes, payment cadence.

Rules (contract v2 ``lifetime_value``, ``refund_rate``, ``payment_count``,
``first_payment_at``/``last_payment_at``, ``payment_frequency_days``; sources in docs/traits.md):

- A **payment** is a ``succeeded`` charge that captured money. Its captured money
  is ``amount_captured`` (0 while ``captured`` is false: an authorization is
  ``succeeded`` and ``paid`` before anything is captured).
- **Released, not refunded**: since API 2025-03-31.basil (the pinned version's
  shape) a partial capture or an expired or canceled authorization creates no
  Refund and leaves ``amount_refunded`` alone, so refunded after capture =
  ``amount_refunded``. Snapshots rendered before basil (event payloads of an
  older ``api_version``: ``amount_refunded_includes_releases``) counted the
  released remainder in ``amount_refunded``; for them refunded after capture =
  ``amount_refunded - (amount - amount_captured)``. So does a row whose
  ``amount_refunded`` exceeds ``amount_captured``, which the basil shape cannot
  show (a pre-basil capture listed later). Kept within ``[0, amount_captured]``;
  a charge never captured contributes nothing.
- **Lost disputes** (``status == "lost"``, in the charge's currency) take their
  ``amount`` back. Stripe records a dispute as its own balance transactions, not
  in ``amount_refunded``, and withdraws no more once a payment is refunded, so
  per charge the money returned is ``min(captured, refunded after capture + lost)``.
- ``payment_frequency_days``: median gap between consecutive payments created in
  ``[now - 365 days, now]``, in days, half-even to 1 decimal; null with fewer than two.

Everything is exact int64 on minor units and seconds; no per-customer Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from s2s_pipeline.traits.frames import Lookup, Vocabulary, bools, column, ints, isin
from s2s_pipeline.traits.money import round_half_even_div
from s2s_pipeline.traits.picking import pick_best

_NO_TIME = np.iinfo(np.int64).min
_NEVER = np.iinfo(np.int64).max
DAY_SECONDS = 86_400
#: The trailing window of ``payment_frequency_days``.
FREQUENCY_WINDOW_SECONDS = 365 * DAY_SECONDS

#: Dispute status that takes the disputed money back for good.
LOST_DISPUTE = "lost"


@dataclass
class ChargeRows:
    """The charges table as arrays, keyed by customer row (-1: no known customer)."""

    ids: pd.Series
    customer: np.ndarray
    succeeded: np.ndarray
    payment: np.ndarray  # succeeded and captured money > 0
    created: np.ndarray
    currency: np.ndarray  # vocabulary codes
    captured: np.ndarray  # minor units captured (0 for an authorization)
    refunded_after_capture: np.ndarray  # minor units refunded out of the captured money
    latest_succeeded: np.ndarray  # per customer: row of its latest succeeded charge, -1 without

    @classmethod
    def build(cls, charges: pd.DataFrame, n: int, customers: Lookup, currencies: Vocabulary) -> "ChargeRows":
        customer = customers.positions(column(charges, "customer"))
        succeeded = isin(column(charges, "status"), ["succeeded"]) & (customer >= 0)
        created = ints(column(charges, "created"), _NO_TIME)
        ids = column(charges, "id")
        amount_captured = np.maximum(ints(column(charges, "amount_captured"), 0), 0)
        # a missing ``captured`` flag (hand-built or old rows) leaves amount_captured to decide
        captured = np.where(bools(column(charges, "captured"), fill=True) & succeeded, amount_captured, 0)
        amount = ints(column(charges, "amount"), -1)
        amount = np.where(amount < 0, amount_captured, amount)  # no amount known: nothing was released
        amount_refunded = ints(column(charges, "amount_refunded"), 0)
        # the pre-basil shape: flagged by its API version, or more refunded than captured (impossible since basil)
        releases_included = bools(column(charges, "amount_refunded_includes_releases")) \
            | (amount_refunded > amount_captured)
        released = np.where(releases_included, np.maximum(amount - amount_captured, 0), 0)
        refunded = np.clip(amount_refunded - released, 0, captured)
        latest = pick_best(np.where(succeeded, customer, -1), n, [created], ids, largest_id=True)
        return cls(ids=ids, customer=customer, succeeded=succeeded, payment=captured > 0, created=created,
                   currency=currencies.encode(column(charges, "currency")), captured=captured,
                   refunded_after_capture=refunded, latest_succeeded=latest)


def lost_dispute_minor(disputes: pd.DataFrame, ch: ChargeRows, currencies: Vocabulary) -> np.ndarray:
    """Per charge row: minor units of its lost disputes (in the charge's currency; int64)."""
    lost = np.zeros(len(ch.customer), dtype=np.int64)
    rows = np.flatnonzero(isin(column(disputes, "status"), [LOST_DISPUTE]) & ~bools(column(disputes, "deleted")))
    if rows.size == 0 or len(lost) == 0:
        return lost  # the common case: no charge id is hashed
    disputes = disputes.iloc[rows]
    charge = Lookup(ch.ids).positions(column(disputes, "charge"))
    currency = currencies.encode(column(disputes, "currency"))
    charge_currency = np.append(ch.currency, -1)[charge]
    counts = (charge >= 0) & ((currency == charge_currency) | (currency < 0))
    np.add.at(lost, charge[counts], np.maximum(ints(column(disputes, "amount"), 0), 0)[counts])
    return lost


@dataclass
class CustomerPayments:
    """Per customer (arrays of length n): what its payments add up to."""

    payment_count: np.ndarray
    first_paid: np.ndarray  # Unix seconds, _NEVER without payments
    last_paid: np.ndarray  # Unix seconds, _NO_TIME without payments
    captured: np.ndarray  # minor units captured, in the customer's currency
    refunded: np.ndarray  # minor units refunded after capture, in the customer's currency
    returned: np.ndarray  # refunded after capture + lost disputes, at most what each charge captured

    @property
    def lifetime_value_minor(self) -> np.ndarray:
        return self.captured - self.returned


def customer_payments(ch: ChargeRows, lost_dispute: np.ndarray, n: int,
                      customer_currency: np.ndarray) -> CustomerPayments:
    """Payments, their times (every currency) and their money in the customer's currency (exact int64).

    ``customer_currency`` has one code per customer plus a trailing -1 (row -1 reads it).
    """
    g = ch.customer[ch.payment]
    first_paid = np.full(n, _NEVER, dtype=np.int64)
    last_paid = np.full(n, _NO_TIME, dtype=np.int64)
    np.minimum.at(first_paid, g, ch.created[ch.payment])
    np.maximum.at(last_paid, g, ch.created[ch.payment])
    in_currency = ch.succeeded & (ch.currency == customer_currency[ch.customer]) & (ch.currency >= 0)
    gc = ch.customer[in_currency]
    returned_per_charge = np.minimum(ch.captured, ch.refunded_after_capture + lost_dispute)
    sums = {}
    for name, values in (("captured", ch.captured), ("refunded", ch.refunded_after_capture),
                         ("returned", returned_per_charge)):
        total = np.zeros(n, dtype=np.int64)
        np.add.at(total, gc, values[in_currency])
        sums[name] = total
    return CustomerPayments(payment_count=np.bincount(g, minlength=n), first_paid=first_paid, last_paid=last_paid,
                            **sums)


def payment_frequency_days(ch: ChargeRows, n: int, now: int) -> np.ndarray:
    """Per customer: median days between consecutive payments in the trailing 365 days (1 decimal; NaN if < 2).

    Exact: gaps are integer seconds, twice the median is an integer, and it is
    rounded half-even to tenths of a day (8,640 s) with integer division. Speed:
    customer and time (or gap) are packed into one int64 key, so each ordering
    is one plain ``np.sort`` instead of a multi-key sort.
    """
    out = np.full(n, np.nan)
    start_of_window = now - FREQUENCY_WINDOW_SECONDS
    rows = np.flatnonzero(ch.payment & (ch.created >= start_of_window) & (ch.created <= now))
    if rows.size < 2:
        return out
    # offsets and gaps are below 2**25 s (365 days = 31,536,000 s)
    keys = np.sort((ch.customer[rows].astype(np.int64) << _SHIFT) | (ch.created[rows] - start_of_window))
    cust, offset = keys >> _SHIFT, keys & _MASK
    same = cust[1:] == cust[:-1]
    if not same.any():
        return out
    gap_keys = np.sort((cust[1:][same] << _SHIFT) | np.diff(offset)[same])
    gap_customer, gaps = gap_keys >> _SHIFT, gap_keys & _MASK
    counts = np.bincount(gap_customer, minlength=n)
    has = np.flatnonzero(counts > 0)
    start = np.concatenate(([0], np.cumsum(counts)))[has]
    k = counts[has]
    twice_median = gaps[start + (k - 1) // 2] + gaps[start + k // 2]  # odd k: the middle gap twice
    out[has] = round_half_even_div(twice_median, 2 * DAY_SECONDS // 10) / 10.0
    return out


_SHIFT = 25
_MASK = (1 << _SHIFT) - 1
