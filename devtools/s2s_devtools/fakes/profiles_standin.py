"""A stand-in for Segment's Profiles API (REFERENCE §D.4), for demos and tests.

Serves the two user-profile reads the pipeline makes:

- ``GET /v1/spaces/{space_id}/collections/users/profiles/{id_type}:{value}/external_ids``
  → ``{"data": [...], "cursor": {...}}``: ``user_id`` entries first, then
  ``anonymous_id``, then ``email``, each in creation order;
- ``GET .../traits`` → ``{"traits": {...}, "cursor": {...}}`` with ``limit``
  (default 10, at most 200), ``include=a,b`` and ``next`` paging (traits in
  name order; ``next`` is the first trait name of the following page).

Profiles are found by ``email:``, ``user_id:`` or ``anonymous_id:`` (the value
URL-encoded in the path: ``email:jane%2Btest%40example.com``; ``+`` stays a
plus, as in any URL path). Auth is HTTP Basic with the access token as username
and an empty password (else 401); an unknown space or profile is a 404 in
Segment's ``{"error": {"code", "message"}}`` shape. ``faults`` injects 429s
(with ``Retry-After`` when asked), as the 100 req/s per-space limit would.

Standard library only; the server listens on 127.0.0.1 in a daemon thread.

Example::

    with ProfilesStandIn() as profiles:
        profiles.add_profile("jane@example.com", user_id="cus_1", traits={"plan": "pro"})
        requests.get(
            f"{profiles.base_url}/v1/spaces/spa_demo/collections/users/profiles/"
            "email:jane%40example.com/external_ids",
            auth=("profiles_token", ""),
        )
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

from s2s_devtools.fakes.faults import HTTPFaults
from s2s_devtools.fakes.segment_sink import HTTPError, LoopbackServer, basic_auth_credentials, utc_now_iso

ID_TYPES = ("user_id", "anonymous_id", "email")  # also the order external_ids are listed in
TRAITS_DEFAULT_LIMIT = 10
TRAITS_MAX_LIMIT = 200
EXTERNAL_IDS_DEFAULT_LIMIT = 25
EXTERNAL_IDS_MAX_LIMIT = 100


class ProfilesFaults(HTTPFaults):
    """:class:`HTTPFaults` whose failures default to 429, the Profiles API's rate limit."""

    default_status = 429


def _not_found() -> HTTPError:
    return HTTPError(404, {"error": {"code": "not_found", "message": "Resource not found"}})


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> HTTPError:
    return HTTPError(status, {"error": {"code": code, "message": message}}, headers)


class _Profile:
    __slots__ = ("ids", "traits")

    def __init__(self) -> None:
        self.ids: list[dict] = []  # external id entries, in creation order
        self.traits: dict[str, Any] = {}

    def has(self, id_type: str, value: str) -> bool:
        return any(e["type"] == id_type and e["id"] == value for e in self.ids)


class ProfilesStandIn(LoopbackServer):
    """An in-memory Segment Profiles API (one space) served over HTTP on 127.0.0.1.

    Public attributes: ``base_url``; ``requests`` (every request, oldest first,
    as ``{method, path, query, status, time}``, no headers so the token never
    lands in a log); ``faults`` (:class:`ProfilesFaults`); ``source_id`` (the
    ``source_id`` reported on external ids).
    """

    thread_name = "profiles-standin"

    def __init__(self, *, space_id: str = "spa_demo", token: str = "profiles_token", port: int = 0):
        super().__init__(port=port)
        self.space_id = space_id
        self._token = token
        self.source_id = "src_demo"
        self.requests: list[dict] = []
        self.faults = ProfilesFaults()
        self._lock = threading.RLock()
        self._profiles: list[_Profile] = []

    def __repr__(self) -> str:  # never show the token
        return f"ProfilesStandIn(base_url={self.base_url!r}, space_id={self.space_id!r})"

    # ------------------------------------------------------------ data

    def add_profile(
        self,
        email: str,
        *,
        user_id: str | None = None,
        anonymous_ids: Iterable[str] = (),
        traits: dict | None = None,
    ) -> None:
        """Add a user profile, or add ids and traits to the profile(s) it matches.

        Any existing profile sharing an identifier (email, user_id or an
        anonymous id) is merged into one, as identity resolution would; new
        traits overwrite old ones of the same name. ``email`` is also set as the
        ``email`` trait unless ``traits`` gives one.
        """
        wanted: list[tuple[str, str]] = [("email", email)]
        if user_id is not None:
            wanted.append(("user_id", user_id))
        wanted.extend(("anonymous_id", a) for a in anonymous_ids)
        with self._lock:
            matches = [p for p in self._profiles if any(p.has(t, v) for t, v in wanted)]
            if matches:
                profile = matches[0]
                for other in matches[1:]:
                    for entry in other.ids:
                        if not profile.has(entry["type"], entry["id"]):
                            profile.ids.append(entry)
                    profile.traits.update(other.traits)
                    self._profiles.remove(other)
            else:
                profile = _Profile()
                self._profiles.append(profile)
            now = utc_now_iso()
            for id_type, value in wanted:
                if not profile.has(id_type, value):
                    profile.ids.append(
                        {
                            "id": value,
                            "type": id_type,
                            "source_id": self.source_id,
                            "collection": "users",
                            "created_at": now,
                            "encoding": "none",
                        }
                    )
            new_traits = dict(traits or {})
            new_traits.setdefault("email", email)
            profile.traits.update(new_traits)

    def clear(self) -> None:
        """Forget every profile, the request log and every planned fault."""
        with self._lock:
            self._profiles.clear()
            self.requests.clear()
        self.faults.clear()

    def _find(self, id_type: str, value: str) -> _Profile | None:
        for p in self._profiles:
            if p.has(id_type, value):
                return p
        return None

    # ------------------------------------------------------------ HTTP

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        self._read_body(handler)  # drain so the connection stays usable
        parsed = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        headers: dict[str, str] = {}
        try:
            status, body = self._respond(handler, parsed.path, query)
        except HTTPError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        except Exception as exc:  # a bug here must look like a 500, not hang the client
            status, body = 500, {"error": {"code": "internal", "message": f"stand-in error: {exc!r}"}}
        delay = self.faults.current_delay()
        if delay:
            time.sleep(delay)  # an injected slow response (server side)
        with self._lock:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": parsed.path,
                    "query": query,
                    "status": status,
                    "time": time.monotonic(),
                }
            )
        self._send_json(handler, status, body, headers)

    def _respond(self, handler: BaseHTTPRequestHandler, raw_path: str, query: dict) -> tuple[int, dict]:
        fault = self.faults.check()
        if fault is not None:
            status, retry_after = fault
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            if status == 429:
                raise _error(429, "too_many_requests", "Too many requests", extra)
            raise _error(status, "injected_fault", f"Injected fault ({status}).", extra)
        creds = basic_auth_credentials(handler.headers.get("Authorization"))
        if creds is None or creds != (self._token, ""):
            raise _error(401, "unauthorized", "Unauthorized")
        if handler.command != "GET":
            raise _not_found()
        # split before unquoting so an encoded "/" inside an id stays in the id
        parts = [urllib.parse.unquote(p) for p in raw_path.split("/") if p]
        # v1 spaces {space} collections users profiles {type:value} {resource}
        if (
            len(parts) != 8
            or parts[0] != "v1"
            or parts[1] != "spaces"
            or parts[3] != "collections"
            or parts[4] != "users"
            or parts[5] != "profiles"
        ):
            raise _not_found()
        if parts[2] != self.space_id:
            raise _not_found()
        id_type, sep, value = parts[6].partition(":")
        if not sep or id_type not in ID_TYPES or not value:
            raise _not_found()
        resource = parts[7]
        with self._lock:
            profile = self._find(id_type, value)
            if profile is None:
                raise _not_found()
            if resource == "external_ids":
                return 200, self._external_ids(profile, raw_path, query)
            if resource == "traits":
                return 200, self._traits(profile, raw_path, query)
        raise _not_found()

    @staticmethod
    def _limit(query: dict, default: int, maximum: int) -> int:
        raw = query.get("limit")
        if raw is None or raw == "":
            return default
        try:
            limit = int(raw)
        except ValueError:
            raise _error(400, "invalid_request", f"limit must be an integer, got {raw!r}") from None
        if not 1 <= limit <= maximum:
            raise _error(400, "invalid_request", f"limit must be between 1 and {maximum}")
        return limit

    @staticmethod
    def _cursor(path: str, has_more: bool, next_token: str) -> dict:
        return {"url": path if has_more else "", "has_more": has_more, "next": next_token if has_more else ""}

    def _external_ids(self, profile: _Profile, path: str, query: dict) -> dict:
        limit = self._limit(query, EXTERNAL_IDS_DEFAULT_LIMIT, EXTERNAL_IDS_MAX_LIMIT)
        ordered = [e for t in ID_TYPES for e in profile.ids if e["type"] == t]
        include = {s for s in (query.get("include") or "").split(",") if s}
        if include:
            ordered = [e for e in ordered if e["type"] in include]
        try:
            start = int(query.get("next") or 0)
        except ValueError:
            raise _error(400, "invalid_request", "invalid next cursor") from None
        page = ordered[start : start + limit]
        has_more = start + limit < len(ordered)
        return {"data": [dict(e) for e in page], "cursor": self._cursor(path, has_more, str(start + limit))}

    def _traits(self, profile: _Profile, path: str, query: dict) -> dict:
        limit = self._limit(query, TRAITS_DEFAULT_LIMIT, TRAITS_MAX_LIMIT)
        names = sorted(profile.traits)
        include = [s for s in (query.get("include") or "").split(",") if s]
        if include:
            wanted = set(include)
            names = [n for n in names if n in wanted]
        after = query.get("next") or ""
        if after:
            names = [n for n in names if n >= after]
        page, rest = names[:limit], names[limit:]
        return {
            "traits": {n: profile.traits[n] for n in page},
            "cursor": self._cursor(path, bool(rest), rest[0] if rest else ""),
        }
