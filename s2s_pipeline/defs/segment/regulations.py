"""Deletion reaching Segment: regulations for customers deleted in Stripe, and the check that none is stuck."""

import time

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from s2s_pipeline.defs.resources import StateStoreResource
from s2s_pipeline.defs.segment.catalog import CODE_VERSION, OWNERS, tags
from s2s_pipeline.defs.segment.resources import SegmentPublicApiResource
from s2s_pipeline.defs.stripe.assets import CHANGE_FEED_KEY
from s2s_pipeline.defs.traits.resources import TraitRulesResource
from s2s_pipeline.privacy.deletion import run_deletion_path

STUCK_CHECK = "no_stuck_regulations"


@asset(group_name="segment", deps=[CHANGE_FEED_KEY], kinds={"segment"}, owners=OWNERS, tags=tags("nightly"),
       code_version=CODE_VERSION,
       check_specs=[AssetCheckSpec(STUCK_CHECK, asset="segment_regulations",
                                   description="Fails while a regulation Segment has not finished is older than "
                                   "the segment_public_api resource's stuck_after_days (default 30).")])
def segment_regulations(context: AssetExecutionContext, state_store: StateStoreResource,
                        segment_public_api: SegmentPublicApiResource,
                        trait_rules: TraitRulesResource):
    """Segment deletion/suppression regulations for customers deleted in Stripe (customer.deleted, or gone
    from a backfill re-list): one regulation per customer through Segment's Public API (with
    SEGMENT_PUBLIC_API_TOKEN set), statuses refreshed until Segment finishes, then the customer's pushed
    traits, identity and personal data purged from the state store. No Segment call is sent about a
    deleted customer from the moment the mirror flags it.
    """
    settings = segment_public_api.settings()
    store = state_store.store()
    now = int(time.time())
    outcome = run_deletion_path(store, settings, segment_public_api.client(), now=now,
                                identity_keys=trait_rules.config().identity_metadata_keys)
    summary = store.regulations.summary()
    for error in outcome.errors:
        context.log.warning(error)
    stuck = store.regulations.stuck(now - settings.stuck_after_days * 86400)
    yield MaterializeResult(metadata={
        **outcome.metadata(),
        # Standing of every regulation the store knows (plain numbers for the Plots tab).
        "filed": summary["pending"] + summary["finished"] + summary["failed"],
        "pending": summary["pending"], "finished": summary["finished"], "failed": summary["failed"],
        "awaiting_filing": summary["awaiting_filing"], "not_regulated": summary["not_regulated"],
        "purged": summary["purged"],
        "public_api": "configured" if settings.token else "no token: nothing filed, deleted customers purged",
        "regulation_type": settings.regulation_type,
    })
    yield AssetCheckResult(
        check_name=STUCK_CHECK, passed=not stuck, severity=AssetCheckSeverity.ERROR,
        description=None if not stuck else f"{len(stuck)} regulation(s) not finished after "
        f"{settings.stuck_after_days} days: see docs/operations.md (Privacy)",
        metadata={"stuck": len(stuck), "stuck_after_days": settings.stuck_after_days,
                  "examples": MetadataValue.json([{k: r[k] for k in ("stripe_customer_id", "state", "segment_status",
                                                                     "regulate_id")} for r in stuck[:20]])},
    )
