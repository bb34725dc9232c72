"""Summaries of a trait table for asset metadata (counts, distributions, a preview).

Nothing here outputs personal data: previews and top lists carry Stripe ids,
currency codes, tiers and numbers, never emails, names or user ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from s2s_pipeline.core.contract import TIER_NAMES
from s2s_pipeline.traits.money import minor_to_major

#: Columns shown in the markdown preview (ids, codes and numbers only).
PREVIEW_COLUMNS: tuple[str, ...] = ("stripe_customer_id", "currency", "lifetime_value", "mrr", "spend_tier",
                                    "refund_rate", "payment_count")

#: Key used for customers without a tier (a currency without thresholds).
NO_TIER = "unknown"


def tier_distribution(traits: pd.DataFrame) -> dict[str, int]:
    """Customers per ``spend_tier`` (every tier listed, even at 0; nulls under ``"unknown"``)."""
    counts = traits["spend_tier"].value_counts(dropna=False)
    out = {tier: int(counts.get(tier, 0)) for tier in TIER_NAMES}
    missing = int(traits["spend_tier"].isna().sum())
    if missing:
        out[NO_TIER] = missing
    return out


def mrr_by_currency(traits: pd.DataFrame) -> dict[str, float]:
    """Total MRR per currency in major units (summed exactly in minor units, then converted by the one rule)."""
    known = traits[traits["currency"].notna()]
    totals = known.groupby(known["currency"].astype(object))["mrr_minor"].sum()
    majors = minor_to_major(totals.to_numpy(dtype=np.int64), totals.index.to_numpy(dtype=object))
    return {str(cur): float(value) for cur, value in zip(totals.index, majors)}


def _cell(column: str, value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}" if column == "refund_rate" else f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown_preview(traits: pd.DataFrame, limit: int = 10) -> str:
    """A markdown table of the first ``limit`` customers, ids and numbers only."""
    columns = [c for c in PREVIEW_COLUMNS if c in traits.columns]
    head = traits[columns].head(limit)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in head.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(c, v) for c, v in zip(columns, row)) + " |")
    return "\n".join(lines)


def top_customers_by_ltv(traits: pd.DataFrame, n: int = 10) -> dict[str, list[str]]:
    """Per currency, the ids of the ``n`` customers with the highest lifetime value (largest first).

    Per currency because amounts in different currencies are not comparable.
    Ties are broken by customer id so the list is stable.
    """
    paying = traits.loc[traits["currency"].notna() & (traits["lifetime_value_minor"] > 0),
                        ["stripe_customer_id", "currency", "lifetime_value_minor"]]
    ranked = paying.sort_values(["currency", "lifetime_value_minor", "stripe_customer_id"],
                                ascending=[True, False, True], kind="stable")
    top = ranked.groupby("currency", sort=True).head(n)
    return {str(cur): group["stripe_customer_id"].astype(str).tolist()
            for cur, group in top.groupby("currency", sort=True)}


def summary_metadata(traits: pd.DataFrame, preview_rows: int = 10, top_n: int = 10) -> dict:
    """Everything above in one JSON-serializable dict, for ``MaterializeResult(metadata=...)``."""
    return {
        "customers": int(len(traits)),
        # customers with at least one payment (captured money); not the ``paying_customer`` trait,
        # which is ``customers_with_mrr`` (mrr > 0)
        "paying_customers": int((traits["payment_count"] > 0).sum()),
        "customers_with_mrr": int((traits["mrr_minor"] > 0).sum()),
        "delinquent_customers": int(traits["payment_delinquent"].sum()),
        "tier_distribution": tier_distribution(traits),
        "mrr_by_currency": mrr_by_currency(traits),
        "top_customers_by_ltv": top_customers_by_ltv(traits, top_n),
        "preview": markdown_preview(traits, preview_rows),
    }


def summary_from_totals(totals: dict) -> dict:
    """The plotted numbers of :func:`summary_metadata` from the store's SQL totals (``TraitRows.totals``).

    An incremental run recomputes a few customers only; the table-wide figures come from the
    stored table, aggregated in SQL, so the Plots tab keeps one point per run.
    """
    by_minor = totals["mrr_minor_by_currency"]
    currencies = sorted(by_minor)
    majors = minor_to_major(np.array([by_minor[c] for c in currencies], dtype=np.int64),
                            np.array(currencies, dtype=object)) if currencies else []
    tiers = {tier: int(totals["tiers"].get(tier, 0)) for tier in TIER_NAMES}
    if totals["tiers"].get(None):
        tiers[NO_TIER] = int(totals["tiers"][None])
    return {
        "paying_customers": totals["paying_customers"],
        "customers_with_mrr": totals["customers_with_mrr"],
        "delinquent_customers": totals["delinquent_customers"],
        "tier_distribution": tiers,
        "mrr_by_currency": {cur: float(value) for cur, value in zip(currencies, majors)},
    }
