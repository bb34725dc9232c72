"""Times as the contract writes them: ISO-8601 UTC strings with a ``Z``, to the second.

Stripe reports Unix seconds; Segment traits and properties carry
``"2026-01-31T12:00:00Z"``. One format for scalars (track properties) and for
whole columns (the trait table, the diff), so a time never differs between an
identify and a track call by its spelling.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd


def utc_datetime(seconds: int | float | None) -> datetime:
    """A Unix time as an aware UTC datetime (analytics-python wants datetimes); None is the epoch."""
    return datetime.fromtimestamp(int(seconds or 0), tz=timezone.utc)


def iso_utc(seconds: int | float | None) -> str | None:
    """Unix seconds -> ``"2026-01-31T12:00:00Z"``; None stays None."""
    if seconds is None:
        return None
    return utc_datetime(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_utc_array(seconds: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Unix seconds (int64 array) -> object array of ISO-8601 UTC strings, None where not ``valid``."""
    out = np.full(len(seconds), None, dtype=object)
    if valid.any():
        out[valid] = np.datetime_as_string(np.asarray(seconds)[valid].astype("datetime64[s]"), unit="s",
                                           timezone="UTC")
    return out


def iso_utc_series(times: pd.Series) -> np.ndarray:
    """A datetime column (naive UTC or aware) -> object array of ISO-8601 UTC strings, None where null."""
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    null = np.asarray(times.isna(), dtype=bool)
    seconds = np.zeros(len(times), dtype="int64")
    if (~null).any():
        seconds[~null] = times.to_numpy(dtype="datetime64[s]")[~null].astype("int64")
    return iso_utc_array(seconds, ~null)
