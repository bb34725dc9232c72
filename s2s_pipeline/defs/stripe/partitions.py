"""Daily partitions of Stripe objects by their ``created`` date (UTC)."""

import os

from dagster import DailyPartitionsDefinition

#: First day backfills can cover; set S2S_BACKFILL_START_DATE (YYYY-MM-DD) for older accounts.
BACKFILL_START_DATE = os.environ.get("S2S_BACKFILL_START_DATE", "2020-01-01")

stripe_daily_partitions = DailyPartitionsDefinition(start_date=BACKFILL_START_DATE, timezone="UTC")
