"""Rules of the trait computation that users may change (documented in docs/traits.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: Minimum lifetime value (major units) of the tiers ``medium``, ``high``, ``vip``.
#: ``none`` is a lifetime value of 0 (or less), ``low`` anything above 0.
DEFAULT_TIER_MINIMUMS: tuple[float, float, float] = (100.0, 1_000.0, 10_000.0)



def default_tier_thresholds() -> dict[str, tuple[float, float, float]]:
    """The contract's defaults: 100 / 1,000 / 10,000 in usd, eur, gbp, chf, cad, aud; jpy 100x."""
    thresholds = {cur: DEFAULT_TIER_MINIMUMS for cur in ("usd", "eur", "gbp", "chf", "cad", "aud")}
    thresholds["jpy"] = tuple(100 * v for v in DEFAULT_TIER_MINIMUMS)
    return thresholds


MrrCouponRule = Literal["forever_only", "all_in_effect"]


@dataclass(frozen=True)
class TraitsConfig:
    """Configurable trait rules. Every field has the contract's default.

    - ``tier_thresholds``: per lowercase currency, the minimum lifetime value in
      MAJOR units of the tiers (``medium``, ``high``, ``vip``); ``low`` is any
      value above 0 and ``none`` is 0. A currency without an entry gets a null
      ``spend_tier`` (a customer with no currency at all has no money, so ``none``).
    - ``mrr_coupon_rule``: ``"forever_only"`` (Stripe's default: only ``forever``
      coupons lower MRR) or ``"all_in_effect"`` (every coupon whose discount is
      in effect at ``now``: ``repeating`` ones until their discount ``end``,
      ``once`` ones while still attached).
    - ``identity_metadata_keys``: customer metadata keys tried in order for ``user_id``.
    - ``company_id_key`` / ``company_name_key``: customer metadata keys for the B2B group.
    """

    tier_thresholds: dict[str, tuple[float, float, float]] = field(default_factory=default_tier_thresholds)
    mrr_coupon_rule: MrrCouponRule = "forever_only"
    identity_metadata_keys: tuple[str, ...] = ("segment_user_id", "user_id")
    company_id_key: str = "company_id"
    company_name_key: str = "company_name"

    def __post_init__(self) -> None:
        if self.mrr_coupon_rule not in ("forever_only", "all_in_effect"):
            raise ValueError(f"mrr_coupon_rule must be 'forever_only' or 'all_in_effect', not {self.mrr_coupon_rule!r}")
        for currency, minimums in self.tier_thresholds.items():
            values = tuple(minimums)
            if len(values) != 3 or any(v <= 0 for v in values) or list(values) != sorted(values):
                raise ValueError(f"tier_thresholds[{currency!r}] must be three increasing positive minimums "
                                 f"(medium, high, vip) in major units, got {minimums!r}")
        if isinstance(self.identity_metadata_keys, str):
            raise ValueError("identity_metadata_keys must be a sequence of keys, not one string")

    def thresholds_for(self, currency: str | None) -> tuple[float, float, float] | None:
        """The tier minimums of a currency (case-insensitive), or None."""
        if currency is None:
            return None
        return self.tier_thresholds.get(str(currency).lower())
