"""Who owns the Segment assets and how they are tagged in the UI."""

#: Data engineering runs delivery; growth owns the Segment source and what its destinations do with it.
OWNERS = ["team:data-eng", "team:growth"]
#: Bump when a change alters the calls sent (names, properties, messageIds).
CODE_VERSION = "contract-v2"


def tags(cadence: str) -> dict[str, str]:
    """UI tags of a Segment asset that runs ``cadence`` (nightly, per_event, backfill)."""
    return {"domain": "segment", "layer": "deliver", "cadence": cadence}
