"""How a Segment asset fails when Segment refused some of its messages."""

from dagster import Failure, MetadataValue


def fail_on_refused(report, what: str, metadata: dict) -> None:
    """Fail the step if Segment refused any message: what it accepted is already recorded, and the next
    run re-sends the rest with the same messageIds."""
    if report.failed:
        raise Failure(
            description=f"Segment did not accept {len(report.failed)} {what} message(s); the others were recorded "
            "and the next run re-sends these with the same messageIds",
            metadata={**metadata, "failed_message_ids": MetadataValue.json(sorted(report.failed)[:20])},
        )
