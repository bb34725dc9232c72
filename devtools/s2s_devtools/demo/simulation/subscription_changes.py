"""Changes to a running subscription: upgrades, downgrades and seat changes, discounts ending, cancellation."""

from __future__ import annotations

from .catalogue import DOWNGRADES, UPGRADES, Catalogue
from .recording import AccountRecorder, SimulationPart
from .scripts import CustomerRun


class SubscriptionChanges(SimulationPart):
    """Edits a subscription in place and emits ``customer.subscription.updated`` / ``.deleted`` for each change."""

    def __init__(self, rec: AccountRecorder, catalogue: Catalogue):
        super().__init__(rec)
        self.catalogue = catalogue

    def change_items(self, ctx: CustomerRun, kind: str, when: int) -> None:
        """An upgrade, downgrade or seat change of the main item (nothing happens when there is nothing to change)."""
        sub = ctx.sub
        main = sub["items"]["data"][0]
        family = main["price"]["lookup_key"].rsplit("_", 1)[0]
        cur = sub["currency"]
        old_items = self.snap(sub["items"])
        if kind == "upgrade" and (UPGRADES.get(family), cur) in self.catalogue.prices:
            new_price = self.catalogue.prices[(UPGRADES[family], cur)]
        elif kind == "downgrade" and (DOWNGRADES.get(family), cur) in self.catalogue.prices:
            new_price = self.catalogue.prices[(DOWNGRADES[family], cur)]
            main["quantity"] = 1
        else:
            new_price = None
            q = main.get("quantity") or 1
            if kind in ("seats_down", "downgrade"):
                if q == 1:
                    return  # nothing to take away
                main["quantity"] = max(1, q - self.rng.randint(1, max(1, q // 2)))
            else:
                main["quantity"] = q + self.rng.randint(1, 5)
        if new_price is not None:
            embedded, plan = self.catalogue.embedded[new_price["id"]]
            main["price"], main["plan"] = embedded, plan
        self.emit("customer.subscription.updated", sub, when, {"items": old_items}, api=True)

    def schedule_cancellation(self, ctx: CustomerRun, kind: str, when: int, period_end: int) -> None:
        """The customer asks at ``when`` for the subscription to end at ``period_end``.

        ``period_end`` sets ``cancel_at_period_end`` (and Stripe fills in
        ``cancel_at``); ``cancel_at`` sets only ``cancel_at`` (as the update
        parameter ``cancel_at=min_period_end`` does), leaving the flag false.
        """
        sub = ctx.sub
        before = {
            "cancel_at": sub["cancel_at"],
            "canceled_at": sub["canceled_at"],
            "cancellation_details": self.snap(sub["cancellation_details"]),
        }
        if kind == "period_end":
            before["cancel_at_period_end"] = sub["cancel_at_period_end"]
            sub["cancel_at_period_end"] = True
        sub["cancel_at"] = period_end
        sub["canceled_at"] = when
        sub["cancellation_details"] = {
            "comment": None,
            "feedback": self.rng.choice(["too_expensive", "switched_service", "unused", "missing_features"]),
            "reason": "cancellation_requested",
        }
        self.emit("customer.subscription.updated", sub, when, before, api=True)

    def withdraw_cancellation(self, ctx: CustomerRun, when: int) -> None:
        """The customer withdraws a scheduled cancellation at ``when``: the subscription renews again."""
        sub = ctx.sub
        before: dict = {
            "cancel_at": sub["cancel_at"],
            "canceled_at": sub["canceled_at"],
            "cancellation_details": self.snap(sub["cancellation_details"]),
        }
        if sub["cancel_at_period_end"]:
            before["cancel_at_period_end"] = True
        sub["cancel_at"] = None
        sub["cancel_at_period_end"] = False
        sub["canceled_at"] = None
        sub["cancellation_details"] = {"comment": None, "feedback": None, "reason": None}
        self.emit("customer.subscription.updated", sub, when, before, api=True)

    def cancel(self, ctx: CustomerRun, when: int, canceled_at: int | None, reason: str | None, api: bool) -> None:
        """The subscription ends at ``when`` (``api``: the customer asked; otherwise Stripe ended it)."""
        sub = ctx.sub
        sub["status"] = "canceled"
        sub["ended_at"] = when
        sub["canceled_at"] = canceled_at if canceled_at is not None else when
        details = dict(sub["cancellation_details"])
        if reason and details.get("reason") is None:
            details["reason"] = reason
            if reason == "cancellation_requested" and details.get("feedback") is None:
                details["feedback"] = self.rng.choice(["too_expensive", "unused", "other"])
        sub["cancellation_details"] = details
        self.emit("customer.subscription.deleted", sub, when, api=api)

    def expire_discounts(self, ctx: CustomerRun, until: int) -> None:
        """Repeating discounts end (Stripe removes them at ``end``)."""
        sub = ctx.sub
        ended = [d for d in sub["discounts"] if d["end"] is not None and d["end"] <= until]
        if ended:
            before = {"discounts": [d["id"] for d in sub["discounts"]]}
            sub["discounts"] = [d for d in sub["discounts"] if d not in ended]
            self.emit("customer.subscription.updated", sub, max(d["end"] for d in ended), before)
        for it in sub["items"]["data"]:
            ended = [d for d in it["discounts"] if d["end"] is not None and d["end"] <= until]
            if ended:
                before = {"items": self.snap(sub["items"])}
                it["discounts"] = [d for d in it["discounts"] if d not in ended]
                self.emit("customer.subscription.updated", sub, max(d["end"] for d in ended), before)

    def drop_once_discounts(self, ctx: CustomerRun, when: int) -> None:
        """A ``once`` coupon is used up by the first paid invoice."""
        sub = ctx.sub
        if any(d["source"]["coupon"]["duration"] == "once" for d in sub["discounts"]):
            before = {"discounts": [d["id"] for d in sub["discounts"]]}
            sub["discounts"] = [d for d in sub["discounts"] if d["source"]["coupon"]["duration"] != "once"]
            self.emit("customer.subscription.updated", sub, when, before)
