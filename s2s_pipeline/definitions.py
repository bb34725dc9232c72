"""The s2s-pipeline code location: every asset, check, job, schedule, sensor and resource."""

from dagster import Definitions

from s2s_pipeline.defs.events_assets import (
    failed_payment_alert,
    failed_payment_alerts,
    failed_payment_sensor,
    segment_payment_history,
    segment_track_events,
)
from s2s_pipeline.defs.jobs import nightly_trait_refresh, nightly_trait_refresh_schedule, stripe_backfill
from s2s_pipeline.defs.resources import default_resources
from s2s_pipeline.defs.segment_assets import segment_profiles
from s2s_pipeline.defs.stripe_assets import stripe_change_feed, stripe_mirror_backfill
from s2s_pipeline.defs.traits_assets import (
    customer_traits,
    non_negative_money,
    one_row_per_customer,
    refund_rate_within_bounds,
    spend_tier_valid,
)

defs = Definitions(
    assets=[stripe_mirror_backfill, stripe_change_feed, customer_traits, segment_profiles, segment_track_events,
            failed_payment_alerts, segment_payment_history],
    asset_checks=[one_row_per_customer, non_negative_money, refund_rate_within_bounds, spend_tier_valid],
    jobs=[stripe_backfill, nightly_trait_refresh, failed_payment_alert],
    schedules=[nightly_trait_refresh_schedule],
    sensors=[failed_payment_sensor],
    resources=default_resources(),
)
