"""A day of account activity after the first sync, so the demo shows the change feed at work."""

from __future__ import annotations

import copy
import time

from s2s_pipeline.demo.generator import DemoAccount


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
    return done
