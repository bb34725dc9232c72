"""Reading Stripe: paged lists over created windows, the Events API, retrieves.

Wraps stripe-python's ``StripeClient`` (which pins the API version of the
installed SDK) with what a bulk reader needs and the SDK does not do:
request pacing shared across threads, and one retry budget per request
(429s, network errors, 409s and 5xx, as ``retries`` describes) with every
try paced; the SDK's own retries are off, so they cannot multiply ours.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable, Iterator, TypeVar
from urllib.parse import quote

import stripe

from s2s_pipeline.core.ratelimit import RequestPacer
from s2s_pipeline.core.retry import Attempt
from s2s_pipeline.stripe.errors import ExpansionRefused, StripeConfigError
from s2s_pipeline.stripe.retries import (
    RetryBudget,
    describe_failure,
    failure_kind,
    request_id_note,
    request_id_of,
    request_retry_policy,
    retry_kind,
)
from s2s_pipeline.stripe.settings import StripeSettings

log = logging.getLogger(__name__)

#: The API version every request is made with: the one stripe-python pins.
API_VERSION: str = stripe.api_version

#: Events are kept by Stripe for this long; an older cursor cannot be resumed.
EVENTS_RETENTION_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class ListSpec:
    """How to list one Stripe object type completely."""

    object_type: str  # Stripe's ``object`` value, e.g. "subscription"
    resource: str  # attribute of ``client.v1``, e.g. "subscriptions"
    params: dict[str, Any]


#: Every object type the mirror holds, in dependency order (catalogue first).
LIST_SPECS: dict[str, ListSpec] = {
    spec.object_type: spec
    for spec in (
        ListSpec("product", "products", {}),
        # Tiers and currency_options are left out of prices unless expanded
        # (includable fields); MRR needs them. Prices are listed on their own
        # because data.items.data.price.currency_options would exceed Stripe's
        # four expansion levels.
        ListSpec("price", "prices", {"expand": ["data.tiers", "data.currency_options"]}),
        # applies_to and currency_options are includable too.
        ListSpec("coupon", "coupons", {"expand": ["data.applies_to", "data.currency_options"]}),
        # The customer's discount with its coupon's terms (a deleted coupon answers 404 by id).
        ListSpec("customer", "customers", {"expand": ["data.discount.source.coupon"]}),
        # Without status=all Stripe leaves canceled subscriptions out. Stripe
        # expands at most four levels: data.items.data.discounts and
        # data.discounts.source.coupon (the coupons' terms) are at the limit.
        ListSpec(
            "subscription",
            "subscriptions",
            {"status": "all",
             "expand": ["data.discounts.source.coupon", "data.items.data.discounts"]},
        ),
        ListSpec("invoice", "invoices", {}),
        ListSpec("charge", "charges", {}),
        ListSpec("refund", "refunds", {}),
        ListSpec("dispute", "disputes", {}),
    )
}

#: Retrieve paths for resolving references (e.g. a price an old subscription uses).
RETRIEVE_EXPAND: dict[str, list[str]] = {
    "price": ["tiers", "currency_options"],
    "coupon": ["applies_to", "currency_options"],
    "customer": ["discount.source.coupon"],
    "subscription": ["discounts.source.coupon", "items.data.discounts"],
}


@dataclass(frozen=True)
class Window:
    """A half-open ``created`` window [gte, lt) in Unix seconds; None = unbounded."""

    gte: int | None
    lt: int | None

    def params(self) -> dict[str, Any]:
        created: dict[str, int] = {}
        if self.gte is not None:
            created["gte"] = self.gte
        if self.lt is not None:
            created["lt"] = self.lt
        return {"created": created} if created else {}


def split_window(gte: int, lt: int, pieces: int) -> list[Window]:
    """Split [gte, lt) into ``pieces`` contiguous windows that cover it exactly once."""
    if lt <= gte:
        return []
    pieces = max(1, min(pieces, lt - gte))
    step = (lt - gte) / pieces
    bounds = [gte + round(i * step) for i in range(pieces)] + [lt]
    return [Window(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


@dataclass
class Page:
    """One page of a list: plain-dict objects and the time the request started."""

    object_type: str
    objects: list[dict]
    fetched_at: int


def _refuses_expansion(exc: stripe.InvalidRequestError) -> bool:
    """Whether a 400 to a request that asked for expansions is about them (Stripe names ``expand`` as the param)."""
    param = str(getattr(exc, "param", None) or "")
    return exc.http_status == 400 and (param.startswith("expand") or "expand" in str(exc.user_message or "").lower())


def _server_time(result: Any) -> int | None:
    """Stripe's clock at the response (its Date header), in Unix seconds.

    Listed snapshots are versioned on Stripe's clock, the same clock event
    ``created`` times use, so local clock skew cannot make a later event look
    older than a listing (and be skipped).
    """
    response = getattr(result, "last_response", None) or result
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Date") or headers.get("date")
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError):
        return None


class StripeReader:
    """Read-only access to one Stripe account for the mirror."""

    def __init__(
        self,
        settings: StripeSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        pacer: RequestPacer | None = None,
    ) -> None:
        """``sleep``, ``clock`` and ``rng`` (the backoff jitter) are injected by tests;
        ``pacer`` defaults to one at ``settings.rate_limit`` for this reader alone."""
        self.settings = settings
        base = {"api": settings.api_base.rstrip("/")} if settings.api_base else None
        self._client = stripe.StripeClient(
            settings.api_key,
            base_addresses=base,
            # Our retry policy is the only one: an SDK retry would skip the
            # pacer and multiply our tries (4 SDK tries in each of 9 = 36).
            max_network_retries=0,
        )
        self._pacer = pacer or RequestPacer(settings.rate_limit, sleep=sleep)
        self._clock = clock
        self._rng = rng or random.Random()
        self._budget = RetryBudget(settings.max_network_retries, settings.max_rate_limit_retries)
        self._retry = request_retry_policy(
            self._budget,
            backoff_base_seconds=settings.backoff_base_seconds,
            backoff_cap_seconds=settings.backoff_cap_seconds,
            random=self._rng.random,
            before_attempt=self._pacer.acquire,
            sleep=sleep,
        )
        if settings.expand_unsupported:
            log.warning(
                "Stripe expand_unsupported is set: reading without expansions, so tiered prices have no tiers "
                "(no MRR) and discounts no coupons; use it only for a stand-in that cannot expand"
            )
        self.request_count = 0
        self.rate_limited_count = 0
        self._count_lock = threading.Lock()

    # -- low level -------------------------------------------------------------

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        """One API call: each try paced and counted, retried as ``retries`` says, failures named by Request-Id."""
        tries = 0

        def attempt() -> Any:
            nonlocal tries
            tries += 1
            with self._count_lock:
                self.request_count += 1
            try:
                return fn()
            except stripe.RateLimitError:
                with self._count_lock:
                    self.rate_limited_count += 1
                raise

        def log_retry(failed: Attempt, delay: float) -> None:
            error = failed.error
            assert error is not None  # only failed tries are retried
            log.warning(
                "Stripe %s on %s (%s); retry %d of %d in %.2fs",
                failure_kind(error), what, request_id_note(error), failed.number,
                self._budget.retries_for(retry_kind(error)), delay,
            )

        try:
            return self._retry.call(attempt, on_retry=log_retry)
        except stripe.AuthenticationError as exc:
            raise StripeConfigError(
                f"STRIPE_API_KEY was rejected by Stripe ({describe_failure(exc)}) while reading {what}"
            ) from exc
        except stripe.PermissionError as exc:
            raise StripeConfigError(
                f"STRIPE_API_KEY lacks read permission for {what} ({describe_failure(exc)}): "
                "give the restricted key read access"
            ) from exc
        except stripe.APIConnectionError as exc:
            where = self.settings.api_base or "api.stripe.com"
            raise ConnectionError(
                f"could not reach Stripe at {where} (STRIPE_API_BASE) while reading {what} after {tries} "
                f"tr{'y' if tries == 1 else 'ies'} ({describe_failure(exc)}): {exc.user_message or exc}"
            ) from exc
        except stripe.StripeError as exc:
            # Re-raised as stripe-python's own class (callers tell 404s and
            # 429s apart by it); its message leads with the Request-Id, and
            # the note says what was read and how often it was tried.
            exc.add_note(f"while reading {what} from Stripe, after {tries} tr{'y' if tries == 1 else 'ies'} "
                         f"({describe_failure(exc)})")
            raise

    def _get(self, path: str, params: dict[str, Any], what: str) -> tuple[dict, int]:
        """GET a v1 path: the decoded JSON body and Stripe's clock at the response.

        Uses stripe-python's raw request path (same pinned API version,
        authentication, retries and error classes) but skips building typed
        StripeObjects, which costs about 8x the request itself on a page of
        100 invoices; the mirror only needs plain dicts. ``*_decimal`` fields
        stay exact decimal text, as Stripe sends them.
        """
        requested_at = int(self._clock())
        response = self._call(lambda: self._client.raw_request("get", path, **params), what)
        return response.data, _server_time(response) or requested_at

    def _get_expanded(self, path: str, params: dict[str, Any], what: str) -> tuple[dict, int]:
        """``_get`` for the mirror's own expansions: a refused expansion fails the read, naming it.

        Never retried without the expansion: going on without tiers or
        coupons would quietly under-count MRR.
        """
        try:
            return self._get(path, params, what)
        except stripe.InvalidRequestError as exc:
            if "expand" in params and _refuses_expansion(exc):
                reason = exc.user_message or str(exc)
                raise ExpansionRefused(what, params["expand"], request_id_of(exc), reason) from exc
            raise

    def _expansions(self, expand: list[str] | None) -> dict[str, Any]:
        """The ``expand`` parameter for the mirror's expansions; none for a stand-in that cannot expand."""
        return {"expand": list(expand)} if expand and not self.settings.expand_unsupported else {}

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict | None:
        """Any v1 GET (e.g. ``/v1/payment_intents/pi_...``) as a plain dict; None on 404."""
        return self.get_at(path, params)[0]

    def get_at(self, path: str, params: dict[str, Any] | None = None) -> tuple[dict | None, int]:
        """``get`` plus Stripe's clock at the response (Unix seconds)."""
        try:
            return self._get(path, dict(params or {}), path)
        except (stripe.InvalidRequestError, stripe.APIError) as exc:
            if exc.http_status == 404:
                return None, int(self._clock())
            raise

    # -- lists -----------------------------------------------------------------

    def _paginate(self, path: str, params: dict[str, Any], what: str) -> Iterator[tuple[list[dict], int]]:
        """Every page of a list (``starting_after`` paging), with Stripe's clock at each response."""
        base_params = {**params, "limit": self.settings.page_size}
        starting_after: str | None = None
        while True:
            page_params = dict(base_params)
            if starting_after:
                page_params["starting_after"] = starting_after
            body, fetched_at = self._get_expanded(path, page_params, what)
            objects = body.get("data") or []
            if objects:
                yield objects, fetched_at
            if not body.get("has_more") or not objects:
                return
            starting_after = objects[-1]["id"]

    def iter_pages(self, object_type: str, window: Window, extra: dict[str, Any] | None = None) -> Iterator[Page]:
        """All objects of a type created in ``window``, newest first, one page at a time."""
        spec = LIST_SPECS[object_type]
        listed = {k: v for k, v in spec.params.items() if k != "expand"}
        params = {**listed, **self._expansions(spec.params.get("expand")), **window.params(), **(extra or {})}
        for objects, fetched_at in self._paginate(f"/v1/{spec.resource}", params, spec.resource):
            yield Page(object_type, objects, fetched_at)

    def fetch_many(self, jobs: Iterable[tuple[str, Window]], extra: dict[str, Any] | None = None) -> Iterator[Page]:
        """Pages of several (object type, window) listings, fetched concurrently.

        ``settings.concurrency`` threads list in parallel (all paced by the one
        shared limiter) and hand pages over a bounded queue, so memory stays
        flat; pages are yielded in the caller's thread, which keeps writes to
        the mirror single-threaded. The first error stops every listing and is
        raised here.
        """
        jobs = list(jobs)
        workers = min(self.settings.concurrency, len(jobs))
        if workers <= 1:
            for object_type, window in jobs:
                yield from self.iter_pages(object_type, window, extra)
            return
        yield from _read_ahead([lambda t=t, w=w: self.iter_pages(t, w, extra) for t, w in jobs], workers,
                               maxsize=4 * workers, name="stripe-list")

    # -- events ----------------------------------------------------------------

    def list_events(self, since: int) -> list[dict]:
        """Events created at or after ``since`` (Unix s), oldest first by (created, id).

        Stripe returns newest first and does not guarantee order, so callers
        dedupe by event id.
        """
        return sort_events([e for page in self.event_pages(since) for e in page])

    def event_pages(self, since: int, *, ahead: bool = False) -> Iterator[list[dict]]:
        """The pages of events created at or after ``since``, as Stripe returns them (newest first).

        ``ahead``: the next page is fetched (and paced) on a thread while the caller handles this
        one, so what the caller does with a page overlaps the wait for the next (at Stripe's 100
        requests/s most of a listing is that wait). An error of the listing is raised here.
        """
        pages = (page for page, _ in self._paginate("/v1/events", Window(since, None).params(), "events"))
        if not ahead:
            yield from pages
            return
        yield from _read_ahead([lambda: pages], 1, maxsize=4, name="stripe-events")

    def newest_events(self) -> tuple[list[dict], int]:
        """The newest events (all created in the newest event's second) and Stripe's clock now.

        The events list is empty when the account has no event in the last 30 days.
        """
        params: dict[str, Any] = {"limit": self.settings.page_size}
        events: list[dict] = []
        server_now: int | None = None
        while True:
            body, at = self._get("/v1/events", dict(params), "events")
            server_now = at if server_now is None else server_now
            page = body.get("data") or []
            events += page
            if not events:
                return [], server_now
            newest = max(int(e["created"]) for e in events)
            # Keep paging while the page still ends inside the newest second.
            if not body.get("has_more") or not page or int(page[-1]["created"]) != newest:
                return [e for e in events if int(e["created"]) == newest], server_now
            params["starting_after"] = page[-1]["id"]

    # -- retrieve --------------------------------------------------------------

    def retrieve(self, object_type: str, object_id: str) -> tuple[dict | None, int]:
        """One object by id and the Stripe-clock time it was read.

        Deleted customers (and other deletable objects) come back as a stub
        with ``deleted: true``; an unknown id gives (None, time).
        """
        spec = LIST_SPECS[object_type]
        params = self._expansions(RETRIEVE_EXPAND.get(object_type))
        path = f"/v1/{spec.resource}/{quote(object_id, safe='')}"
        try:
            return self._get_expanded(path, params, f"{spec.resource}/{object_id}")
        except (stripe.InvalidRequestError, stripe.APIError) as exc:
            if exc.http_status == 404:  # also a non-JSON 404 from a proxy or stand-in
                return None, int(self._clock())
            raise


def sort_events(events: list[dict]) -> list[dict]:
    """Events oldest first by (created, id), the order the change feed applies them in."""
    events.sort(key=lambda e: (e["created"], e["id"]))
    return events


T = TypeVar("T")


def _read_ahead(producers: list[Callable[[], Iterable[T]]], workers: int, *, maxsize: int, name: str) -> Iterator[T]:
    """The items of every producer, each run on one of ``workers`` threads and handed over a queue of
    ``maxsize`` (so memory stays flat), yielded in the caller's thread in the order they arrive. The
    first error stops every producer and is raised here."""
    items: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    done = object()

    def run(produce: Callable[[], Iterable[T]]) -> None:
        try:
            for item in produce():
                if stop.is_set():
                    return
                items.put(item)
        except BaseException as exc:  # handed to the consumer, which re-raises
            items.put(exc)
        finally:
            items.put(done)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        for produce in producers:
            pool.submit(run, produce)
        remaining = len(producers)
        try:
            while remaining:
                item = items.get()
                if item is done:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            # Unblock producers waiting on a full queue so the pool can shut down.
            while remaining:
                item = items.get()
                if item is done:
                    remaining -= 1
