"""What ``MirrorContext`` reads for event MRR beyond single rows: the customer's own discounts and
the subscription's invoices that can show Stripe Tax's share (SQLite and Postgres)."""

from __future__ import annotations

from s2s_pipeline.segment.context import MirrorContext
from s2s_pipeline.stripe.normalize import to_rows
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline_tests.segment.mirror_world import without_includable
from s2s_pipeline_tests.traits.builders import DAY, NOW
from s2s_pipeline_tests.traits.stripe_objects import coupon, customer, discount, invoice, price, subscription


def test_customer_discounts_are_only_those_on_the_customer_itself(state_store):
    co = coupon("co_20", percent_off=20.0)
    sub = subscription("sub_1", "cus_1", [(price("p", 1000), 1)],
                       discounts=[discount("di_sub", co, "cus_1", subscription="sub_1")])
    for obj in (co, without_includable(customer("cus_1", discount_obj=discount("di_cust", co, "cus_1"))),
                without_includable(sub), without_includable(customer("cus_2"))):
        state_store.mirror.apply(to_rows(obj, NOW))
    ctx = MirrorContext(state_store.mirror, None, TraitsConfig(), NOW)
    assert [(d["id"], d["coupon"], d["subscription"]) for d in ctx.customer_discounts("cus_1")] == [
        ("di_cust", "co_20", None)]
    assert ctx.customer_discounts("cus_2") == []
    # answers are copies: a caller changing one does not change the next answer
    ctx.customer_discounts("cus_1")[0]["coupon"] = "changed"
    assert ctx.customer_discounts("cus_1")[0]["coupon"] == "co_20"


def test_subscription_invoices_are_its_paid_and_open_ones_oldest_first(state_store):
    objs = [invoice("in_new", "cus_1", "sub_1", 1190, 1000, created=NOW - DAY),
            invoice("in_old", "cus_1", "sub_1", 1190, 1100, created=NOW - 40 * DAY),
            invoice("in_open", "cus_1", "sub_1", 1190, 1000, status="open", created=NOW),
            invoice("in_draft", "cus_1", "sub_1", 1190, 1000, status="draft", created=NOW),
            invoice("in_void", "cus_1", "sub_1", 1190, 1000, status="void", created=NOW),
            invoice("in_other", "cus_1", "sub_2", 1190, 1000, created=NOW)]
    for obj in objs:
        state_store.mirror.apply(to_rows(obj, NOW))
    ctx = MirrorContext(state_store.mirror, None, TraitsConfig(), NOW)
    rows = ctx.subscription_invoices("sub_1")
    assert [r["id"] for r in rows] == ["in_old", "in_new", "in_open"]
    assert (rows[1]["total"], rows[1]["total_excluding_tax"], rows[1]["subscription"]) == (1190, 1000, "sub_1")
    assert "raw" not in rows[0]
