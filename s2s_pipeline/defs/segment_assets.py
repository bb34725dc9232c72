"""Segment delivery: identify/group calls for the customers whose traits changed."""

import os
import time
from typing import Optional

import pandas as pd
from dagster import AssetExecutionContext, ConfigurableResource, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.traits_assets import customer_traits
from s2s_pipeline.segment.delivery import DEFAULT_HOST, SegmentConfigError, SegmentSettings
from s2s_pipeline.segment.profiles import ProfilesClient
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions, sync_profiles

SEGMENT_POOL = "segment_api"


class SegmentResource(ConfigurableResource):
    """The Segment source that receives customer traits and events."""

    write_key: str = Field(description="Write key of the Segment source. Env: SEGMENT_WRITE_KEY.")
    host: Optional[str] = Field(default=None, description=f"Tracking API host. Env: SEGMENT_HOST. Default {DEFAULT_HOST}.")
    space_id: Optional[str] = Field(default=None, description="Profiles API space (identity look-ups). "
                                    "Env: SEGMENT_SPACE_ID.")
    profiles_token: Optional[str] = Field(default=None, description="Profiles API access token. "
                                          "Env: SEGMENT_PROFILES_TOKEN.")
    profiles_host: Optional[str] = Field(default=None, description="Env: SEGMENT_PROFILES_HOST. "
                                         "Default https://profiles.segment.com.")
    gzip: bool = Field(default=True, description="Gzip batches.")
    max_retries: int = Field(default=3, description="analytics-python retries of 5xx/429 per batch.")
    upload_size: int = Field(default=100, description="Messages per batch (Segment allows up to 2,500).")
    trait_allow_list: Optional[list[str]] = Field(
        default=None, description="Only these traits are compared and sent (default: every contract trait).")
    trait_routing: Optional[dict[str, dict[str, bool]]] = Field(
        default=None, description='Per-trait destinations, e.g. {"mrr": {"All": false, "Salesforce": true}}: '
        "routed traits go in their own identify with that integrations object.")
    dry_run_path: Optional[str] = Field(
        default=None, description="Write the would-be calls as JSON lines to this file; send nothing, change no state.")
    profiles_recheck_days: int = Field(default=7, description="Look anonymous customers up again after this many days.")
    max_profile_lookups: int = Field(default=10_000, description="Profiles API look-ups per run at most.")

    def settings(self) -> SegmentSettings:
        try:
            return SegmentSettings(
                write_key=self.write_key,
                host=self.host or os.environ.get("SEGMENT_HOST") or DEFAULT_HOST,
                gzip=self.gzip,
                max_retries=self.max_retries,
                upload_size=self.upload_size,
                dry_run_path=self.dry_run_path,
            )
        except SegmentConfigError as exc:
            raise Failure(description=str(exc)) from exc

    def profiles(self) -> Optional[ProfilesClient]:
        space = self.space_id or os.environ.get("SEGMENT_SPACE_ID")
        token = self.profiles_token or os.environ.get("SEGMENT_PROFILES_TOKEN")
        if not space and not token:
            return None
        if not space or not token:
            missing = "SEGMENT_SPACE_ID" if not space else "SEGMENT_PROFILES_TOKEN"
            raise Failure(description=f"{missing} is not set: the Profiles API needs both SEGMENT_SPACE_ID "
                                      "and SEGMENT_PROFILES_TOKEN (or neither, to skip look-ups)")
        host = self.profiles_host or os.environ.get("SEGMENT_PROFILES_HOST") or "https://profiles.segment.com"
        return ProfilesClient(space, token, host=host)

    def options(self) -> ProfileSyncOptions:
        return ProfileSyncOptions(
            allow_list=tuple(self.trait_allow_list) if self.trait_allow_list else None,
            routing=dict(self.trait_routing) if self.trait_routing else None,
            recheck_after_seconds=self.profiles_recheck_days * 86400,
            max_lookups=self.max_profile_lookups,
        )


@asset(group_name="segment", deps=[customer_traits], pool=SEGMENT_POOL, kinds={"segment"})
def segment_profiles(context: AssetExecutionContext, state_store: StateStoreResource,
                     segment: SegmentResource) -> MaterializeResult:
    """Segment user profiles kept in step with the trait table: an identify (context.active = false)
    for each customer whose traits changed since Segment last acknowledged them, carrying only the
    changed traits, and a group call for B2B customers whose company traits changed.

    Only acknowledged messages are recorded as pushed; a message Segment refused is re-sent by the
    next run with the same messageId. A run with failures is marked failed after its successful part
    is committed.
    """
    settings = segment.settings()
    outcome = sync_profiles(state_store.mirror(), settings, segment.profiles(), segment.options(),
                            now=int(time.time()))
    metadata = {
        "customers": outcome.customers,
        "customers_changed": outcome.customers_changed,
        "skipped_unchanged": outcome.customers - outcome.customers_changed,
        "identify_sent": outcome.report.count("identify"),
        "group_sent": outcome.report.count("group"),
        "failed": len(outcome.report.failed),
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
