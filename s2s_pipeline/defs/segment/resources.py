"""The Segment source that receives traits and events, bound under the resource key ``segment``.

The write key comes from ``SEGMENT_WRITE_KEY`` through ``EnvVar``; the
Profiles API settings are optional. Imports nothing else from ``defs``.
"""

import os
from pathlib import Path
from typing import Optional

from dagster import AssetExecutionContext, ConfigurableResource, Definitions, EnvVar, Failure, definitions
from pydantic import Field

from s2s_pipeline.privacy.deletion import client_for
from s2s_pipeline.privacy.public_api import RegulationsClient
from s2s_pipeline.privacy.settings import (
    DEFAULT_PUBLIC_API_HOST,
    DEFAULT_REGULATION_TYPE,
    DEFAULT_STUCK_AFTER_DAYS,
    PrivacyConfigError,
    PrivacySettings,
)
from s2s_pipeline.segment.delivery import DEFAULT_HOST, SegmentConfigError, SegmentSettings, dry_run_file
from s2s_pipeline.segment.profile_sync import ProfileSyncOptions
from s2s_pipeline.segment.profiles_api import ProfilesClient

#: Concurrency pool of every step that sends to Segment (limited in dagster.yaml).
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
    upload_size: int = Field(default=500, description="Messages per batch, at most 2,500 (Segment's limit; "
                             "analytics-python also closes a batch at about 475 KB).")
    trait_allow_list: Optional[list[str]] = Field(
        default=None, description="Only these traits are compared and sent (default: every contract trait).")
    trait_routing: Optional[dict[str, dict[str, bool]]] = Field(
        default=None, description='Per-trait destinations, e.g. {"mrr": {"All": false, "Salesforce": true}}: '
        "routed traits go in their own identify with that integrations object.")
    dry_run_path: Optional[str] = Field(
        default=None, description="A directory: each run's Segment assets write their would-be calls as JSON lines "
        "to <dry_run_path>/<run_id>-<asset>.jsonl (mode 0600: they carry emails); send nothing, change no state.")
    profiles_recheck_days: int = Field(default=7, description="Look anonymous customers up again after this many days.")
    max_profile_lookups: int = Field(default=10_000, description="Profiles API look-ups per run at most.")

    def settings(self, *, run_id: Optional[str] = None, asset: Optional[str] = None) -> SegmentSettings:
        """How to reach Segment; in a dry run, the file of ``asset`` in run ``run_id`` (see ``settings_for``)."""
        dry_run = None
        if self.dry_run_path:
            if Path(self.dry_run_path).is_file():
                raise Failure(description=f"segment dry_run_path {self.dry_run_path!r} is a file: it names a "
                                          "directory, which receives one <run_id>-<asset>.jsonl per run and asset")
            dry_run = dry_run_file(self.dry_run_path, run_id or "no-run", asset or "segment")
        try:
            return SegmentSettings(
                write_key=self.write_key,
                host=self.host or os.environ.get("SEGMENT_HOST") or DEFAULT_HOST,
                gzip=self.gzip,
                max_retries=self.max_retries,
                upload_size=self.upload_size,
                dry_run_path=dry_run,
            )
        except SegmentConfigError as exc:
            raise Failure(description=str(exc)) from exc

    def settings_for(self, context: AssetExecutionContext) -> SegmentSettings:
        """The settings an asset delivers with: a dry run writes ``<dry_run_path>/<run_id>-<asset>.jsonl``."""
        return self.settings(run_id=context.run_id, asset=context.asset_key.to_python_identifier())

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

    def validate(self) -> None:
        """Fail with a message naming the setting if any Segment setting is malformed."""
        self.settings()
        self.profiles()

    def options(self) -> ProfileSyncOptions:
        return ProfileSyncOptions(
            allow_list=tuple(self.trait_allow_list) if self.trait_allow_list else None,
            routing=dict(self.trait_routing) if self.trait_routing else None,
            recheck_after_seconds=self.profiles_recheck_days * 86400,
            max_lookups=self.max_profile_lookups,
        )


class SegmentPublicApiResource(ConfigurableResource):
    """Segment's Public API, for deletion/suppression regulations of customers deleted in Stripe.

    Without a token no regulation is filed and deleted customers are purged from the state store at once.
    """

    token: Optional[str] = Field(default=None, description="Public API token with deletion permission. "
                                 "Env: SEGMENT_PUBLIC_API_TOKEN. Unset: no regulations are filed.")
    host: Optional[str] = Field(default=None, description="Env: SEGMENT_PUBLIC_API_HOST. "
                                f"Default {DEFAULT_PUBLIC_API_HOST}.")
    regulation_type: str = Field(default=DEFAULT_REGULATION_TYPE, description="SUPPRESS_WITH_DELETE (Segment and "
                                 "destinations), DELETE_ONLY, SUPPRESS_WITH_DELETE_INTERNAL, DELETE_INTERNAL or "
                                 "SUPPRESS_ONLY.")
    stuck_after_days: int = Field(default=DEFAULT_STUCK_AFTER_DAYS, description="The no_stuck_regulations check "
                                  "fails for a regulation Segment has not finished this many days after the "
                                  "deletion (Segment's own SLA is 30 days).")

    def settings(self) -> PrivacySettings:
        try:
            return PrivacySettings.from_env(token=self.token or None, host=self.host or None,
                                            regulation_type=self.regulation_type,
                                            stuck_after_days=self.stuck_after_days)
        except PrivacyConfigError as exc:
            raise Failure(description=str(exc)) from exc

    def client(self) -> Optional[RegulationsClient]:
        return client_for(self.settings())


@definitions
def resources() -> Definitions:
    """Segment as the shipped code location uses it: the write key from ``SEGMENT_WRITE_KEY``; the Public API
    token, when set, from ``SEGMENT_PUBLIC_API_TOKEN``."""
    return Definitions(resources={"segment": SegmentResource(write_key=EnvVar("SEGMENT_WRITE_KEY")),
                                  "segment_public_api": SegmentPublicApiResource()})
