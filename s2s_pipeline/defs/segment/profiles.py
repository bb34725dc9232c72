"""Segment delivery: identify/group calls for the customers whose traits changed."""

import time

import pandas as pd
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.catalog import CODE_VERSION, OWNERS, tags
from s2s_pipeline.defs.segment.resources import SEGMENT_POOL, SegmentResource
from s2s_pipeline.defs.traits.assets import customer_traits
from s2s_pipeline.segment.profile_sync import sync_pending_profiles


@asset(group_name="segment", deps=[customer_traits], pool=SEGMENT_POOL, kinds={"segment"}, owners=OWNERS,
       tags=tags("nightly"), code_version=CODE_VERSION)
def segment_profiles(context: AssetExecutionContext, state_store: StateStoreResource,
                     segment: SegmentResource) -> MaterializeResult:
    """Segment user profiles kept in step with the trait table: an identify (context.active = false)
    for each customer whose traits changed since Segment last acknowledged them, carrying only the
    changed traits, and a group call for B2B customers whose company traits changed.

    Only acknowledged messages are recorded as pushed; a message Segment refused is re-sent by the
    next run with the same messageId. A run with failures is marked failed after its successful part
    is committed.
    """
    settings = segment.settings_for(context)
    outcome = sync_pending_profiles(state_store.store(), settings, segment.profiles(), segment.options(),
                            now=int(time.time()), progress=context.log.info, run_id=context.run_id)
    metadata = {
        "customers": outcome.customers,
        "customers_changed": outcome.customers_changed,
        # "changed": only the customers the trait refresh recomputed were compared; "full": everyone.
        "diff_scope": outcome.scope,
        "skipped_unchanged": outcome.customers - outcome.customers_changed,
        "identify_sent": outcome.report.count("identify"),
        "group_sent": outcome.report.count("group"),
        "failed": len(outcome.report.failed),
        # Plain numbers for the Plots tab: every message Segment acknowledged / refused in this run.
        "messages_sent": len(outcome.report.delivered),
        "messages_failed": len(outcome.report.failed),
        "identities": MetadataValue.json(outcome.identity_sources),
        "profiles_lookups": outcome.profiles_lookups,
        "dry_run": outcome.report.dry_run,
        "sample_changes": MetadataValue.md(outcome.sample_markdown()),
    }
    if outcome.report.failed:
        reasons = pd.Series(list(outcome.report.failed.values())).value_counts().to_dict()
        raise Failure(
            description=f"Segment did not accept {len(outcome.report.failed)} of {len(outcome.report.attempted)} "
            f"messages ({reasons}); the {len(outcome.report.delivered)} delivered were recorded and the next run "
            "re-sends the rest with the same messageIds",
            metadata={**metadata, "failure_reasons": MetadataValue.json(reasons),
                      "failed_message_ids": MetadataValue.json(sorted(outcome.report.failed)[:20])},
        )
    context.log.info(f"Segment: {metadata['identify_sent']} identify, {metadata['group_sent']} group calls "
                     f"for {metadata['customers_changed']} of {metadata['customers']} customers")
    return MaterializeResult(metadata=metadata)
