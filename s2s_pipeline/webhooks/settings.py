"""What ``s2s-webhooks`` reads from the environment: the endpoint's signing secret and the state store."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from s2s_pipeline.webhooks.verification import DEFAULT_TOLERANCE_S

SECRET_VARIABLE = "STRIPE_WEBHOOK_SECRET"
DATABASE_VARIABLE = "S2S_DATABASE_URL"

#: Largest delivery accepted (bytes). Stripe's event payloads are a few KB to a few hundred KB
#: (an invoice with many lines); anything bigger is refused with 413 before it is read whole.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class MissingSetting(ValueError):
    """A required environment variable is unset or malformed; the message names it."""


@dataclass(frozen=True)
class ReceiverSettings:
    """The receiver's configuration. ``repr`` never shows the secret."""

    secret: str
    database_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tolerance_s: int = DEFAULT_TOLERANCE_S

    def __repr__(self) -> str:
        return (f"ReceiverSettings(secret=<{SECRET_VARIABLE}>, database_url=<{DATABASE_VARIABLE}>, "
                f"max_body_bytes={self.max_body_bytes}, tolerance_s={self.tolerance_s})")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides) -> "ReceiverSettings":
        """Settings from ``STRIPE_WEBHOOK_SECRET`` (required) and ``S2S_DATABASE_URL`` (default: as the pipeline)."""
        env = os.environ if environ is None else environ
        secret = (env.get(SECRET_VARIABLE) or "").strip()
        if not secret:
            raise MissingSetting(f"{SECRET_VARIABLE} is not set: the webhook endpoint's signing secret "
                                 "(whsec_..., shown on the endpoint's page in the Stripe Dashboard or returned "
                                 "when the endpoint is created) is needed to verify Stripe-Signature")
        if not secret.startswith("whsec_"):
            raise MissingSetting(f"{SECRET_VARIABLE} does not look like a webhook signing secret (it starts "
                                 "with whsec_; an API key sk_/rk_ is not the endpoint's secret)")
        return cls(secret=secret, database_url=env.get(DATABASE_VARIABLE) or None, **overrides)
