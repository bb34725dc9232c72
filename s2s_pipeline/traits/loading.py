"""Loading the Stripe mirror from the state store as ``MirrorFrames`` for the trait computation."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from s2s_pipeline.store.mirror_reads import MirrorReads
from s2s_pipeline.traits.frames import TRAIT_INPUT_COLUMNS, MirrorFrames, apply_fast_dtypes, empty_frame


def load_mirror_frames(mirror: MirrorReads, columns: Mapping[str, tuple[str, ...]] | None = None,
                       fast_dtypes: bool = True) -> MirrorFrames:
    """The mirror tables as a MirrorFrames.

    - ``columns``: per MirrorFrames field, the columns to read (default
      ``TRAIT_INPUT_COLUMNS``: what ``compute_customer_traits`` needs;
      ``TABLE_COLUMNS`` reads everything but ``raw``). A table with no columns
      is returned empty (with its schema columns) without a query.
    - Deleted customers are left out and customers come ordered by id
      (``store.frames.read_frames``), all tables read in one transaction.
    - Dtypes are set afterwards with ``traits.frames.apply_fast_dtypes``
      (references as categoricals aligned with the referenced ids, which is
      what makes the trait computation fast) unless ``fast_dtypes`` is False.
    """
    wanted = TRAIT_INPUT_COLUMNS if columns is None else columns
    return _as_mirror_frames(mirror.read_frames(wanted), wanted, fast_dtypes)


def load_customer_frames(mirror: MirrorReads, customer_ids, columns: Mapping[str, tuple[str, ...]] | None = None,
                         fast_dtypes: bool = True) -> MirrorFrames:
    """``load_mirror_frames`` for some customers only: their rows and the whole catalogue
    (``store.frames.read_customer_frames``); the traits computed from it are those customers' traits."""
    wanted = TRAIT_INPUT_COLUMNS if columns is None else columns
    return _as_mirror_frames(mirror.read_customer_frames(wanted, customer_ids), wanted, fast_dtypes)


def load_shard_frames(mirror: MirrorReads, lo: str | None, hi: str | None,
                      columns: Mapping[str, tuple[str, ...]] | None = None, fast_dtypes: bool = True) -> MirrorFrames:
    """``load_mirror_frames`` for one shard of customers, ``lo <= id < hi`` (None: unbounded), and the whole
    catalogue (``store.frames.read_shard_frames``); the traits computed from it are those customers' traits."""
    wanted = TRAIT_INPUT_COLUMNS if columns is None else columns
    return _as_mirror_frames(mirror.read_shard_frames(wanted, lo, hi), wanted, fast_dtypes)


def _as_mirror_frames(read: dict[str, pd.DataFrame], wanted: Mapping[str, tuple[str, ...]],
                      fast_dtypes: bool) -> MirrorFrames:
    tables: dict[str, pd.DataFrame] = {}
    for name in MirrorFrames.__dataclass_fields__:
        cols = tuple(wanted.get(name, ()))
        if not cols:
            tables[name] = empty_frame(name)
        else:
            frame = read[name]
            tables[name] = frame if len(frame) else empty_frame(name, cols)
    if fast_dtypes:
        apply_fast_dtypes(tables)
    return MirrorFrames(**tables)
