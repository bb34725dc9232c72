"""What one shard of the trait table adds to the table's summary and checks, in a few kilobytes.

A sharded refresh never holds the whole table in one process: each shard step
summarises its rows (counts, MRR per currency in exact minor units, tiers, its
own top customers by lifetime value and first rows, what the checks count),
the summaries travel through the state store as JSON, and the commit step
merges them. Merging gives exactly what ``traits.summary.summary_metadata``
and the checks give on the whole table: counts and minor-unit sums add up,
the top ``n`` of the union is in the union of the shards' tops, and the
table's first rows are the first shards' first rows (shards are in id order,
as the rows are). Like ``traits.summary``: ids, codes and numbers only, never
emails, names or user ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from s2s_pipeline.core.contract import TIER_NAMES
from s2s_pipeline.traits.summary import PREVIEW_COLUMNS, markdown_preview, summary_from_totals

#: Rows kept per shard for the preview, customers per currency for the top list, ids per failing check.
PREVIEW_ROWS = 10
TOP_N = 10
EXAMPLES = 10


@dataclass
class ShardSummary:
    """The mergeable summary of some rows of the trait table (one shard, or several merged)."""

    rows: int = 0
    paying_customers: int = 0  # at least one captured payment
    customers_with_mrr: int = 0
    delinquent_customers: int = 0
    tiers: dict[str, int] = field(default_factory=dict)  # spend tier -> customers ("" for no tier)
    mrr_minor_by_currency: dict[str, int] = field(default_factory=dict)
    top_by_ltv: dict[str, list[list]] = field(default_factory=dict)  # currency -> [[id, ltv minor], ...]
    head: list[dict] = field(default_factory=list)  # the first rows, PREVIEW_COLUMNS only
    negative_money: int = 0
    negative_money_examples: list[str] = field(default_factory=list)
    refund_rate_out_of_bounds: int = 0
    refund_rate_examples: list[str] = field(default_factory=list)
    invalid_tier: int = 0
    invalid_tier_examples: list[str] = field(default_factory=list)
    without_tier: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> "ShardSummary":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


def _ids(traits: pd.DataFrame, mask) -> tuple[int, list[str]]:
    bad = traits.loc[np.asarray(mask, dtype=bool), "stripe_customer_id"]
    return int(len(bad)), bad.astype(str).head(EXAMPLES).tolist()


def _native(value):
    """A JSON-safe cell: None for missing, Python numbers and strings."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value if isinstance(value, (str, int, bool)) else str(value)


def summarize(traits: pd.DataFrame) -> ShardSummary:
    """The summary of a trait table (``compute_customer_traits`` output) in its row order."""
    tier = traits["spend_tier"]
    counts = tier.value_counts(dropna=False)
    tiers = {("" if pd.isna(name) else str(name)): int(n) for name, n in counts.items()}
    known = traits[traits["currency"].notna()]
    mrr = known.groupby(known["currency"].astype(object))["mrr_minor"].sum()
    paying = traits.loc[traits["currency"].notna() & (traits["lifetime_value_minor"] > 0),
                        ["stripe_customer_id", "currency", "lifetime_value_minor"]]
    ranked = paying.sort_values(["currency", "lifetime_value_minor", "stripe_customer_id"],
                                ascending=[True, False, True], kind="stable")
    top = ranked.groupby("currency", sort=True).head(TOP_N)
    rate = traits["refund_rate"]
    negative = (traits["lifetime_value"].fillna(0) < 0) | (traits["mrr"].fillna(0) < 0)
    out_of_bounds = rate.notna() & ((rate < 0) | (rate > 1))
    invalid = tier.notna() & ~tier.isin(TIER_NAMES)
    columns = [c for c in PREVIEW_COLUMNS if c in traits.columns]
    summary = ShardSummary(
        rows=int(len(traits)),
        paying_customers=int((traits["payment_count"] > 0).sum()),
        customers_with_mrr=int((traits["mrr_minor"] > 0).sum()),
        delinquent_customers=int(traits["payment_delinquent"].sum()),
        tiers=tiers,
        mrr_minor_by_currency={str(cur): int(total) for cur, total in mrr.items()},
        top_by_ltv={str(cur): [[str(i), int(v)] for i, v in zip(g["stripe_customer_id"], g["lifetime_value_minor"])]
                    for cur, g in top.groupby("currency", sort=True)},
        head=[{c: _native(v) for c, v in zip(columns, row)}
              for row in traits[columns].head(PREVIEW_ROWS).itertuples(index=False)],
        without_tier=int(tier.isna().sum()),
    )
    summary.negative_money, summary.negative_money_examples = _ids(traits, negative)
    summary.refund_rate_out_of_bounds, summary.refund_rate_examples = _ids(traits, out_of_bounds.fillna(False))
    summary.invalid_tier, summary.invalid_tier_examples = _ids(traits, invalid)
    return summary


def merge(summaries: list[ShardSummary]) -> ShardSummary:
    """The summary of the shards' rows concatenated in the given order (shards in id order)."""
    out = ShardSummary()
    for s in summaries:
        out.rows += s.rows
        out.paying_customers += s.paying_customers
        out.customers_with_mrr += s.customers_with_mrr
        out.delinquent_customers += s.delinquent_customers
        for tier, n in s.tiers.items():
            out.tiers[tier] = out.tiers.get(tier, 0) + n
        for cur, total in s.mrr_minor_by_currency.items():
            out.mrr_minor_by_currency[cur] = out.mrr_minor_by_currency.get(cur, 0) + int(total)
        for cur, entries in s.top_by_ltv.items():
            out.top_by_ltv.setdefault(cur, []).extend(entries)
        out.head.extend(s.head[:max(0, PREVIEW_ROWS - len(out.head))])
        out.negative_money += s.negative_money
        out.negative_money_examples.extend(s.negative_money_examples)
        out.refund_rate_out_of_bounds += s.refund_rate_out_of_bounds
        out.refund_rate_examples.extend(s.refund_rate_examples)
        out.invalid_tier += s.invalid_tier
        out.invalid_tier_examples.extend(s.invalid_tier_examples)
        out.without_tier += s.without_tier
    # The same order as traits.summary.top_customers_by_ltv: largest first, ties by id (Python's order).
    out.top_by_ltv = {cur: sorted(entries, key=lambda e: (-int(e[1]), str(e[0])))[:TOP_N]
                      for cur, entries in sorted(out.top_by_ltv.items())}
    for name in ("negative_money_examples", "refund_rate_examples", "invalid_tier_examples"):
        setattr(out, name, getattr(out, name)[:EXAMPLES])
    return out


def summary_metadata_of(summary: ShardSummary) -> dict:
    """``traits.summary.summary_metadata`` of the rows the summary stands for."""
    totals = {"paying_customers": summary.paying_customers, "customers_with_mrr": summary.customers_with_mrr,
              "delinquent_customers": summary.delinquent_customers,
              "mrr_minor_by_currency": summary.mrr_minor_by_currency,
              "tiers": {(tier or None): n for tier, n in summary.tiers.items()}}
    plotted = summary_from_totals(totals)
    head = pd.DataFrame(summary.head, columns=[c for c in PREVIEW_COLUMNS]) if summary.head else \
        pd.DataFrame(columns=list(PREVIEW_COLUMNS))
    return {
        "customers": summary.rows,
        "paying_customers": plotted["paying_customers"],
        "customers_with_mrr": plotted["customers_with_mrr"],
        "delinquent_customers": plotted["delinquent_customers"],
        "tier_distribution": plotted["tier_distribution"],
        "mrr_by_currency": plotted["mrr_by_currency"],
        "top_customers_by_ltv": {cur: [str(e[0]) for e in entries] for cur, entries in summary.top_by_ltv.items()},
        "preview": markdown_preview(head, PREVIEW_ROWS),
    }
