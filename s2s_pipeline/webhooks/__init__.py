"""The Stripe webhook receiver (``s2s-webhooks``): failed payments reach the pipeline in seconds.

``verification`` checks a delivery (Stripe-Signature, timestamp tolerance,
the event's shape); ``app`` is the ASGI application (``POST /stripe/webhooks``,
``GET /healthz``) that stores each verified event once in the state store's
inbox before answering 200; ``settings`` reads the environment; ``cli`` is the
console command. Nothing here imports Dagster: ``failed_payment_sensor``
(in ``defs``) reads the inbox.
"""
