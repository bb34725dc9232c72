"""The backfill job named in the public contract."""

from dagster import AssetSelection, define_asset_job

from s2s_pipeline.defs.stripe.assets import MIRROR_KEYS
from s2s_pipeline.defs.stripe.partitions import stripe_daily_partitions

stripe_backfill = define_asset_job(
    "stripe_backfill",
    selection=AssetSelection.assets(*MIRROR_KEYS),
    partitions_def=stripe_daily_partitions,
    description="Lists Stripe objects created in a date range into the mirror. Launch a backfill over "
    "a range of days: the whole range runs as one run.",
)
