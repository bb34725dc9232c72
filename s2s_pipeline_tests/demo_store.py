"""A state store holding a demo account after its first change-feed run (a full sync from the Stripe stand-in)."""

from __future__ import annotations

from s2s_devtools.demo.generator import DemoAccount, generate_account, seed_standin
from s2s_devtools.fakes.stripe import StripeStandIn

from s2s_pipeline.extract.change_feed import sync_changes
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.client import StripeReader
from s2s_pipeline.stripe.settings import StripeSettings


def sync_demo_account(url: str, customers: int, seed: int) -> DemoAccount:
    """Sync a generated demo account of ``customers`` customers into the store at ``url``; the account
    (its ``now`` is the Stripe clock of the sync)."""
    account = generate_account(customers=customers, seed=seed)
    store = StateStore.from_url(url)
    try:
        with StripeStandIn() as standin:
            seed_standin(standin, account, copy=True)
            reader = StripeReader(StripeSettings(api_key="sk_test_x", api_base=standin.base_url, rate_limit=1000))
            sync_changes(reader, store, clock=lambda: standin.now)
    finally:
        store.dispose()
    return account
