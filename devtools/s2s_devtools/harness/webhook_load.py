"""Signed webhooks at a steady rate against a receiver, with the answer time of each (bench and tests).

``send_load(url, secret, count, seconds)`` posts ``count`` distinct
failed-payment events (plus ``duplicates`` redeliveries of some of them)
on a fixed schedule over ``seconds`` (open loop: a slow answer does not
slow the schedule down), from ``workers`` threads each keeping one
keep-alive connection, and returns every answer's status and latency.
"""

from __future__ import annotations

import http.client
import queue
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from s2s_devtools.fakes.stripe import sign, webhook_body


def load_event(n: int, created: int, run: str = "") -> dict:
    """A realistic-size invoice.payment_failed event (about 3 KB of JSON), unique by ``run`` and ``n``."""
    invoice = {
        "id": f"in_load{n:08d}", "object": "invoice", "customer": f"cus_load{n % 500:05d}", "status": "open",
        "currency": "usd", "amount_due": 4900, "amount_paid": 0, "amount_remaining": 4900, "attempt_count": 1,
        "attempted": True, "billing_reason": "subscription_cycle", "collection_method": "charge_automatically",
        "customer_email": f"load{n % 500}@example.com", "customer_name": "Load Test", "livemode": False,
        "next_payment_attempt": created + 3 * 86400, "created": created, "period_start": created - 2592000,
        "period_end": created,
        "lines": {"object": "list", "has_more": False, "total_count": 1, "url": f"/v1/invoices/in_load{n:08d}/lines",
                  "data": [{"id": f"il_load{n:08d}", "object": "line_item", "amount": 4900, "currency": "usd",
                            "description": "1 × Pro (at $49.00 / month)", "quantity": 1,
                            "period": {"start": created - 2592000, "end": created},
                            "pricing": {"price_details": {"price": "price_pro_monthly", "product": "prod_pro"},
                                        "type": "price_details", "unit_amount_decimal": "4900"}}]},
        "status_transitions": {"finalized_at": created, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "metadata": {}, "footer": None, "description": None,
    }
    return {"id": f"evt_1load{run}{n:08d}", "object": "event", "api_version": "2026-10-28.endive", "created": created,
            "data": {"object": invoice, "previous_attributes": {"attempt_count": 0}}, "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "type": "invoice.payment_failed"}


@dataclass
class LoadResult:
    sent: int = 0
    unique_events: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    late_starts: int = 0  # requests sent more than 50 ms behind schedule (the client could not keep up)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        rank = max(1, -(-len(ordered) * q // 100))
        return round(ordered[int(rank) - 1], 2)


def send_load(url: str, secret: str, count: int, seconds: float, *, duplicates: float = 0.0, workers: int = 16,
              seed: int = 1, run: str = "") -> LoadResult:
    rng = random.Random(seed)
    now = int(time.time())
    bodies = [webhook_body(load_event(n, now, run)) for n in range(count)]
    # redeliveries of random events, each sent a little after its original
    picks = [rng.randrange(count) for _ in range(int(count * duplicates))] if count else []
    schedule = bodies[:]
    for n in sorted(picks, reverse=True):
        schedule.insert(min(len(schedule), n + 1 + rng.randrange(50)), bodies[n])
    interval = seconds / max(1, len(schedule))
    parts = urllib.parse.urlsplit(url)
    result = LoadResult(unique_events=count)
    lock = threading.Lock()
    work: queue.Queue = queue.Queue()
    t0 = time.perf_counter() + 0.2
    for i, body in enumerate(schedule):
        work.put((t0 + i * interval, body))
    for _ in range(workers):
        work.put(None)

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while (item := work.get()) is not None:
            due, body = item
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # the load schedule itself, not a test timing
            late = -wait > 0.05
            started = time.perf_counter()
            try:
                conn.request("POST", parts.path, body=body.encode(), headers={
                    "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": sign(body, secret)})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                status = None
            elapsed_ms = (time.perf_counter() - started) * 1000
            with lock:
                result.sent += 1
                result.late_starts += late
                if status is None:
                    result.errors += 1
                else:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    result.latencies_ms.append(elapsed_ms)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = round(time.perf_counter() - started, 2)
    return result
