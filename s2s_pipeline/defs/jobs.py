"""Jobs and schedules named in the public contract."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from s2s_pipeline.defs.partitions import stripe_daily_partitions
from s2s_pipeline.defs.stripe_assets import MIRROR_SPECS, stripe_change_feed

stripe_backfill = define_asset_job(
    "stripe_backfill",
    selection=AssetSelection.assets(*[s.key for s in MIRROR_SPECS]),
    partitions_def=stripe_daily_partitions,
    description="Lists Stripe objects created in a date range into the mirror. Launch a backfill over "
    "a range of days: the whole range runs as one run.",
)

NIGHTLY_ASSETS = AssetSelection.assets(stripe_change_feed).downstream().required_multi_asset_neighbors() - (
    AssetSelection.assets(*[s.key for s in MIRROR_SPECS])
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
