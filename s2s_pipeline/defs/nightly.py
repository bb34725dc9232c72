"""The nightly job and its schedule, named in the public contract.

They span every domain (Stripe changes, traits, Segment), so they sit at the
top of ``defs/`` and select by asset key: nothing here imports a domain's assets.
"""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from s2s_pipeline.defs.stripe.assets import CHANGE_FEED_KEY, MIRROR_KEYS

NIGHTLY_ASSETS = AssetSelection.assets(CHANGE_FEED_KEY).downstream().required_multi_asset_neighbors() - (
    AssetSelection.assets(*MIRROR_KEYS)
)

nightly_trait_refresh = define_asset_job(
    "nightly_trait_refresh",
    selection=NIGHTLY_ASSETS,
    description="Applies Stripe changes since the last run (a full sync on the first run), recomputes "
    "customer traits, and sends Segment the changes.",
)

nightly_trait_refresh_schedule = ScheduleDefinition(
    name="nightly_trait_refresh_schedule",
    job=nightly_trait_refresh,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Runs nightly_trait_refresh at 02:00 UTC every day.",
)
