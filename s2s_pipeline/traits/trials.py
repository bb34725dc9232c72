"""When a customer's latest trial converted (contract v2 ``trial_converted_at``; REFERENCE §B.5).

A subscription had a trial when it has a ``trial_end`` (Stripe sets it for a
``trialing`` subscription and keeps it afterwards). The trial converted at the
paid time (``status_transitions.paid_at``, mirrored as ``invoices.paid_at``) of
the subscription's first invoice (by ``created``, ties: smaller id) that is
``paid`` with money (``amount_paid > 0``) and created at or after
``trial_end`` -- Stripe bills the first period when the trial ends, and the
$0 invoice of the trial's start does not count. A cancellation after that
payment still counts as converted (Stripe's trial conversion rate); a trial
that ends canceled, paused or unpaid has no such invoice and stays null.

The customer's latest trial is its subscription with the latest ``trial_end``
(ties: newer ``created``, then larger id); the trait is that trial's
conversion time, so a customer on a new trial shows null until it converts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from s2s_pipeline.traits.frames import Lookup, bools, column, ints, isin
from s2s_pipeline.traits.picking import pick_best

_NO_TIME = np.iinfo(np.int64).min


def trial_converted_at(subscriptions: pd.DataFrame, invoices: pd.DataFrame, sub_customer: np.ndarray,
                       n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per customer: (Unix seconds of its latest trial's conversion, whether there is one).

    ``sub_customer``: each subscription row's customer position (-1 unknown).
    """
    trial_end = ints(column(subscriptions, "trial_end"), _NO_TIME)
    had_trial = (trial_end != _NO_TIME) & (sub_customer >= 0) & ~bools(column(subscriptions, "deleted"))
    sub_ids = column(subscriptions, "id")
    latest_trial = pick_best(np.where(had_trial, sub_customer, -1), n,
                             [trial_end, ints(column(subscriptions, "created"), _NO_TIME)], sub_ids,
                             largest_id=True)

    sub = Lookup(sub_ids).positions(column(invoices, "subscription"))
    created = ints(column(invoices, "created"), _NO_TIME)
    paid_at = ints(column(invoices, "paid_at"), _NO_TIME)
    converts = (sub >= 0) & isin(column(invoices, "status"), ["paid"]) \
        & (ints(column(invoices, "amount_paid"), 0) > 0) & (paid_at != _NO_TIME) \
        & ~bools(column(invoices, "deleted"))
    converts &= np.append(had_trial, False)[sub] & (created >= np.append(trial_end, _NO_TIME)[sub])
    # the first such invoice per subscription: largest -created, ties to the smaller id
    first = pick_best(np.where(converts, sub, -1), len(trial_end), [-created], column(invoices, "id"),
                      largest_id=False)
    converted_sub = np.append(np.append(paid_at, _NO_TIME)[first], _NO_TIME)
    seconds = converted_sub[latest_trial]
    return seconds, seconds != _NO_TIME
