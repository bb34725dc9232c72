"""``s2s-privacy``: answer access and deletion requests that come from outside Stripe.

    s2s-privacy export CUSTOMER_ID   JSON of what the state store holds about the customer and the calls sent
    s2s-privacy forget CUSTOMER_ID   the deletion path for that customer (regulation, then purge)

Reads the pipeline's settings: ``S2S_DATABASE_URL`` (default: the SQLite file
under ``$DAGSTER_HOME``), ``SEGMENT_PUBLIC_API_TOKEN``, ``SEGMENT_PUBLIC_API_HOST``.
Exit codes: 0 done, 1 the regulation could not be filed yet (the nightly run
retries it), 2 a setting is wrong or the customer is unknown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Sequence

from s2s_pipeline.privacy.deletion import UnknownCustomer, client_for, forget
from s2s_pipeline.privacy.export import export_customer, to_json
from s2s_pipeline.privacy.public_api import PublicApiError
from s2s_pipeline.privacy.settings import REGULATION_TYPES, PrivacyConfigError, PrivacySettings
from s2s_pipeline.store.db import StateStoreConfigError
from s2s_pipeline.store.state_store import StateStore

EXIT_OK, EXIT_PENDING, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s-privacy", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="print as JSON what the state store holds about a Stripe customer")
    export.add_argument("customer_id", metavar="CUSTOMER_ID")
    forget_cmd = commands.add_parser("forget", help="stop every Segment call about a Stripe customer, file its "
                                     "Segment regulation and purge its personal data")
    forget_cmd.add_argument("customer_id", metavar="CUSTOMER_ID")
    forget_cmd.add_argument("--regulation-type", choices=REGULATION_TYPES, default=None,
                            help="Segment regulation type (default SUPPRESS_WITH_DELETE)")
    return parser


def main(argv: Sequence[str] | None = None, *, out=None, err=None, environ=None,
         client_factory: Callable | None = None, clock: Callable[[], float] = time.time) -> int:
    """Run a command; ``client_factory(settings)`` replaces the Public API client (tests)."""
    out, err = out or sys.stdout, err or sys.stderr
    env = os.environ if environ is None else environ
    args = _parser().parse_args(argv)
    try:
        store = StateStore.from_url(env.get("S2S_DATABASE_URL") or None)
    except StateStoreConfigError as exc:
        print(f"s2s-privacy: {exc}", file=err)
        return EXIT_USAGE
    try:
        if args.command == "export":
            print(to_json(export_customer(store, args.customer_id)), file=out)
            return EXIT_OK
        settings = PrivacySettings.from_env(env, regulation_type=args.regulation_type)
        client = (client_factory or client_for)(settings) if settings.token else None
        outcome = forget(store, args.customer_id, settings, client, now=int(clock()))
        record = store.regulations.record_for(args.customer_id)
        print(json.dumps({"stripe_customer_id": args.customer_id, **outcome.metadata(),
                          "regulation": record}, indent=2, sort_keys=True, default=str), file=out)
        if outcome.still_awaiting_filing:
            print(f"s2s-privacy: the Segment regulation for {args.customer_id} is not filed yet "
                  f"({'; '.join(outcome.errors) or 'no Public API token'}); no call about it is sent any more, "
                  "and the nightly run files it and then purges", file=err)
            return EXIT_PENDING
        return EXIT_OK
    except UnknownCustomer:
        print(f"s2s-privacy: unknown customer {args.customer_id!r}: the state store holds nothing about it "
              "(check the id, e.g. cus_..., and S2S_DATABASE_URL)", file=err)
        return EXIT_USAGE
    except (PrivacyConfigError, ValueError) as exc:
        print(f"s2s-privacy: {exc}", file=err)
        return EXIT_USAGE
    except PublicApiError as exc:
        print(f"s2s-privacy: {exc}", file=err)
        return EXIT_PENDING
    finally:
        store.dispose()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
