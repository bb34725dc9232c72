"""Values the database refuses, told apart from the database being unavailable.

Postgres refuses NUL characters in text and values longer than a column;
neither backend can encode a lone surrogate (Stripe's JSON can carry one as an
escape). Such a value is a property of the object, not of the moment: writing
it again fails again, so the caller sets the object aside (the quarantine)
instead of failing every run. A lost connection or a lock timeout is not a
refusal and propagates as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DataError, StatementError

#: How much of the database's message a reason keeps (its first line: later lines can quote the value).
_REASON_CHARS = 200


class UnstorableInput(ValueError):
    """The database refused a value of what was being written; the message says why, never the value."""


def refusal_reason(exc: BaseException) -> str | None:
    """Why the database refused a value (no value in it), or None when ``exc`` is no refusal."""
    if isinstance(exc, DataError):
        cause = exc.orig if exc.orig is not None else exc
    elif isinstance(exc, StatementError) and isinstance(exc.orig, ValueError):
        cause = exc.orig
    elif isinstance(exc, ValueError) and not isinstance(exc, UnstorableInput):
        # psycopg2 refuses NUL, and the driver's UTF-8 encoding a lone surrogate, before the statement is sent
        cause = exc
    else:
        return None
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return f"the database refused a value ({type(cause).__name__}: {first_line[:_REASON_CHARS]})"


@contextmanager
def refusals_as_unstorable() -> Iterator[None]:
    """Turn a refused value into ``UnstorableInput`` (outside a transaction: it is rolled back by then)."""
    try:
        yield
    except UnstorableInput:
        raise
    except Exception as exc:  # noqa: BLE001 - classified below, everything else re-raised untouched
        reason = refusal_reason(exc)
        if reason is None:
            raise
        raise UnstorableInput(reason) from exc
