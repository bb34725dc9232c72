"""The weekly full trait recompute: the safety net under the nightly incremental refresh.

Nightly runs recompute only customers whose Stripe data changed; once a week
every customer is recomputed and compared with what Segment holds, so a change
the incremental path could not see (a missed event, a manual fix in the store)
lasts at most a week. It runs the nightly job (by name: nothing here imports
another domain) an hour after the nightly run, with ``full_recompute``.
"""

from dagster import DefaultScheduleStatus, ScheduleDefinition

weekly_full_trait_recompute = ScheduleDefinition(
    name="weekly_full_trait_recompute",
    job_name="nightly_trait_refresh",
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    run_config={"ops": {"customer_traits": {"config": {"full_recompute": True}}}},
    default_status=DefaultScheduleStatus.RUNNING,
    description="Sundays at 03:00 UTC: nightly_trait_refresh with every customer recomputed and diffed.",
)
