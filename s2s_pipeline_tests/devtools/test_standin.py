"""The Stripe stand-in, driven by the real stripe-python SDK.

What matters for the pipeline: paging visits every object exactly once in
Stripe's order, filters and the 30-day event window behave like Stripe, fields
are collapsed unless expanded, and failures surface as the SDK's own errors.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime

import pytest
import stripe

from s2s_devtools.fakes.stripe import StripeStandIn, parse_query

NOW = 1_790_000_000
DAY = 86400


def client_for(standin: StripeStandIn, key: str = "sk_test_x") -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": standin.base_url}, max_network_retries=0)


def raw_get(standin: StripeStandIn, path: str, key: str | None = "sk_test_x") -> tuple[int, dict, dict]:
    """A plain HTTP GET, to see status codes and headers the SDK hides."""
    req = urllib.request.Request(standin.base_url + path)
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def customers(n: int, *, base: int = NOW - 100 * DAY) -> list[dict]:
    # three customers per second: ties exercise the id tie-break
    return [
        {"id": f"cus_{i:05d}", "object": "customer", "created": base + i // 3, "email": f"c{i}@example.com"}
        for i in range(n)
    ]


@pytest.fixture
def standin():
    with StripeStandIn(now=NOW) as s:
        yield s


# ------------------------------------------------------------------ lists


def test_paging_newest_first_visits_each_object_once(standin):
    objs = customers(250)
    standin.load(objs)
    client = client_for(standin)
    expected = [o["id"] for o in sorted(objs, key=lambda o: (o["created"], o["id"]), reverse=True)]

    seen = [c.id for c in client.v1.customers.list(params={"limit": 7}).auto_paging_iter()]
    assert seen == expected

    # the same by hand, with starting_after
    manual, cursor = [], None
    while True:
        params = {"limit": 100, **({"starting_after": cursor} if cursor else {})}
        page = client.v1.customers.list(params=params)
        manual += [c.id for c in page.data]
        if not page.has_more:
            break
        cursor = page.data[-1].id
    assert manual == expected
    assert len(standin.requests) == 36 + 3  # ceil(250/7) pages, then 3 pages of 100


def test_ending_before_pages_towards_newer(standin):
    objs = customers(30)
    standin.load(objs)
    client = client_for(standin)
    newest_first = [c.id for c in client.v1.customers.list(params={"limit": 100}).data]
    oldest = newest_first[-1]
    page = client.v1.customers.list(params={"limit": 5, "ending_before": oldest})
    # the five right above the cursor, still newest first
    assert [c.id for c in page.data] == newest_first[-6:-1]
    assert page.has_more is True
    top = client.v1.customers.list(params={"limit": 5, "ending_before": newest_first[5]})
    assert [c.id for c in top.data] == newest_first[:5]
    assert top.has_more is False


def test_created_windows_partition_the_objects(standin):
    objs = customers(90)
    standin.load(objs)
    client = client_for(standin)
    base = NOW - 100 * DAY
    windows = [(base, base + 10), (base + 10, base + 20), (base + 20, base + 31)]
    found = []
    for lo, hi in windows:
        params = {"limit": 100, "created": {"gte": lo, "lt": hi}}
        found += [c.id for c in client.v1.customers.list(params=params).auto_paging_iter()]
    assert sorted(found) == sorted(o["id"] for o in objs)

    gt_lte = client.v1.customers.list(params={"limit": 100, "created": {"gt": base, "lte": base + 2}})
    assert sorted(c.id for c in gt_lte.data) == [f"cus_{i:05d}" for i in range(3, 9)]
    exact = client.v1.customers.list(params={"created": base + 1})
    assert [c.id for c in exact.data] == ["cus_00005", "cus_00004", "cus_00003"]


@pytest.mark.parametrize("limit", [0, 101])
def test_limit_out_of_range_is_invalid_request(standin, limit):
    standin.load(customers(3))
    with pytest.raises(stripe.InvalidRequestError) as err:
        client_for(standin).v1.customers.list(params={"limit": limit})
    assert err.value.http_status == 400
    assert err.value.param == "limit"


def test_unknown_cursor_is_invalid_request(standin):
    standin.load(customers(3))
    with pytest.raises(stripe.InvalidRequestError) as err:
        client_for(standin).v1.customers.list(params={"starting_after": "cus_nope"})
    assert err.value.http_status == 400
    assert err.value.code == "resource_missing"


def _sub(sid: str, status: str, customer: str, created: int) -> dict:
    return {
        "id": sid,
        "object": "subscription",
        "status": status,
        "customer": customer,
        "created": created,
        "items": {"object": "list", "data": []},
        "discounts": [],
    }


def test_subscriptions_hide_ended_unless_asked(standin):
    standin.load(
        [
            _sub("sub_a", "active", "cus_1", NOW - 50),
            _sub("sub_b", "canceled", "cus_1", NOW - 40),
            _sub("sub_c", "past_due", "cus_2", NOW - 30),
            _sub("sub_d", "incomplete_expired", "cus_2", NOW - 20),
            _sub("sub_e", "trialing", "cus_1", NOW - 10),
        ]
    )
    client = client_for(standin)

    def ids(**params):
        return [s.id for s in client.v1.subscriptions.list(params=params).data]

    assert ids() == ["sub_e", "sub_c", "sub_a"]
    assert ids(status="all") == ["sub_e", "sub_d", "sub_c", "sub_b", "sub_a"]
    assert ids(status="canceled") == ["sub_b"]
    assert ids(status="ended") == ["sub_d", "sub_b"]
    assert ids(status="all", customer="cus_1") == ["sub_e", "sub_b", "sub_a"]
    with pytest.raises(stripe.InvalidRequestError):
        ids(status="sleeping")


def test_related_filters(standin):
    standin.load(
        [
            {"id": "ch_1", "object": "charge", "created": 1, "customer": "cus_1", "payment_intent": "pi_1"},
            {"id": "ch_2", "object": "charge", "created": 2, "customer": "cus_2", "payment_intent": "pi_2"},
            {"id": "re_1", "object": "refund", "created": 3, "charge": "ch_1"},
            {"id": "re_2", "object": "refund", "created": 4, "charge": "ch_2"},
            {"id": "inpay_1", "object": "invoice_payment", "created": 5, "invoice": "in_1"},
            {"id": "inpay_2", "object": "invoice_payment", "created": 6, "invoice": "in_2"},
            {"id": "in_1", "object": "invoice", "created": 7, "customer": {"id": "cus_1", "object": "customer"}},
        ]
    )
    client = client_for(standin)
    assert [c.id for c in client.v1.charges.list(params={"customer": "cus_2"}).data] == ["ch_2"]
    assert [r.id for r in client.v1.refunds.list(params={"charge": "ch_1"}).data] == ["re_1"]
    assert [p.id for p in client.v1.invoice_payments.list(params={"invoice": "in_2"}).data] == ["inpay_2"]
    # an expanded reference is matched by its id
    assert [i.id for i in client.v1.invoices.list(params={"customer": "cus_1"}).data] == ["in_1"]


# ------------------------------------------------------------------ events


def _event(eid: str, type_: str, created: int) -> dict:
    return {
        "id": eid,
        "object": "event",
        "type": type_,
        "created": created,
        "api_version": "2026-10-28.endive",
        "data": {"object": {"id": "x", "object": type_.rsplit(".", 1)[0].split(".")[-1]}},
    }


def test_events_types_wildcards_and_30_day_retention(standin):
    standin.load_events(
        [
            _event("evt_old", "invoice.paid", NOW - 31 * DAY),
            _event("evt_edge", "invoice.paid", NOW - 30 * DAY),
            _event("evt_1", "invoice.payment_failed", NOW - 5 * DAY),
            _event("evt_2", "charge.succeeded", NOW - 4 * DAY),
            _event("evt_3", "customer.subscription.updated", NOW - 3 * DAY),
            _event("evt_4", "customer.created", NOW - 2 * DAY),
        ]
    )
    client = client_for(standin)

    def ids(**params):
        return [e.id for e in client.v1.events.list(params=params).auto_paging_iter()]

    assert ids() == ["evt_4", "evt_3", "evt_2", "evt_1", "evt_edge"]  # evt_old is past Stripe's 30 days
    assert ids(types=["charge.succeeded", "customer.created"]) == ["evt_4", "evt_2"]
    assert ids(type="invoice.*") == ["evt_1", "evt_edge"]
    assert ids(type="customer.*") == ["evt_4", "evt_3"]
    assert ids(type="charge.succeeded") == ["evt_2"]
    assert ids(created={"gte": NOW - 4 * DAY}) == ["evt_4", "evt_3", "evt_2"]
    # an explicit window cannot reach behind the retention limit
    assert ids(created={"lt": NOW - 29 * DAY}) == ["evt_edge"]
    with pytest.raises(stripe.InvalidRequestError):
        ids(type="invoice.paid", types=["charge.succeeded"])
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.events.retrieve("evt_old")
    assert err.value.http_status == 404

    standin.now = NOW + 2 * DAY  # time passes: the window moves
    assert ids()[-1] == "evt_1"


def test_emit_records_state_and_event(standin):
    client = client_for(standin)
    cust = {"id": "cus_e", "object": "customer", "created": NOW - 10, "email": "a@example.com", "metadata": {}}
    created = standin.emit("customer.created", cust, created=NOW - 10)
    cust["email"] = "b@example.com"  # the caller's dict is not the stored one
    updated = standin.emit("customer.updated", cust, previous_attributes={"email": "a@example.com"}, created=NOW - 10)

    assert created["id"].startswith("evt_") and created["api_version"] == "2026-10-28.endive"
    assert created["data"]["object"]["email"] == "a@example.com"
    assert updated["data"]["previous_attributes"] == {"email": "a@example.com"}
    # same second: the later event lists first
    assert [e.id for e in client.v1.events.list().data] == [updated["id"], created["id"]]
    assert client.v1.customers.retrieve("cus_e").email == "b@example.com"

    standin.emit("customer.deleted", cust, created=NOW - 5)
    assert client.v1.customers.list().data == []
    gone = client.v1.customers.retrieve("cus_e")
    assert gone.to_dict() == {"id": "cus_e", "object": "customer", "deleted": True}


def test_delete_and_missing_objects(standin):
    standin.load(customers(2))
    client = client_for(standin)
    standin.delete("customer", "cus_00000")
    assert [c.id for c in client.v1.customers.list().data] == ["cus_00001"]
    assert client.v1.customers.retrieve("cus_00000").deleted is True
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.retrieve("cus_missing")
    assert err.value.http_status == 404 and err.value.code == "resource_missing"


# ------------------------------------------------------------------ expand


TIERED_PRICE = {
    "id": "price_t",
    "object": "price",
    "created": NOW - 100,
    "billing_scheme": "tiered",
    "tiers_mode": "graduated",
    "tiers": [{"up_to": 5, "unit_amount": 100}, {"up_to": None, "unit_amount": 80}],
}
COUPON = {"id": "FOREVER20", "object": "coupon", "duration": "forever", "percent_off": 20.0}
DISCOUNT = {"id": "di_1", "object": "discount", "end": None, "source": {"type": "coupon", "coupon": COUPON}}
SUBSCRIPTION = {
    "id": "sub_x",
    "object": "subscription",
    "status": "active",
    "customer": "cus_1",
    "created": NOW - 50,
    "discounts": [DISCOUNT],
    "items": {
        "object": "list",
        "data": [{"id": "si_1", "object": "subscription_item", "price": TIERED_PRICE, "discounts": [dict(DISCOUNT, id="di_2")]}],
    },
}


def test_price_tiers_only_when_expanded(standin):
    standin.load([TIERED_PRICE])
    client = client_for(standin)
    assert "tiers" not in client.v1.prices.list().data[0]
    listed = client.v1.prices.list(params={"expand": ["data.tiers"]}).data[0]
    assert [t.up_to for t in listed.tiers] == [5, None]
    assert standin.requests[-1]["query"]["expand"] == ["data.tiers"]
    assert len(client.v1.prices.retrieve("price_t", params={"expand": ["tiers"]}).tiers) == 2


def test_discounts_and_coupons_collapse_like_stripe(standin):
    standin.load([SUBSCRIPTION])
    client = client_for(standin)
    plain = client.v1.subscriptions.list().data[0]
    assert plain.discounts == ["di_1"]
    assert plain["items"].data[0].discounts == ["di_2"]
    assert "tiers" not in plain["items"].data[0].price

    expanded = client.v1.subscriptions.list(params={"expand": ["data.discounts", "data.items.data.discounts"]}).data[0]
    assert expanded.discounts[0].source.coupon == "FOREVER20"  # the coupon inside stays an id
    assert expanded["items"].data[0].discounts[0].id == "di_2"

    deep = client.v1.subscriptions.list(params={"expand": ["data.discounts.source.coupon"]}).data[0]
    assert deep.discounts[0].source.coupon.percent_off == 20.0

    one = client.v1.subscriptions.retrieve("sub_x", params={"expand": ["items.data.price.tiers"]})
    assert len(one["items"].data[0].price.tiers) == 2
    # five levels is one too many, as on Stripe
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.subscriptions.list(params={"expand": ["data.items.data.price.tiers"]})
    assert "4 levels" in str(err.value)


MULTI_CURRENCY_PRICE = {
    "id": "price_m",
    "object": "price",
    "created": NOW - 100,
    "currency": "usd",
    "unit_amount": 1000,
    "currency_options": {"eur": {"unit_amount": 900, "tax_behavior": "exclusive"}, "usd": {"unit_amount": 1000, "tax_behavior": "exclusive"}},
}
RESTRICTED_COUPON = {
    "id": "PRO50",
    "object": "coupon",
    "created": NOW - 100,
    "percent_off": 50.0,
    "applies_to": {"products": ["prod_a"]},
}
AMOUNT_OFF_COUPON = {
    "id": "TEN",
    "object": "coupon",
    "created": NOW - 99,
    "amount_off": 1000,
    "currency": "usd",
    "currency_options": {"eur": {"amount_off": 900}},
}


def test_price_currency_options_only_when_expanded(standin):
    standin.load([MULTI_CURRENCY_PRICE, dict(SUBSCRIPTION, items={"object": "list", "data": [
        {"id": "si_1", "object": "subscription_item", "price": MULTI_CURRENCY_PRICE, "discounts": []}]})])
    client = client_for(standin)
    assert "currency_options" not in client.v1.prices.retrieve("price_m")
    assert client.v1.prices.retrieve("price_m", params={"expand": ["currency_options"]}).currency_options["eur"].unit_amount == 900
    assert client.v1.prices.list(params={"expand": ["data.currency_options"]}).data[0].currency_options["usd"].unit_amount == 1000
    assert "currency_options" not in client.v1.subscriptions.retrieve("sub_x")["items"].data[0].price
    one = client.v1.subscriptions.retrieve("sub_x", params={"expand": ["items.data.price.currency_options"]})
    assert one["items"].data[0].price.currency_options["eur"].unit_amount == 900


def test_coupon_applies_to_and_currency_options_only_when_expanded(standin):
    restricted = dict(DISCOUNT, source={"type": "coupon", "coupon": RESTRICTED_COUPON})
    standin.load([RESTRICTED_COUPON, AMOUNT_OFF_COUPON, dict(SUBSCRIPTION, discounts=[restricted])])
    client = client_for(standin)
    listed = {c.id: c for c in client.v1.coupons.list().data}
    assert "applies_to" not in listed["PRO50"] and "currency_options" not in listed["TEN"]
    listed = {c.id: c for c in client.v1.coupons.list(params={"expand": ["data.applies_to", "data.currency_options"]}).data}
    assert listed["PRO50"].applies_to.products == ["prod_a"]
    assert listed["TEN"].currency_options["eur"].amount_off == 900
    coupon = client.v1.subscriptions.retrieve("sub_x", params={"expand": ["discounts.source.coupon"]}).discounts[0].source.coupon
    assert coupon.percent_off == 50.0 and "applies_to" not in coupon
    scoped = client.v1.subscriptions.retrieve("sub_x", params={"expand": ["discounts.source.coupon.applies_to"]})
    assert scoped.discounts[0].source.coupon.applies_to.products == ["prod_a"]
    standin.emit("coupon.created", RESTRICTED_COUPON, created=NOW - 1)
    event = client.v1.events.list(params={"type": "coupon.created"}).data[0]
    assert event.data.object.id == "PRO50" and "applies_to" not in event.data.object


def test_invoice_payments_and_charge_refunds_only_when_expanded(standin):
    standin.load(
        [
            {"id": "in_1", "object": "invoice", "created": 1, "payments": {"object": "list", "data": [{"id": "inpay_1", "object": "invoice_payment"}]}},
            {"id": "ch_1", "object": "charge", "created": 1, "refunds": {"object": "list", "data": []}},
        ]
    )
    client = client_for(standin)
    assert "payments" not in client.v1.invoices.list().data[0]
    assert client.v1.invoices.list(params={"expand": ["data.payments"]}).data[0].payments.data[0].id == "inpay_1"
    assert "refunds" not in client.v1.charges.retrieve("ch_1")
    assert client.v1.charges.retrieve("ch_1", params={"expand": ["refunds"]}).refunds.data == []


def test_event_payloads_are_collapsed(standin):
    standin.emit("customer.subscription.created", SUBSCRIPTION, created=NOW - 1)
    event = client_for(standin).v1.events.list().data[0]
    assert event.data.object.discounts == ["di_1"]
    # stored state stays fully expanded
    assert standin.get("subscription", "sub_x")["discounts"][0]["source"]["coupon"]["id"] == "FOREVER20"


def test_parse_query_handles_sdk_encodings():
    q = parse_query("limit=3&expand[0]=data.tiers&expand[1]=data.product&types[]=a&types[]=b&created[gte]=5&created[lt]=9")
    assert q == {"limit": "3", "expand": ["data.tiers", "data.product"], "types": ["a", "b"], "created": {"gte": "5", "lt": "9"}}


# ------------------------------------------------------------------ auth, versions, faults


def test_auth_requires_a_secret_or_restricted_key(standin):
    standin.load(customers(1))
    for bad in ("pk_test_x", "nonsense", "sk_"):
        with pytest.raises(stripe.AuthenticationError):
            client_for(standin, bad).v1.customers.list()
    status, _, body = raw_get(standin, "/v1/customers", key=None)
    assert status == 401 and body == {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
    assert len(client_for(standin, "rk_test_readonly").v1.customers.list().data) == 1


def test_custom_key_prefix():
    with StripeStandIn(now=NOW, api_key_prefix="sk_test_") as s:
        with pytest.raises(stripe.AuthenticationError):
            client_for(s, "sk_live_x").v1.customers.list()
        assert client_for(s, "sk_test_x").v1.customers.list().data == []
        assert client_for(s, "rk_test_x").v1.customers.list().data == []


def test_request_log_records_stripe_version(standin):
    client_for(standin).v1.charges.list(params={"limit": 5, "customer": "cus_1"})
    req = standin.requests[-1]
    assert req["method"] == "GET" and req["path"] == "/v1/charges" and req["status"] == 200
    assert req["query"] == {"limit": "5", "customer": "cus_1"}
    assert req["headers"]["Stripe-Version"] == stripe.api_version == "2026-10-28.endive"


def test_date_header_is_the_accounts_clock(standin):
    """Listings are versioned by the Date header; it must be the clock events use."""
    _, headers, _ = raw_get(standin, "/v1/customers")
    assert parsedate_to_datetime(headers["Date"]).timestamp() == NOW
    standin.now = NOW + 3600
    _, headers, _ = raw_get(standin, "/v1/customers")
    assert parsedate_to_datetime(headers["Date"]).timestamp() == NOW + 3600


def test_fail_next_429_is_a_plain_rate_limit_error(standin):
    standin.load(customers(1))
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": standin.base_url}, max_network_retries=2)
    standin.faults.fail_next(1, status=429)
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list()
    # no Stripe-Should-Retry header, so even a retrying SDK gave up at once
    assert [r["status"] for r in standin.requests] == [429]
    assert len(client.v1.customers.list().data) == 1

    standin.faults.fail_next(1, status=429)
    status, headers, body = raw_get(standin, "/v1/customers")
    assert status == 429 and body["error"]["code"] == "rate_limit"
    assert body["error"]["type"] == "invalid_request_error"
    assert "Stripe-Should-Retry" not in headers


def test_fail_next_500_is_an_api_error(standin):
    standin.faults.fail_next(2, status=500)
    client = client_for(standin)
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.customers.list()
    assert client.v1.customers.list().data == []


def test_fail_probability_is_seeded(standin):
    def run() -> list[int]:
        standin.faults.fail_probability(0.3, status=503, seed=42)
        return [raw_get(standin, "/v1/customers")[0] for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert 0 < first.count(503) < 40 and set(first) == {200, 503}
    standin.faults.fail_probability(0)
    assert {raw_get(standin, "/v1/customers")[0] for _ in range(10)} == {200}


def test_fail_paths_targets_one_endpoint(standin):
    standin.faults.fail_paths("/v1/events", 2, status=429)
    assert raw_get(standin, "/v1/customers")[0] == 200
    assert [raw_get(standin, "/v1/events")[0] for _ in range(3)] == [429, 429, 200]


def test_rate_limit_uses_a_sliding_one_second_window(standin):
    clock = [100.0]
    standin.monotonic = lambda: clock[0]  # a fake clock: no sleeping in tests
    standin.rate_limit_per_second = 3
    assert [raw_get(standin, "/v1/customers")[0] for _ in range(5)] == [200, 200, 200, 429, 429]
    clock[0] += 0.5
    assert raw_get(standin, "/v1/customers")[0] == 429
    clock[0] += 0.6  # the first three left the window
    assert [raw_get(standin, "/v1/customers")[0] for _ in range(4)] == [200, 200, 200, 429]
    with pytest.raises(stripe.RateLimitError):
        client_for(standin).v1.customers.list()


def test_concurrent_window_fetches(standin):
    objs = customers(300)
    standin.load(objs)
    standin.faults.fail_probability(0.2, status=429, seed=3)
    base = NOW - 100 * DAY
    results: dict[int, list[str]] = {}
    errors: list[Exception] = []

    def fetch(w: int) -> None:
        client = client_for(standin)
        got: list[str] = []
        cursor = None
        try:
            while True:
                params = {"limit": 10, "created": {"gte": base + w * 25, "lt": base + (w + 1) * 25}}
                if cursor:
                    params["starting_after"] = cursor
                try:
                    page = client.v1.customers.list(params=params)
                except stripe.RateLimitError:
                    continue  # the caller's own retry
                got += [c.id for c in page.data]
                if not page.has_more:
                    break
                cursor = page.data[-1].id
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        results[w] = got

    threads = [threading.Thread(target=fetch, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(i for got in results.values() for i in got) == sorted(o["id"] for o in objs)
    assert standin.faults.injected == sum(r["status"] == 429 for r in standin.requests) > 0


def test_unknown_route_and_stop():
    s = StripeStandIn(now=NOW)
    url = s.start()
    assert raw_get(s, "/v1/nothing")[0] == 404
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": url}, max_network_retries=0)
    client.v1.customers.list()
    s.stop()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.list()
