"""Contract v2's billing setups in the demo account, mirrored through the real change-feed path.

The demo generator's scripted customers 28-33 (devtools/s2s_devtools/demo/simulation/scripts.py) are
built in the pinned API's shapes by the stand-in; the expected traits below were worked out by hand
from the contract's rules (docs/traits.md), independently of the trait code.
"""

import pandas as pd
import pytest

from s2s_devtools.demo.generator import generate_account, seed_standin
from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.traits.config import TraitsConfig
from s2s_pipeline.traits.customer_traits import compute_customer_traits
from s2s_pipeline.traits.loading import load_mirror_frames

NOW = 1_790_000_000

EXPECTED = {
    # DE customer, EUR 53.55 tax-inclusive price x 2 with a 19 % inclusive VAT rate in default_tax_rates:
    # 2 x 53.55 = 107.10; tax = 107.10 x 19/119 = 17.10; mrr = 107.10 - 17.10 = 90.00.
    # lifetime_value: 5 paid invoices x 107.10 (money paid includes tax) = 535.50;
    # gaps between the 5 charges 31.08, 30, 31, 31 days -> median (31 + 31) / 2 = 31.0.
    "cus_sL28ewRiTBOWBq": {"currency": "eur", "mrr": 90.0, "lifetime_value": 535.5, "payment_count": 5,
                           "payment_frequency_days": 31.0, "paying_customer": True, "spend_tier": "medium"},
    # Manual capture: 100.00 authorized, 60.00 captured; a 50.00 authorization expired (never captured).
    # lifetime_value = 60.00 - 0 refunded after capture = 60.00; refund_rate = 0 / 6000 = 0.0;
    # payment_count 1 (the expired authorization is no payment); one payment -> no frequency.
    "cus_44KyqmK1CdcCDc": {"currency": "usd", "mrr": 0.0, "lifetime_value": 60.0, "refund_rate": 0.0,
                           "payment_count": 1, "payment_frequency_days": None, "paying_customer": False,
                           "spend_tier": "low"},
    # EUR subscription on a USD 10.00 price whose currency_options.eur.unit_amount is 900 -> mrr 9.00 EUR;
    # 4 charges x 9.00 = 36.00.
    "cus_DwAzSrbctif6me": {"currency": "eur", "mrr": 9.0, "lifetime_value": 36.0, "payment_count": 4},
    # 50 % forever coupon with applies_to.products = [Pro]; items Pro 49.00 x 2 and Priority Support 99.00:
    # 98.00 x 0.5 + 99.00 = 148.00 (discounting every item would give 197 x 0.5 = 98.50).
    "cus_IAmOhIKI8AcYBi": {"currency": "usd", "mrr": 148.0, "plan": "Priority Support Monthly"},
    # cancel_at_period_end set and withdrawn the next day: renews again, mrr 49.00; 6 x 49.00 = 294.00.
    "cus_z1ylTheYlAvjtE": {"mrr": 49.0, "lifetime_value": 294.0, "cancel_at_period_end": False,
                           "subscription_status": "active"},
    # cancel_at set (still pending): any scheduled cancellation leaves MRR -> 0; 5 x 19.00 = 95.00 (low).
    "cus_qgGzlU0cu8JQjC": {"mrr": 0.0, "lifetime_value": 95.0, "paying_customer": False, "spend_tier": "low",
                           "next_billing_date": None},
}


@pytest.fixture(scope="module")
def traits(tmp_path_factory):
    from s2s_devtools.fakes.stripe import StripeStandIn
    from s2s_pipeline.store.state_store import StateStore
    from s2s_pipeline.stripe.client import StripeReader
    from s2s_pipeline.stripe.settings import StripeSettings

    account = generate_account(customers=300, seed=7, now=NOW)
    with StripeStandIn() as standin:
        seed_standin(standin, account)
        store = StateStore.from_url(f"sqlite:///{tmp_path_factory.mktemp('v2') / 'state.db'}")
        reader = StripeReader(StripeSettings(api_key="sk_test_demo", api_base=standin.base_url, rate_limit=1000))
        sync_changes(reader, store)
        table = compute_customer_traits(load_mirror_frames(store.mirror), TraitsConfig(), NOW)
    return table.set_index("stripe_customer_id")


@pytest.mark.parametrize("customer", sorted(EXPECTED))
def test_demo_billing_setups_give_the_contract_v2_traits(traits, customer):
    row = traits.loc[customer]
    got = {k: (None if pd.isna(row[k]) else row[k]) for k in EXPECTED[customer]}
    assert got == EXPECTED[customer]
