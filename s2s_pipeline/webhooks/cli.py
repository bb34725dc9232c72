"""``s2s-webhooks --host H --port P``: serve the Stripe webhook receiver with uvicorn.

Reads ``STRIPE_WEBHOOK_SECRET`` (required) and ``S2S_DATABASE_URL`` (the
same state store as the pipeline). Run it beside ``dagster-daemon``, behind
a reverse proxy that terminates TLS (Stripe only delivers to HTTPS).
"""

from __future__ import annotations

import argparse
import logging
import sys

from s2s_pipeline.webhooks.settings import DEFAULT_MAX_BODY_BYTES, MissingSetting, ReceiverSettings
from s2s_pipeline.webhooks.verification import DEFAULT_TOLERANCE_S


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s-webhooks", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"largest delivery accepted, larger ones get 413 ({DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE_S,
                        help=f"oldest signature accepted, in seconds ({DEFAULT_TOLERANCE_S}, Stripe's default)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="also log every request line (uvicorn's)")
    parser.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                        help="proxies whose X-Forwarded-* headers are trusted (uvicorn; 127.0.0.1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = ReceiverSettings.from_environment(max_body_bytes=args.max_body_bytes, tolerance_s=args.tolerance)
    except MissingSetting as exc:
        print(f"s2s-webhooks: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from s2s_pipeline.store.db import StateStoreConfigError
    from s2s_pipeline.store.state_store import StateStore
    from s2s_pipeline.webhooks.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("s2s_pipeline.webhooks")
    try:
        StateStore.from_url(settings.database_url).dispose()  # migrate now: the first delivery needs no DDL
    except StateStoreConfigError as exc:
        if "unreachable" not in str(exc):  # a malformed URL or a missing driver will not fix itself
            print(f"s2s-webhooks: {exc}", file=sys.stderr)
            return 2
        log.error("state store not ready, answering 503 until it is: %s", exc)
    app = create_app(settings)
    log.info("s2s-webhooks listening on http://%s:%d/stripe/webhooks", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
                proxy_headers=True, forwarded_allow_ips=args.forwarded_allow_ips, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
