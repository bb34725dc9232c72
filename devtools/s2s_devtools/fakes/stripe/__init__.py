"""A stateful stand-in for the Stripe API, for demos, tests and benchmarks.

It answers the read requests the pipeline makes (lists, retrieves, the Events
feed) the way Stripe documents them for API version ``2026-10-28.endive``, so
the extraction code can be exercised end to end without a Stripe account:

- lists are newest first (ties by id, descending) with ``limit`` 1..100,
  ``starting_after`` / ``ending_before`` cursors and ``created`` filters;
- subscriptions leave out ended ones unless asked (``status=all``);
- ``/v1/events`` only shows the last 30 days, like Stripe's Events API, so a
  pipeline that falls behind for longer really does lose changes;
- objects are stored fully expanded and served *collapsed* as Stripe serves
  them (price tiers and currency options, subscription discounts, coupon
  inside a discount, a coupon's applies_to and currency options, invoice
  payments, charge refunds) unless ``expand[]`` asks for them; event payloads
  are always served collapsed, as Stripe renders webhooks;
- API keys, error bodies and 429s have Stripe's shapes, and ``faults`` /
  ``rate_limit_per_second`` inject the failures a real account produces;
- ``add_webhook_endpoint(url, secret)`` posts every event emitted afterwards
  to ``url``, signed like Stripe (``Stripe-Signature: t=...,v1=...``), with retries.

Standard library only; the server listens on 127.0.0.1 in a daemon thread.

Modules: ``api`` (API version, ids, the event envelope), ``errors``
(Stripe's error bodies), ``faults`` (injected failures and the rate limit),
``rendering`` (stored objects -> response shapes, ``expand[]``),
``querying`` (query strings, list filters, ``created`` ranges, cursors,
pages), ``store`` (objects and sort indexes), ``server`` (HTTP, API keys,
``StripeStandIn``), ``webhooks`` (signed deliveries).

Example::

    with StripeStandIn() as standin:
        standin.load(objects)
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": standin.base_url}, max_network_retries=0
        )
        client.v1.customers.list(params={"limit": 100})
"""

from .api import API_VERSION, event_object, random_alnum, sortable_event_id
from .errors import StripeError
from .faults import FaultPlan, error_body
from .querying import parse_query
from .rendering import render
from .server import COLLECTIONS, DELETABLE, StripeStandIn
from .webhooks import WebhookEndpoint, post_signed, sign, webhook_body

__all__ = [
    "API_VERSION",
    "COLLECTIONS",
    "DELETABLE",
    "FaultPlan",
    "StripeError",
    "StripeStandIn",
    "error_body",
    "event_object",
    "parse_query",
    "random_alnum",
    "render",
    "post_signed",
    "sign",
    "sortable_event_id",
    "webhook_body",
    "WebhookEndpoint",
]
