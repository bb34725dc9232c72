"""A day of account activity after the first sync, so the demo shows the change feed at work."""

from __future__ import annotations

import copy
import time

from s2s_devtools.demo.generator import DemoAccount


def _active_per_unit_subscription(account: DemoAccount) -> dict | None:
    for sub in account.of_type("subscription"):
        items = sub.get("items", {}).get("data", [])
        if sub.get("status") == "active" and not sub.get("cancel_at_period_end") and len(items) == 1:
            price = items[0].get("price") or {}
            if price.get("billing_scheme") == "per_unit" and (items[0].get("quantity") or 0) >= 1:
                return sub
    return None


def simulate_changes(standin, account: DemoAccount, at: int | None = None) -> list[str]:
    """Apply realistic changes to the stand-in as Stripe would (objects + events).

    Returns one line per change, naming Stripe ids only.
    """
    at = int(at if at is not None else time.time()) + 1
    done: list[str] = []
    sub = _active_per_unit_subscription(account)
    if sub is not None:
        updated = copy.deepcopy(sub)
        item = updated["items"]["data"][0]
        previous_items = copy.deepcopy(updated["items"])
        item["quantity"] = int(item["quantity"]) + 2
        standin.emit("customer.subscription.updated", updated, created=at,
                     previous_attributes={"items": previous_items})
        done.append(f"subscription {sub['id']} (customer {sub['customer']}): seats "
                    f"{previous_items['data'][0]['quantity']} -> {item['quantity']}")
    customers = [c for c in account.of_type("customer") if not c.get("deleted")]
    if customers:
        changed = copy.deepcopy(customers[-1])
        previous = {"metadata": dict(changed.get("metadata") or {})}
        changed.setdefault("metadata", {})["segment_user_id"] = f"user_{changed['id'][-8:].lower()}"
        standin.emit("customer.updated", changed, created=at + 1, previous_attributes=previous)
        done.append(f"customer {changed['id']}: segment_user_id added to metadata")
    paid = [i for i in account.of_type("invoice") if i.get("status") == "paid" and i.get("customer")]
    if paid:
        invoice = copy.deepcopy(paid[-1])
        previous = {"status": invoice["status"], "attempt_count": invoice.get("attempt_count")}
        invoice.update(status="open", attempt_count=int(invoice.get("attempt_count") or 0) + 1, amount_paid=0,
                       amount_remaining=invoice.get("amount_due"), next_payment_attempt=at + 3 * 86400)
        standin.emit("invoice.payment_failed", invoice, created=at + 2, previous_attributes=previous)
        done.append(f"invoice {invoice['id']} (customer {invoice['customer']}): payment failed")
    # only captured money can be refunded (an authorization is released instead)
    refundable = [c for c in account.of_type("charge")
                  if c.get("status") == "succeeded" and c.get("captured", True) and not c.get("amount_refunded")
                  and c.get("customer")]
    if refundable:
        charge = copy.deepcopy(refundable[0])
        amount = max(1, int(charge.get("amount_captured", charge["amount"])) // 2)
        refund = {"id": f"re_demo{charge['id'][-10:]}", "object": "refund", "amount": amount,
                  "charge": charge["id"], "currency": charge["currency"], "status": "succeeded",
                  "reason": "requested_by_customer", "created": at + 3, "payment_intent": charge.get("payment_intent")}
        standin.emit("refund.created", refund, created=at + 3)
        charge["amount_refunded"] = amount
        standin.emit("charge.refunded", charge, created=at + 3, previous_attributes={"amount_refunded": 0})
        done.append(f"charge {charge['id']} (customer {charge['customer']}): partly refunded ({refund['id']})")
    return done
