"""A small client of Segment's Profile API (REFERENCE §D.4), for identity and attribution look-ups.

- ``GET {host}/v1/spaces/{space}/collections/users/profiles/{id_type}:{value}/external_ids``
  and ``.../traits?include=a,b&limit=200``; HTTP Basic auth with the access
  token as username and an empty password.
- Segment allows 100 requests/s per space and answers 429 above it. The
  client paces its own requests (``rate_limit`` per second, shared by every
  thread using the client) and backs off exponentially with jitter on 429
  and 5xx, honouring ``Retry-After``, at most ``max_retries`` times.
- Errors name the setting to check: 401/403 -> ``SEGMENT_PROFILES_TOKEN``
  (and ``SEGMENT_SPACE_ID``), unreachable host -> ``SEGMENT_PROFILES_HOST``.
- Privacy: the URL of a look-up contains the email, so neither URLs, emails
  nor the token ever appear in log lines or error messages (errors from
  ``requests`` are re-raised without their text, which quotes the URL).
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Callable, Iterable, Mapping
from urllib.parse import quote

import requests

from s2s_pipeline.core.ratelimit import RequestPacer
from s2s_pipeline.core.retry import Attempt, RetryPolicy, equal_jitter, retry_after_seconds

log = logging.getLogger(__name__)

DEFAULT_PROFILES_HOST = "https://profiles.segment.com"
#: Segment's limit is 100 requests/s per space; stay well below it by default.
DEFAULT_RATE_LIMIT = 20.0
#: ``utm_*`` traits for attribution (``context.campaign`` of ``Order Completed``).
UTM_TRAITS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
#: Profile identifier types accepted by ``latest_traits``.
ID_TYPES = ("email", "user_id", "anonymous_id")


class ProfilesError(RuntimeError):
    """The Profile API could not answer; the message says what to check (never an email or the token)."""


class ProfilesAuthError(ProfilesError):
    """401/403: the access token (or space) is wrong."""


class ProfilesConnectionError(ProfilesError):
    """The Profile API host could not be reached."""


class ProfilesClient:
    """Look-ups in one Profiles space.

    ``sleep`` (and ``clock``) are injectable so tests never wait; ``session``
    is a ``requests.Session`` (or anything with its ``get``), one is created
    when not given. ``jitter`` returns a float in [0, 1) for the backoff.
    """

    def __init__(self, space_id: str, token: str, host: str = DEFAULT_PROFILES_HOST, rate_limit: float = DEFAULT_RATE_LIMIT,
                 max_retries: int = 5, timeout: float = 10, sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None, *, clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random, backoff_base: float = 0.5,
                 backoff_cap: float = 30.0, max_retry_after: float = 120.0) -> None:
        if not (space_id or "").strip():
            raise ValueError("SEGMENT_SPACE_ID is not set: the Profiles API needs the space id")
        if not (token or "").strip():
            raise ValueError("SEGMENT_PROFILES_TOKEN is not set: the Profiles API needs an access token")
        host = (host or DEFAULT_PROFILES_HOST).strip().rstrip("/")
        if not host.startswith(("http://", "https://")):
            raise ValueError(f"SEGMENT_PROFILES_HOST is malformed: expected an http(s) URL such as "
                             f"{DEFAULT_PROFILES_HOST}, got {host!r}")
        if rate_limit <= 0:
            raise ValueError(f"Profiles rate_limit must be positive, got {rate_limit}")
        if max_retries < 0:
            raise ValueError(f"Profiles max_retries must not be negative, got {max_retries}")
        self.space_id = space_id.strip()
        self._token = token.strip()
        self.host = host
        self.max_retries = int(max_retries)
        self.timeout = timeout
        self._max_retry_after = max_retry_after
        self._session = session if session is not None else requests.Session()
        self._pacer = RequestPacer(rate_limit, clock=clock, sleep=sleep)
        self._retry = RetryPolicy(
            max_retries=self.max_retries,
            should_retry=_worth_retrying,
            backoff=equal_jitter(backoff_base, backoff_cap, jitter),
            wait_hint=self._retry_after,
            before_attempt=self._pacer.acquire,
            sleep=sleep,
        )
        self.requests_sent = 0

    def __repr__(self) -> str:  # never show the token
        return f"ProfilesClient(space_id={self.space_id!r}, host={self.host!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs) -> "ProfilesClient | None":
        """A client from SEGMENT_SPACE_ID / SEGMENT_PROFILES_TOKEN / SEGMENT_PROFILES_HOST.

        None when neither id nor token is set (look-ups disabled); a
        ``ValueError`` naming the missing one when only one is.
        """
        env = os.environ if environ is None else environ
        space, token = env.get("SEGMENT_SPACE_ID", "").strip(), env.get("SEGMENT_PROFILES_TOKEN", "").strip()
        if not space and not token:
            return None
        if not space or not token:
            missing = "SEGMENT_SPACE_ID" if not space else "SEGMENT_PROFILES_TOKEN"
            raise ValueError(f"{missing} is not set: the Profiles API needs both SEGMENT_SPACE_ID and "
                             "SEGMENT_PROFILES_TOKEN (or neither, to skip look-ups)")
        host = env.get("SEGMENT_PROFILES_HOST", "").strip() or DEFAULT_PROFILES_HOST
        return cls(space, token, host=host, **kwargs)

    # -- public look-ups ---------------------------------------------------------------------------

    def user_id_for_email(self, email: str) -> str | None:
        """The first ``user_id`` external id of profile ``email:<email>``; None without one (or no profile)."""
        if not email or not str(email).strip():
            return None
        return self.first_external_id("email", str(email).strip(), "user_id")

    def first_external_id(self, id_type: str, value: str, wanted_type: str) -> str | None:
        """The first external id of type ``wanted_type`` of profile ``id_type:value``; None if none."""
        for entry in self.external_ids(id_type, value, include=(wanted_type,)):
            if entry.get("type") == wanted_type and entry.get("id") not in (None, ""):
                return str(entry["id"])
        return None

    def external_ids(self, id_type: str, value: str, include: Iterable[str] | None = None,
                     limit: int = 100) -> list[dict]:
        """External ids of profile ``id_type:value`` (``[]`` when there is no such profile)."""
        params: dict[str, str | int] = {"limit": limit}
        if include:
            params["include"] = ",".join(include)
        body = self._get(self._profile_path(id_type, value) + "/external_ids", params)
        if body is None:
            return []
        data = body.get("data") if isinstance(body, dict) else None
        return [entry for entry in (data or []) if isinstance(entry, dict)]

    def latest_traits(self, *, email: str | None = None, user_id: str | None = None,
                      anonymous_id: str | None = None, include: Iterable[str] = UTM_TRAITS) -> dict:
        """Latest values of the ``include``d traits of one profile (``{}`` when there is no profile).

        Exactly one of ``email``, ``user_id``, ``anonymous_id`` identifies the profile.
        """
        given = [(t, v) for t, v in (("email", email), ("user_id", user_id), ("anonymous_id", anonymous_id))
                 if v is not None and str(v).strip()]
        if len(given) != 1:
            raise ValueError("latest_traits needs exactly one of email, user_id, anonymous_id")
        id_type, value = given[0]
        params: dict[str, str | int] = {"limit": 200}
        names = [str(n) for n in include]
        if names:
            params["include"] = ",".join(names)
        body = self._get(self._profile_path(id_type, str(value).strip()) + "/traits", params)
        if not isinstance(body, dict):
            return {}
        traits = body.get("traits")
        return dict(traits) if isinstance(traits, dict) else {}

    # -- HTTP --------------------------------------------------------------------------------------

    def _profile_path(self, id_type: str, value: str) -> str:
        if id_type not in ID_TYPES:
            raise ValueError(f"unsupported profile id type {id_type!r}; one of {', '.join(ID_TYPES)}")
        return (f"{self.host}/v1/spaces/{quote(self.space_id, safe='')}/collections/users/profiles/"
                f"{id_type}:{quote(value, safe='')}")

    def _get(self, url: str, params: dict) -> dict | None:
        """GET with pacing and retries; the JSON body, or None for 404."""

        def attempt() -> requests.Response:
            self.requests_sent += 1
            return self._session.get(url, params=params, auth=(self._token, ""), timeout=self.timeout,
                                     headers={"Accept": "application/json"})

        try:
            response = self._retry.call(attempt, on_retry=self._log_retry)
        except (requests.ConnectionError, requests.Timeout) as exc:
            # Not chained: the requests error text quotes the URL, which holds the email.
            raise ProfilesConnectionError(
                f"could not reach the Segment Profiles API at {self.host} ({type(exc).__name__} after "
                f"{self._retry.max_attempts} attempts): check SEGMENT_PROFILES_HOST and the network") from None
        status = response.status_code
        if status == 200:
            try:
                return response.json()
            except ValueError:
                raise ProfilesError("the Segment Profiles API answered 200 with a body that is not JSON: "
                                    "check SEGMENT_PROFILES_HOST") from None
        if status == 404:
            return None
        if status in (401, 403):
            raise ProfilesAuthError(
                f"the Segment Profiles API refused the access token (HTTP {status}): check "
                "SEGMENT_PROFILES_TOKEN (a Profile API access token of space SEGMENT_SPACE_ID)")
        if _retryable_status(status):  # still failing when the retries ran out
            what = "rate limited" if status == 429 else f"failing (HTTP {status})"
            raise ProfilesError(f"the Segment Profiles API kept {what} after {self._retry.max_attempts} attempts; "
                                "lower the look-up rate or max_lookups, or retry later")
        raise ProfilesError(f"the Segment Profiles API answered HTTP {status}: check SEGMENT_SPACE_ID "
                            "and SEGMENT_PROFILES_HOST")

    def _log_retry(self, failed: Attempt, wait: float) -> None:
        # Neither the URL nor the error text: both quote the email.
        what = type(failed.error).__name__ if failed.failed else f"HTTP {failed.result.status_code}"
        log.warning("profiles: %s, retrying in %.1fs (attempt %d of %d)", what, wait, failed.number,
                    self.max_retries)

    def _retry_after(self, failed: Attempt) -> float | None:
        """The wait a 429/5xx answer asks for in ``Retry-After``; None for errors and answers without one."""
        if failed.failed:
            return None
        return retry_after_seconds(failed.result.headers, ceiling=self._max_retry_after)


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _worth_retrying(attempt: Attempt) -> bool:
    """Segment's rate limit (429), its server errors (5xx), and connections that failed or timed out."""
    if attempt.failed:
        return isinstance(attempt.error, (requests.ConnectionError, requests.Timeout))
    return _retryable_status(attempt.result.status_code)
