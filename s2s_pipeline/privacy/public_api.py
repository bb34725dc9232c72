"""A small client of Segment's Public API regulations (REFERENCE §C.7, §E).

- ``POST {host}/regulations`` with ``Authorization: Bearer <token>`` and
  ``{"regulationType", "subjectType": "USER_ID", "subjectIds": [...]}``
  (at most 5,000 ids); Segment answers ``{"data": {"regulateId": "..."}}``.
- ``GET {host}/regulations/{regulateId}``: ``data.regulation.overallStatus``
  (INITIALIZED, RUNNING, FINISHED, FAILED, PARTIAL_SUCCESS, INVALID, NOT_SUPPORTED).
- Retries through ``core.retry.RetryPolicy`` like the Profiles client: 429
  and 5xx and failed connections, waiting what ``Retry-After`` asks for, else
  exponential backoff with jitter; sleep and jitter are injectable so tests
  never wait.
- Privacy: subject ids are userIds; neither they, the token nor response
  bodies ever appear in log lines or error messages.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

import requests

from s2s_pipeline.core.retry import Attempt, RetryPolicy, equal_jitter, retry_after_seconds
from s2s_pipeline.privacy.settings import DEFAULT_PUBLIC_API_HOST

log = logging.getLogger(__name__)

#: Segment accepts at most this many subject ids in one regulation.
MAX_SUBJECT_IDS = 5000
_ACCEPT = "application/vnd.segment.v1+json, application/json"


class PublicApiError(RuntimeError):
    """The Public API did not do what was asked; the message says what to check (never ids or the token)."""


class PublicApiAuthError(PublicApiError):
    """401/403: the token is wrong or lacks the permission."""


@dataclass(frozen=True)
class RegulationStatus:
    regulate_id: str
    status: str


class RegulationsClient:
    """Files and looks up workspace regulations.

    ``session`` is a ``requests.Session`` (or anything with its ``request``);
    ``sleep`` and ``jitter`` (a float in [0, 1)) are injected by tests.
    """

    def __init__(self, token: str, host: str = DEFAULT_PUBLIC_API_HOST, *, max_retries: int = 6,
                 timeout: float = 30, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, jitter: Callable[[], float] = random.random,
                 backoff_base: float = 1.0, backoff_cap: float = 60.0, max_retry_after: float = 300.0) -> None:
        if not (token or "").strip():
            raise ValueError("SEGMENT_PUBLIC_API_TOKEN is not set: regulations need a Public API token")
        self._token = token.strip()
        self.host = (host or DEFAULT_PUBLIC_API_HOST).strip().rstrip("/")
        self.timeout = timeout
        self._session = session if session is not None else requests.Session()
        self._max_retry_after = max_retry_after
        self._retry = RetryPolicy(max_retries=max_retries, should_retry=_worth_retrying,
                                  backoff=equal_jitter(backoff_base, backoff_cap, jitter),
                                  wait_hint=self._retry_after, sleep=sleep)
        self.requests_sent = 0

    def __repr__(self) -> str:  # never show the token
        return f"RegulationsClient(host={self.host!r})"

    def file(self, regulation_type: str, subject_ids: list[str], subject_type: str = "USER_ID") -> str:
        """File one regulation for up to 5,000 subjects; returns Segment's ``regulateId``."""
        if not subject_ids:
            raise ValueError("a regulation needs at least one subject id")
        if len(subject_ids) > MAX_SUBJECT_IDS:
            raise ValueError(f"Segment accepts at most {MAX_SUBJECT_IDS} subject ids per regulation, "
                             f"got {len(subject_ids)}")
        body = {"regulationType": regulation_type, "subjectType": subject_type, "subjectIds": list(subject_ids)}
        answer = self._request("POST", "/regulations", json=body)
        regulate_id = ((answer.get("data") or {}) if isinstance(answer, dict) else {}).get("regulateId")
        if not regulate_id:
            raise PublicApiError("the Segment Public API accepted the regulation but returned no "
                                 "data.regulateId: check SEGMENT_PUBLIC_API_HOST")
        return str(regulate_id)

    def status(self, regulate_id: str) -> RegulationStatus:
        """Segment's current overall status of a regulation."""
        answer = self._request("GET", f"/regulations/{quote(regulate_id, safe='')}")
        data = (answer.get("data") or {}) if isinstance(answer, dict) else {}
        regulation = data.get("regulation") or {}
        status = regulation.get("overallStatus") or regulation.get("status")
        if not status:
            raise PublicApiError(f"the Segment Public API returned no status for regulation {regulate_id}")
        return RegulationStatus(regulate_id, str(status))

    # -- HTTP --------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, json: dict | None = None) -> dict:
        url = self.host + path
        headers = {"Authorization": f"Bearer {self._token}", "Accept": _ACCEPT}
        if json is not None:
            headers["Content-Type"] = "application/json"

        def attempt() -> requests.Response:
            self.requests_sent += 1
            return self._session.request(method, url, json=json, headers=headers, timeout=self.timeout)

        try:
            response = self._retry.call(attempt, on_retry=self._log_retry)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PublicApiError(f"could not reach the Segment Public API at {self.host} ({type(exc).__name__} "
                                 f"after {self._retry.max_attempts} attempts): check SEGMENT_PUBLIC_API_HOST "
                                 "and the network") from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError:
                raise PublicApiError("the Segment Public API answered with a body that is not JSON: check "
                                     "SEGMENT_PUBLIC_API_HOST") from None
        if status in (401, 403):
            raise PublicApiAuthError(f"the Segment Public API refused the token (HTTP {status}): check "
                                     "SEGMENT_PUBLIC_API_TOKEN (a workspace token with deletion permission)")
        if status == 429 or status >= 500:
            what = "rate limited" if status == 429 else f"failing (HTTP {status})"
            raise PublicApiError(f"the Segment Public API kept {what} after {self._retry.max_attempts} attempts; "
                                 "the next run tries again")
        raise PublicApiError(f"the Segment Public API answered HTTP {status} to {method} {path.split('/')[1]}: "
                             "check the regulation type and SEGMENT_PUBLIC_API_HOST")

    def _log_retry(self, failed: Attempt, wait: float) -> None:
        what = type(failed.error).__name__ if failed.failed else f"HTTP {failed.result.status_code}"
        log.warning("segment public api: %s, retrying in %.1fs (attempt %d of %d)", what, wait, failed.number,
                    self._retry.max_attempts)

    def _retry_after(self, failed: Attempt) -> float | None:
        if failed.failed:
            return None
        return retry_after_seconds(failed.result.headers, ceiling=self._max_retry_after)


def _worth_retrying(attempt: Attempt) -> bool:
    """Segment's rate limit (429), its server errors (5xx), and connections that failed or timed out."""
    if attempt.failed:
        return isinstance(attempt.error, (requests.ConnectionError, requests.Timeout))
    status = attempt.result.status_code
    return status == 429 or status >= 500
