"""Stripe event -> Segment track call (contract "Track events"). Pure functions.

:func:`map_event` turns one Stripe event into at most one :class:`TrackCall`.
It reads the event's own payload (``data.object`` and
``data.previous_attributes``) and asks the caller, through a
:class:`MappingContext`, only for what the payload cannot tell (price tiers,
coupons behind collapsed discounts, the failed attempt of an invoice, the
refunds and customer of a charge). Everything it returns is plain JSON:
money in MAJOR units of the currency rounded to 2 decimals (``jpy 3000`` ->
3000.0, ``usd 5000`` minor -> 50.0), times as ISO-8601 UTC strings
(``"2026-01-31T12:00:00Z"``), currencies lowercase.

Rows of the contract's table, tried in order, first match wins:

===================================  ============================  ==============================================
Stripe event                          track event                   properties
===================================  ============================  ==============================================
customer.subscription.created         Trial Started                 subscription_id, plan, trial_end_date
(status ``trialing``)
customer.subscription.created         Subscription Started          subscription_id, plan, mrr, currency,
(any other status)                                                  billing_interval
customer.subscription.updated         Trial Converted               subscription_id, plan, mrr, currency
(previous status ``trialing``, now
``active``)
customer.subscription.updated         Subscription Canceled         subscription_id, plan, mrr (lost), currency,
(a cancellation becomes scheduled)                                  cancel_at (when it ends), immediate (false)
customer.subscription.updated         Subscription Reactivated      subscription_id, plan, mrr (restored), currency
(a scheduled cancellation withdrawn)
customer.subscription.updated         Subscription Upgraded /       subscription_id, plan, previous_plan, mrr,
(MRR up / down)                       Subscription Downgraded       previous_mrr, currency
customer.subscription.deleted         Subscription Canceled         subscription_id, plan, mrr (before it ended),
(no cancellation was scheduled)                                     currency, cancel_at (ended), immediate (true)
customer.subscription.deleted         Subscription Ended            subscription_id, plan, currency
(after a scheduled cancellation)
invoice.payment_failed                Payment Failed                invoice_id, amount, currency, attempt_count,
                                                                    failure_code, failure_message,
                                                                    next_payment_attempt
charge.failed (charge of no invoice)  Payment Failed                charge_id, invoice_id (null), amount,
                                                                    currency, attempt_count (1), failure_code,
                                                                    failure_message, next_payment_attempt (null)
charge.succeeded with captured        Order Completed               order_id, revenue, total (captured), currency
money, or charge.captured
refund.created / charge.refunded      Order Refunded                order_id, refund_id, total, currency, reason
(refund of captured money)
charge.dispute.created                Dispute Created               charge_id, amount, currency, reason
===================================  ============================  ==============================================

Any other event type maps to None.

Rules where the contract leaves room (decided here):

- **messageId** = ``message_id("track", dedupe_key)``; the dedupe key is
  ``event:<event id>`` for subscription events and ``invoice.payment_failed``
  (one invoice can fail several times). Calls about one object that Stripe
  reports once are keyed by that object, so the history backfill (built from
  the mirror, where event ids are unknown) yields the very same messageIds:
  ``charge:<id>:succeeded`` (Order Completed), ``charge:<id>:failed``
  (Payment Failed without invoice), ``dispute:<id>`` (Dispute Created), and
  ``refund:<refund id>`` (Order Refunded: Stripe sends ``refund.created`` and
  ``charge.refunded`` for one refund, and whichever is handled first sends the
  call; the other yields the same messageId, which Segment and the ledger drop).
- **Customer**: the object's ``customer``. Refunds and disputes usually carry
  none; then the charge's (an expanded ``charge`` object, else
  ``ctx.customer_of_charge``). An event whose customer cannot be resolved
  (e.g. a guest charge) maps to None: there is nobody to attribute it to.
- **MRR** is the ``mrr`` trait's rule (``traits.mrr``, REFERENCE §A) applied
  to the one subscription, at the event's ``created``, on the data the trait
  reads (``segment.event_mrr``): the snapshot's rows
  (``stripe.normalize.to_rows``) for the subscription's state; the mirror's
  prices (``ctx.price``: tiers, ``currency_options``) and coupons
  (``ctx.coupon``: ``applies_to``, ``currency_options``, a deleted coupon's
  terms) over the payload's, which never carry those includable fields;
  coupons of collapsed discounts through ``ctx.discount``; the customer's own
  discounts (``ctx.customer_discounts``) and, with Stripe Tax, the
  subscription's invoices (``ctx.subscription_invoices``).
- **Upgraded / Downgraded**: "after" is the snapshot, "before" is the
  snapshot with ``previous_attributes`` applied over it (nested objects
  merged, arrays such as ``items.data`` and ``discounts`` replaced; legacy
  top-level ``plan``/``quantity`` applied to a single-item subscription).
  When ``previous_attributes`` names no MRR-relevant field (``items``,
  ``plan``, ``quantity``, ``status``, ``discounts``/``discount``,
  ``cancel_at_period_end``, ``pause_collection``, ``ended_at``, ``currency``),
  or when the "before" state references a discount or price the context cannot
  resolve while the snapshot's are all resolved, "before" is
  ``ctx.stored_subscription_mrr`` (the mirror's state before the event;
  without it: the partially priced "before" state if there is one, else the
  event maps to None). Equal MRR (in minor
  units) maps to None, so renewals and ``past_due`` <-> ``active`` flips send
  nothing. The trait rules give 0 to ``unpaid``, ``paused`` and
  ``pause_collection``, so those are Downgraded to 0 (and back Upgraded).
  Likewise ``incomplete`` -> ``active`` (first payment of a
  subscription created ``incomplete``) is an Upgraded from 0, and
  ``trialing`` -> ``past_due`` (trial ended, first payment failed) an Upgraded
  too; only ``trialing`` -> ``active`` is a Trial Converted (contract).
  Movements therefore always sum to the subscription's current MRR.
- **Scheduled cancellations** (``cancel_at_period_end`` or ``cancel_at`` set,
  which the ``mrr`` trait counts 0): an update that schedules one (before:
  none; after: one) is a **Subscription Canceled** with ``immediate`` false,
  ``mrr`` = the MRR before the update (what leaves) and ``cancel_at`` =
  ``cancel_at``, else the items' latest ``current_period_end``; one that
  withdraws it is a **Subscription Reactivated** with the MRR after. These
  rows are tried before Upgraded/Downgraded: the schedule's own drop to 0 is
  the cancellation, never a Downgraded. Changes while scheduled move 0 -> 0
  and send nothing; a new date for an existing schedule sends nothing.
- **customer.subscription.deleted** of a subscription that had a
  cancellation scheduled (the snapshot still shows it) is a **Subscription
  Ended** without MRR (it left at scheduling). Without one it is an immediate
  **Subscription Canceled** (``immediate`` true, ``cancel_at`` = ``ended_at``,
  else ``canceled_at``, else the event time).
- **Subscription Started** reports the trait MRR of the new subscription (0
  while it is ``incomplete``; see above for its activation).
- **Subscription Canceled** (immediate): ``mrr`` is what the subscription brought in
  while it ran: the snapshot priced as if it were still ``active`` (without
  a schedule or ``ended_at``), or 0 when it ended during its trial
  (``ended_at``/``canceled_at`` not after ``trial_end``) or never started
  (``incomplete_expired``). Only when the snapshot cannot be priced (no
  items, unknown prices) is ``ctx.stored_subscription_mrr`` used.
- **plan** = nickname of the price of the main item (highest MRR, then highest
  undiscounted monthly amount, then smallest item id), else the product name
  (``ctx.product_name`` or an expanded product), else the price id; as the
  ``plan`` trait. ``billing_interval`` is that price's interval.
- **Payment Failed (invoice)**: ``failure_code``/``failure_message`` from
  ``ctx.invoice_payment_error``; both null when unknown.
- **Payment Failed (charge.failed)**: only for a charge of no invoice (an
  invoice's failed charge is reported by ``invoice.payment_failed``). Older
  API versions carry ``charge.invoice``, which is used when present; else
  ``ctx.charge_belongs_to_invoice``. Properties have the invoice variant's
  keys with ``invoice_id`` and ``next_payment_attempt`` null,
  ``attempt_count`` 1 (a one-off charge is not retried by Stripe) and
  ``charge_id`` added.
- **Order Completed**: ``revenue`` = ``total`` = the captured money
  (``amount_captured``; 0 while ``captured`` is false, so an authorization
  sends nothing and its ``charge.captured`` sends the call). ``charge.succeeded``
  and ``charge.captured`` share the key ``charge:<id>:succeeded``, so a charge
  yields one call whichever arrives. A charge carries no tax split (that
  lives on invoices), so revenue includes any tax. ``needs_attribution``
  tells the caller it may add ``context.campaign`` and the profile's
  ``anonymousId``.
- **Released authorizations are no refunds** (:func:`released_authorization`):
  a refund with reason ``expired_uncaptured_charge``, any refund of a charge
  that never captured (``captured`` false; the charge from the payload, an
  expanded ``refund.charge`` or ``ctx.charge``), and, for events rendered
  before API 2025-03-31.basil, the uncaptured remainder of a partial capture
  (the charge's first refund, of exactly ``amount - amount_captured``).
- **Order Refunded** from ``charge.refunded``: the charge's refunds known at
  the event (``ctx.refunds_of_charge``; ``charge.refunds`` is includable only
  and never requested, so it is read just when an older payload embeds it), created no later than the
  event, not ``failed``/``canceled``; the newest one is reported, preferring
  one whose amount equals the increase of ``amount_refunded`` given by
  ``previous_attributes`` (refunds created in the same second). None when
  no refund is known: its ``refund.created`` reports it. Failed or canceled
  refunds are never reported.
- **Out-of-order events** map from their own payload; only the fall-backs
  named above read the caller's current state.
- Events of older API versions carry older shapes (``invoice.charge``,
  ``charge.invoice``, ``subscription.plan``, ``discount.coupon`` ...); the
  mirror's normalizer reads them, and so does this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from s2s_pipeline.core.alert_rule import charge_pays_invoice
from s2s_pipeline.core.contract import (
    DISPUTE_CREATED,
    ORDER_COMPLETED,
    ORDER_REFUNDED,
    PAYMENT_FAILED,
    SUBSCRIPTION_CANCELED,
    SUBSCRIPTION_DOWNGRADED,
    SUBSCRIPTION_ENDED,
    SUBSCRIPTION_REACTIVATED,
    SUBSCRIPTION_STARTED,
    SUBSCRIPTION_UPGRADED,
    TRIAL_CONVERTED,
    TRIAL_STARTED,
)
from s2s_pipeline.core.ids import id_of
from s2s_pipeline.core.times import iso_utc
from s2s_pipeline.segment.event_mrr import (
    MRR_FIELDS,
    SCHEDULE_FIELDS,
    SubscriptionFigures,
    as_running,
    cancellation_scheduled,
    currency_code,
    ended_in_trial,
    scheduled_end,
    state_before,
    subscription_figures,
    without_schedule,
)
from s2s_pipeline.segment.mapping_context import MappingContext
from s2s_pipeline.segment.messages import message_id
from s2s_pipeline.stripe.api_versions import releases_counted_as_refunds
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.money import to_major

#: Refund statuses that never move money (not reported).
_DEAD_REFUND_STATUSES = frozenset({"failed", "canceled"})

#: Refund reason Stripe itself sets when an uncaptured authorization expires (Refund.reason).
EXPIRED_UNCAPTURED = "expired_uncaptured_charge"



@dataclass(frozen=True)
class TrackCall:
    """One Segment track call about one Stripe customer (identity is resolved by the caller)."""

    event: str
    stripe_customer_id: str
    properties: dict
    message_id: str
    dedupe_key: str
    timestamp: int
    needs_attribution: bool = False



def _call(event: dict, name: str, customer: str | None, properties: dict, dedupe_key: str | None = None,
          needs_attribution: bool = False) -> TrackCall | None:
    if not customer:
        return None
    key = dedupe_key or f"event:{event['id']}"
    return TrackCall(event=name, stripe_customer_id=customer, properties=properties,
                     message_id=message_id("track", key), dedupe_key=key,
                     timestamp=int(event.get("created") or 0), needs_attribution=needs_attribution)


# -- one function per event type ------------------------------------------------------


def _subscription_created(event: dict, sub: dict, ctx: MappingContext, config: TraitsConfig):
    at = int(event.get("created") or 0)
    fig = subscription_figures(sub, ctx, config, at)
    customer = id_of(sub.get("customer"))
    if sub.get("status") == "trialing":
        return _call(event, TRIAL_STARTED, customer, {
            "subscription_id": sub["id"], "plan": fig.plan, "trial_end_date": iso_utc(sub.get("trial_end"))})
    return _call(event, SUBSCRIPTION_STARTED, customer, {
        "subscription_id": sub["id"], "plan": fig.plan, "mrr": fig.mrr, "currency": fig.currency,
        "billing_interval": fig.billing_interval})


def _mrr_before(sub: dict, previous: dict, after: SubscriptionFigures, ctx: MappingContext,
                config: TraitsConfig, at: int) -> tuple[int, str | None] | None:
    """(MRR minor units, plan) of the subscription just before the event, or None when it cannot be told.

    ``previous_attributes`` over the snapshot when it names an MRR field and
    prices completely (or no worse than the snapshot); else the mirror's
    stored figure; else the partially priced "before" state.
    """
    computed = None
    if MRR_FIELDS & previous.keys():
        computed = subscription_figures(state_before(sub, previous), ctx, config, at)
    if computed is not None and (computed.complete or not after.complete):
        return computed.mrr_minor, computed.plan
    stored = ctx.stored_subscription_mrr(sub["id"])
    if stored is not None:
        return int(stored[0]), stored[2]
    if computed is not None:
        return computed.mrr_minor, computed.plan
    return None


def _subscription_updated(event: dict, sub: dict, ctx: MappingContext, config: TraitsConfig):
    at = int(event.get("created") or 0)
    previous = (event.get("data") or {}).get("previous_attributes")
    previous = previous if isinstance(previous, dict) else {}
    customer = id_of(sub.get("customer"))
    after = subscription_figures(sub, ctx, config, at)
    if previous.get("status") == "trialing" and sub.get("status") == "active":
        return _call(event, TRIAL_CONVERTED, customer, {
            "subscription_id": sub["id"], "plan": after.plan, "mrr": after.mrr, "currency": after.currency})

    # A change of the schedule moves MRR by itself (the mrr rule gives 0 to a scheduled
    # cancellation): it is reported as the cancellation / reactivation, never as Downgraded/Upgraded.
    is_scheduled = cancellation_scheduled(sub)
    was_scheduled = cancellation_scheduled(state_before(sub, previous)) if SCHEDULE_FIELDS & previous.keys() \
        else is_scheduled
    if is_scheduled and not was_scheduled:
        before = _mrr_before(sub, previous, after, ctx, config, at)
        lost = before[0] if before is not None else \
            subscription_figures(without_schedule(sub), ctx, config, at).mrr_minor
        return _call(event, SUBSCRIPTION_CANCELED, customer, {
            "subscription_id": sub["id"], "plan": after.plan, "mrr": to_major(lost, after.currency),
            "currency": after.currency, "cancel_at": iso_utc(scheduled_end(sub)), "immediate": False})
    if was_scheduled and not is_scheduled:
        return _call(event, SUBSCRIPTION_REACTIVATED, customer, {
            "subscription_id": sub["id"], "plan": after.plan, "mrr": after.mrr, "currency": after.currency})

    before = _mrr_before(sub, previous, after, ctx, config, at)
    if before is None:
        return None
    before_minor, before_plan = before
    if before_minor == after.mrr_minor:
        return None
    name = SUBSCRIPTION_UPGRADED if after.mrr_minor > before_minor else SUBSCRIPTION_DOWNGRADED
    return _call(event, name, customer, {
        "subscription_id": sub["id"], "plan": after.plan, "previous_plan": before_plan,
        "mrr": after.mrr, "previous_mrr": to_major(before_minor, after.currency), "currency": after.currency})


def _subscription_deleted(event: dict, sub: dict, ctx: MappingContext, config: TraitsConfig):
    at = int(event.get("created") or 0)
    customer = id_of(sub.get("customer"))
    fig = subscription_figures(as_running(sub), ctx, config, at)
    if cancellation_scheduled(sub):
        # Its MRR left when the cancellation was scheduled (Subscription Canceled, immediate = false).
        return _call(event, SUBSCRIPTION_ENDED, customer, {
            "subscription_id": sub["id"], "plan": fig.plan, "currency": fig.currency})
    mrr_minor = fig.mrr_minor
    if sub.get("status") == "incomplete_expired" or ended_in_trial(sub, at):
        mrr_minor = 0
    elif not fig.complete:
        stored = ctx.stored_subscription_mrr(sub["id"])
        if stored is not None:
            mrr_minor = int(stored[0])
    ended = sub.get("ended_at") or sub.get("canceled_at") or at
    return _call(event, SUBSCRIPTION_CANCELED, customer, {
        "subscription_id": sub["id"], "plan": fig.plan, "mrr": to_major(mrr_minor, fig.currency),
        "currency": fig.currency, "cancel_at": iso_utc(ended), "immediate": True})


def _invoice_payment_failed(event: dict, invoice: dict, ctx: MappingContext, config: TraitsConfig):
    currency = currency_code(invoice.get("currency"))
    error = ctx.invoice_payment_error(invoice) or {}
    return _call(event, PAYMENT_FAILED, id_of(invoice.get("customer")), {
        "invoice_id": invoice["id"],
        "amount": to_major(invoice.get("amount_due"), currency),
        "currency": currency,
        "attempt_count": invoice.get("attempt_count"),
        "failure_code": error.get("code"),
        "failure_message": error.get("message"),
        "next_payment_attempt": iso_utc(invoice.get("next_payment_attempt")),
    })


def _charge_failed(event: dict, charge: dict, ctx: MappingContext, config: TraitsConfig):
    if charge_pays_invoice(charge, ctx.charge_belongs_to_invoice):
        return None  # reported by invoice.payment_failed (core.alert_rule)
    currency = currency_code(charge.get("currency"))
    return _call(event, PAYMENT_FAILED, id_of(charge.get("customer")), {
        "charge_id": charge["id"],
        "invoice_id": None,
        "amount": to_major(charge.get("amount"), currency),
        "currency": currency,
        "attempt_count": 1,
        "failure_code": charge.get("failure_code"),
        "failure_message": charge.get("failure_message"),
        "next_payment_attempt": None,
    }, dedupe_key=f"charge:{charge['id']}:failed")


def captured_minor(charge: dict) -> int:
    """Money the charge captured, minor units: 0 for an authorization not captured (``captured`` false).

    ``amount_captured`` where the payload has it (current API versions: 0 while
    uncaptured, less than ``amount`` after a partial capture); very old
    versions without it captured the whole ``amount`` or nothing.
    """
    if charge.get("captured") is False:
        return 0
    if charge.get("amount_captured") is not None:
        return int(charge["amount_captured"])
    return int(charge.get("amount") or 0) if charge.get("captured") else 0


def _order_completed(event: dict, charge: dict, ctx: MappingContext, config: TraitsConfig):
    """``charge.succeeded`` with captured money, or ``charge.captured``: one Order Completed per charge."""
    captured = captured_minor(charge)
    if captured <= 0:
        return None  # an authorization: charge.captured reports it once captured
    currency = currency_code(charge.get("currency"))
    amount = to_major(captured, currency)
    return _call(event, ORDER_COMPLETED, id_of(charge.get("customer")), {
        "order_id": charge["id"], "revenue": amount, "total": amount, "currency": currency,
    }, dedupe_key=f"charge:{charge['id']}:succeeded", needs_attribution=True)


def _charge_customer(obj: dict, ctx: MappingContext) -> str | None:
    """Customer of a refund or dispute: an expanded charge's, else the context's (Dispute has no ``customer``).

    A refund's own ``customer`` is read first where a payload carries one.
    """
    customer = id_of(obj.get("customer"))
    if customer:
        return customer
    charge = obj.get("charge")
    if isinstance(charge, dict) and id_of(charge.get("customer")):
        return id_of(charge.get("customer"))
    charge_id = id_of(charge)
    return ctx.customer_of_charge(charge_id) if charge_id else None


def _charge_of(refund: dict, ctx: MappingContext) -> dict | None:
    """The refund's charge: expanded on the refund, else the mirror's row (``ctx.charge``), else None."""
    charge = refund.get("charge")
    if isinstance(charge, dict):
        return charge
    lookup = getattr(ctx, "charge", None)
    return lookup(charge) if lookup is not None and charge else None


def _before_basil(event: dict) -> bool:
    """The event was rendered at an API version that still turned releases into Refund objects.

    The same predicate decides how the mirror reads the charge's ``amount_refunded`` (traits).
    """
    return releases_counted_as_refunds(event.get("api_version"))


def released_authorization(event: dict, refund: dict, charge: dict | None, refunds: list[dict]) -> bool:
    """Whether a "refund" only gave back money that was never captured (an authorization released).

    - reason ``expired_uncaptured_charge``: Stripe's own refund at expiry;
    - the charge never captured (``captured`` false): any refund of it is a release;
    - events of API versions before 2025-03-31.basil, where a partial capture
      refunded the uncaptured remainder: the charge's first refund, of exactly
      ``amount`` - ``amount_captured``. (On later versions partial captures make
      no refund, so such a refund there is money returned.)
    """
    if refund.get("reason") == EXPIRED_UNCAPTURED:
        return True
    if charge is None:
        return False
    if charge.get("captured") is False:
        return True
    if not _before_basil(event) or charge.get("amount") is None or charge.get("amount_captured") is None:
        return False
    remainder = int(charge["amount"]) - int(charge["amount_captured"])
    if remainder <= 0 or int(refund.get("amount") or 0) != remainder:
        return False
    live = [r for r in refunds if r.get("status") not in _DEAD_REFUND_STATUSES and r.get("id")]
    first = min(live, key=lambda r: (int(r.get("created") or 0), str(r["id"])), default=refund)
    return first.get("id") == refund.get("id")


def _refunded(event: dict, refund: dict, charge_id: str | None, customer: str | None,
              fallback_currency: str | None = None):
    if refund.get("status") in _DEAD_REFUND_STATUSES:
        return None
    currency = currency_code(refund.get("currency")) or currency_code(fallback_currency)
    return _call(event, ORDER_REFUNDED, customer, {
        "order_id": charge_id, "refund_id": refund["id"], "total": to_major(refund.get("amount"), currency),
        "currency": currency, "reason": refund.get("reason"),
    }, dedupe_key=f"refund:{refund['id']}")


def _refund_created(event: dict, refund: dict, ctx: MappingContext, config: TraitsConfig):
    charge_id = id_of(refund.get("charge"))
    known = [dict(r) for r in (ctx.refunds_of_charge(charge_id) or [])] if charge_id else []
    if not any(r.get("id") == refund["id"] for r in known):
        known.append(refund)
    if released_authorization(event, refund, _charge_of(refund, ctx), known):
        return None
    return _refunded(event, refund, charge_id, _charge_customer(refund, ctx))


def _charge_refunded(event: dict, charge: dict, ctx: MappingContext, config: TraitsConfig):
    """The refund a ``charge.refunded`` is about, from the mirror (``charge.refunds`` is includable only).

    Older API versions embedded ``charge.refunds``; those are read too when present.
    """
    customer = id_of(charge.get("customer"))
    if not customer:
        return None
    at = int(event.get("created") or 0)
    known: dict[str, dict] = {}
    for row in ctx.refunds_of_charge(charge["id"]) or []:
        if row.get("id"):
            known[row["id"]] = dict(row)
    listed = charge.get("refunds")
    for refund in (listed.get("data") if isinstance(listed, dict) else None) or []:
        if isinstance(refund, dict) and refund.get("id"):
            known[refund["id"]] = {**known.get(refund["id"], {}), **refund}
    candidates = [r for r in known.values()
                  if r.get("status") not in _DEAD_REFUND_STATUSES and r.get("amount") is not None
                  and (r.get("created") is None or int(r["created"]) <= at)]
    if not candidates:
        return None  # refund.created reports it
    candidates.sort(key=lambda r: (int(r.get("created") or 0), str(r["id"])), reverse=True)
    chosen = candidates[0]
    previous = (event.get("data") or {}).get("previous_attributes") or {}
    if isinstance(previous, dict) and previous.get("amount_refunded") is not None \
            and charge.get("amount_refunded") is not None:
        delta = int(charge["amount_refunded"]) - int(previous["amount_refunded"])
        chosen = next((r for r in candidates if int(r["amount"]) == delta), chosen)
    if released_authorization(event, chosen, charge, list(known.values())):
        return None
    return _refunded(event, chosen, charge["id"], customer, charge.get("currency"))


def _dispute_created(event: dict, dispute: dict, ctx: MappingContext, config: TraitsConfig):
    currency = currency_code(dispute.get("currency"))
    return _call(event, DISPUTE_CREATED, _charge_customer(dispute, ctx), {
        "charge_id": id_of(dispute.get("charge")), "amount": to_major(dispute.get("amount"), currency),
        "currency": currency, "reason": dispute.get("reason"),
    }, dedupe_key=f"dispute:{dispute['id']}")


_HANDLERS = {
    "customer.subscription.created": _subscription_created,
    "customer.subscription.updated": _subscription_updated,
    "customer.subscription.deleted": _subscription_deleted,
    "invoice.payment_failed": _invoice_payment_failed,
    "charge.failed": _charge_failed,
    "charge.succeeded": _order_completed,
    "charge.captured": _order_completed,
    "refund.created": _refund_created,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
}

#: Stripe event types that can yield a track call (for callers that filter or list events).
MAPPED_EVENT_TYPES: frozenset[str] = frozenset(_HANDLERS)


def map_event(event: dict, ctx: MappingContext, config: TraitsConfig = TraitsConfig()) -> TrackCall | None:
    """The track call of one Stripe event (rules in the module doc), or None.

    Deterministic: the same event (and the same answers from ``ctx``) gives the
    same call and messageId. A subscription payload missing a field the mirror
    needs raises ``MalformedStripeObject`` (from the normalizer).
    """
    handler = _HANDLERS.get(event.get("type") or "")
    if handler is None or not event.get("id"):
        return None
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict) or not obj.get("id"):
        return None
    if event["type"].startswith("customer.subscription.") and not id_of(obj.get("customer")):
        return None
    return handler(event, obj, ctx, config)
