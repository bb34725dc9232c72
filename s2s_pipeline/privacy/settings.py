"""How the deletion path reaches Segment's Public API (see the README's configuration table)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlparse

DEFAULT_PUBLIC_API_HOST = "https://api.segmentapis.com"
DEFAULT_REGULATION_TYPE = "SUPPRESS_WITH_DELETE"
#: Segment's regulation types (REFERENCE §E): the first two reach destinations too, the others Segment only.
REGULATION_TYPES = ("SUPPRESS_WITH_DELETE", "DELETE_ONLY", "SUPPRESS_WITH_DELETE_INTERNAL", "DELETE_INTERNAL",
                    "SUPPRESS_ONLY")
#: Segment's internal stores meet a 30-day deletion SLA; a regulation not finished by then is stuck.
DEFAULT_STUCK_AFTER_DAYS = 30


class PrivacyConfigError(ValueError):
    """A privacy setting is malformed; the message names it."""


@dataclass(frozen=True)
class PrivacySettings:
    """``token`` None: no regulations are filed, deleted customers are purged at once."""

    token: str | None = None
    host: str = DEFAULT_PUBLIC_API_HOST
    regulation_type: str = DEFAULT_REGULATION_TYPE
    stuck_after_days: int = DEFAULT_STUCK_AFTER_DAYS

    def __post_init__(self) -> None:
        parsed = urlparse(self.host or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PrivacyConfigError(f"SEGMENT_PUBLIC_API_HOST is malformed: expected a URL such as "
                                     f"{DEFAULT_PUBLIC_API_HOST}, got {self.host!r}")
        if self.regulation_type not in REGULATION_TYPES:
            raise PrivacyConfigError(f"regulation_type must be one of {', '.join(REGULATION_TYPES)}, "
                                     f"got {self.regulation_type!r}")
        if self.stuck_after_days < 1:
            raise PrivacyConfigError(f"stuck_after_days must be at least 1, got {self.stuck_after_days}")

    def __repr__(self) -> str:  # never show the token
        return (f"PrivacySettings(token={'set' if self.token else None}, host={self.host!r}, "
                f"regulation_type={self.regulation_type!r})")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "PrivacySettings":
        """From ``SEGMENT_PUBLIC_API_TOKEN`` and ``SEGMENT_PUBLIC_API_HOST`` (overrides win when not None)."""
        env = os.environ if environ is None else environ
        values = {"token": (env.get("SEGMENT_PUBLIC_API_TOKEN") or "").strip() or None,
                  "host": (env.get("SEGMENT_PUBLIC_API_HOST") or "").strip() or DEFAULT_PUBLIC_API_HOST}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
