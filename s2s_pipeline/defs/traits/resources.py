"""Rules for computing traits, bound under the resource key ``trait_rules``.

Defaults follow the public contract (docs/traits.md); every rule is resource
config, editable in the launchpad. Imports nothing else from ``defs``.
"""

from typing import Optional

from dagster import ConfigurableResource, Definitions, Failure, definitions
from pydantic import Field, field_validator

from s2s_pipeline.traits.config import TraitsConfig, default_tier_thresholds


class TraitRulesResource(ConfigurableResource):
    """Rules for computing traits; defaults follow the public contract (docs/traits.md)."""

    tier_thresholds: Optional[dict[str, list[float]]] = Field(
        default=None,
        description="Per currency: minimum lifetime value (major units) for medium, high, vip. "
        "Default: 100/1,000/10,000 for usd, eur, gbp, chf, cad, aud; jpy 100x. Replaces the defaults when set.",
    )
    mrr_coupon_rule: str = Field(
        default="forever_only",
        description="'forever_only' (Stripe's default) or 'all_in_effect' (repeating coupons count until their end).",
    )
    identity_metadata_keys: list[str] = Field(
        default=["segment_user_id", "user_id"], description="Customer metadata keys tried in order for the userId."
    )
    company_id_key: str = Field(default="company_id", description="Customer metadata key of the B2B group id.")
    company_name_key: str = Field(default="company_name", description="Customer metadata key of the company name.")

    @field_validator("tier_thresholds")
    @classmethod
    def _three_increasing_minimums(cls, thresholds: Optional[dict[str, list[float]]]):
        for currency, minimums in (thresholds or {}).items():
            values = list(minimums)
            if len(values) != 3 or values[0] <= 0 or not values[0] < values[1] < values[2]:
                raise ValueError(f"tier_thresholds[{currency!r}] must be three strictly increasing positive "
                                 f"minimums (medium, high, vip) in major units, got {values}")
        return thresholds

    def config(self) -> TraitsConfig:
        thresholds = (
            {k.lower(): tuple(v) for k, v in self.tier_thresholds.items()}
            if self.tier_thresholds is not None
            else default_tier_thresholds()
        )
        try:
            return TraitsConfig(
                tier_thresholds=thresholds,
                mrr_coupon_rule=self.mrr_coupon_rule,
                identity_metadata_keys=tuple(self.identity_metadata_keys),
                company_id_key=self.company_id_key,
                company_name_key=self.company_name_key,
            )
        except ValueError as exc:
            raise Failure(description=f"trait_rules resource config is invalid: {exc}") from exc


@definitions
def resources() -> Definitions:
    """The contract's default trait rules."""
    return Definitions(resources={"trait_rules": TraitRulesResource()})
