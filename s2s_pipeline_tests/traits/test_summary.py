"""Asset-metadata summaries of the trait table."""

from __future__ import annotations

import json

from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.summary import (
    markdown_preview,
    mrr_by_currency,
    summary_metadata,
    tier_distribution,
    top_customers_by_ltv,
)
from s2s_pipeline_tests.traits.builders import NOW, Mirror
from s2s_pipeline_tests.traits.test_mrr import worked_example


def table():
    m = worked_example()
    m.customer("cus_sek", currency="sek", email="secret@example.com", name="Secret Name")
    m.charge("cus_1", 250000).charge("cus_2", 10000).charge("cus_3", 10000).charge("cus_sek", 100, currency="sek")
    m.charge("cus_6", 5000, currency="eur")
    return compute_customer_traits(m.frames(), TraitsConfig(), NOW)


def test_tier_distribution_lists_every_tier():
    assert tier_distribution(table()) == {"none": 4, "low": 1, "medium": 2, "high": 1, "vip": 0, "unknown": 1}


def test_mrr_by_currency_in_major_units():
    assert mrr_by_currency(table()) == {"eur": 200.0, "sek": 0.0, "usd": 403.33}


def test_top_customers_per_currency_ids_only():
    top = top_customers_by_ltv(table(), n=2)
    assert top == {"eur": ["cus_6"], "sek": ["cus_sek"], "usd": ["cus_1", "cus_2"]}


def test_preview_has_no_personal_data():
    preview = markdown_preview(table(), limit=20)
    lines = preview.splitlines()
    assert lines[0] == ("| stripe_customer_id | currency | lifetime_value | mrr | spend_tier | refund_rate "
                        "| payment_count |")
    assert "| cus_1 | usd | 2500.00 | 100.00 | high | 0.0000 | 1 |" in lines
    assert len(lines) == 2 + 9
    assert "@" not in preview and "Secret" not in preview and "Name of" not in preview


def test_summary_metadata_is_json_serializable():
    meta = summary_metadata(table())
    json.dumps(meta)
    assert meta["customers"] == 9
    assert meta["paying_customers"] == 5
    assert meta["customers_with_mrr"] == 6
    assert meta["delinquent_customers"] == 1  # cus_3 is past_due


def test_summaries_of_an_empty_table():
    empty = compute_customer_traits(Mirror().frames(), TraitsConfig(), NOW)
    assert tier_distribution(empty) == {"none": 0, "low": 0, "medium": 0, "high": 0, "vip": 0}
    assert mrr_by_currency(empty) == {}
    assert top_customers_by_ltv(empty) == {}
    json.dumps(summary_metadata(empty))


def test_the_stored_tables_sql_totals_give_the_same_plotted_numbers_as_the_table_in_memory(state_store):
    """Incremental runs plot from SQL aggregates: they must match a full run's in-memory summary."""
    from s2s_pipeline.traits.summary import summary_from_totals

    traits = table()
    state_store.traits.write(traits)
    in_memory = summary_metadata(traits)
    from_sql = summary_from_totals(state_store.trait_rows.totals())
    for key in ("paying_customers", "customers_with_mrr", "delinquent_customers", "tier_distribution",
                "mrr_by_currency"):
        assert from_sql[key] == in_memory[key], key
    # the worked example: USD 403.33 (40,333.33 cents rounded once, REFERENCE A.4) and EUR 200.00
    assert from_sql["mrr_by_currency"]["usd"] == 403.33 and from_sql["mrr_by_currency"]["eur"] == 200.0
