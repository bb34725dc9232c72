"""Choosing one row per group (the newest subscription, the latest charge ...), vectorised and order-free."""

from __future__ import annotations

import numpy as np
import pandas as pd

from s2s_pipeline.traits.frames import take_text


def pick_best(group: np.ndarray, n_groups: int, keys: list[np.ndarray], ids: pd.Series,
              largest_id: bool) -> np.ndarray:
    """Row index of the best row of each group, -1 for a group without rows.

    ``group`` holds each row's group (-1: row not eligible). ``keys`` are
    compared in order, larger wins; rows still tied are decided by their id
    (``largest_id`` or the smallest), so the choice never depends on row order.
    Cost: one ``np.maximum.at`` per key over the remaining candidates; only the
    few exact ties look at id strings.
    """
    rows = np.flatnonzero(group >= 0)
    g = group[rows]
    for key in keys:
        if rows.size == 0:
            break
        k = key[rows]
        if k.dtype == bool:
            k = k.astype(np.int8)
        elif k.dtype.kind == "f":
            k = np.nan_to_num(k, nan=-np.inf)  # NaN never wins (and never drops a row)
        lowest = -np.inf if k.dtype.kind == "f" else np.iinfo(k.dtype).min
        best = np.full(n_groups, lowest, dtype=k.dtype)
        np.maximum.at(best, g, k)
        keep = k == best[g]
        rows, g = rows[keep], g[keep]
    out = np.full(n_groups, -1, dtype=np.int64)
    if rows.size == 0:
        return out
    single = np.bincount(g, minlength=n_groups)[g] == 1
    out[g[single]] = rows[single]
    if not single.all():
        tied_rows, tied_groups = rows[~single], g[~single]
        ties = pd.DataFrame({"g": tied_groups, "id": pd.Series(take_text(ids, tied_rows), dtype=object).astype(str),
                             "row": tied_rows}).sort_values(["g", "id"], kind="stable")
        chosen = ties.drop_duplicates("g", keep="last" if largest_id else "first")
        out[chosen["g"].to_numpy()] = chosen["row"].to_numpy()
    return out
