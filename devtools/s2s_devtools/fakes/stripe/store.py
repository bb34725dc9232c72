"""The stand-in's account: objects by type and id, which are deleted, and the sort indexes lists are served from.

Objects are stored fully expanded and never mutated in place (writes replace
them), so callers may render what they read outside the lock.
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Iterable
from typing import Any

from .querying import ListQuery, SortKey, field_at, select_page, sort_key


def deep_copy(o: Any) -> Any:
    """Copy JSON-like data (dicts, lists, scalars) much faster than copy.deepcopy."""
    t = type(o)
    if t is dict:
        return {k: deep_copy(v) for k, v in o.items()}
    if t is list:
        return [deep_copy(v) for v in o]
    return o


class StoredObjects:
    """Thread-safe storage of a Stripe account's objects (``lock`` is re-entrant, for callers' compound writes)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._objects: dict[str, dict[str, dict]] = collections.defaultdict(dict)
        self._deleted: dict[str, set[str]] = collections.defaultdict(set)
        # Per object type: ascending (created, id) keys, rebuilt lazily after
        # bulk loads; single writes keep it sorted in place.
        self._keys: dict[str, list[SortKey] | None] = {}
        # (object type, field) -> value -> ascending keys; dropped on any write.
        self._field_index: dict[tuple[str, str], dict[Any, list[SortKey]]] = {}

    def load(self, objects: Iterable[dict], *, copy: bool = True) -> None:
        """Store objects by their ``object`` type and id, replacing same ids.

        A stub with ``deleted: true`` marks the object deleted. ``copy=False``
        stores the caller's dicts as they are.
        """
        with self.lock:
            touched = set()
            for obj in objects:
                kind = obj["object"]
                stored = deep_copy(obj) if copy else obj
                oid = stored["id"]
                bucket = self._objects[kind]
                if stored.get("deleted") and oid in bucket:
                    # a deletion stub keeps the last known state (and its place)
                    self._deleted[kind].add(oid)
                    continue
                bucket[oid] = stored
                if stored.get("deleted"):
                    self._deleted[kind].add(oid)
                else:
                    self._deleted[kind].discard(oid)
                touched.add(kind)
            for kind in touched:
                self._keys[kind] = None
                self._drop_field_index(kind)

    def put(self, obj: dict) -> None:
        """Store one object (live), keeping the sorted key list in place (no re-sort)."""
        with self.lock:
            kind = obj["object"]
            bucket = self._objects[kind]
            old = bucket.get(obj["id"])
            bucket[obj["id"]] = obj
            self._deleted[kind].discard(obj["id"])
            keys = self._keys.get(kind)
            if keys is not None:
                new_key = sort_key(obj)
                if old is not None:
                    old_key = sort_key(old)
                    if old_key != new_key:
                        i = bisect.bisect_left(keys, old_key)
                        if i < len(keys) and keys[i] == old_key:
                            del keys[i]
                        bisect.insort(keys, new_key)
                else:
                    bisect.insort(keys, new_key)
            self._drop_field_index(kind)

    def mark_deleted(self, kind: str, obj_id: str) -> None:
        """The object leaves lists; retrieving it returns the deleted stub."""
        with self.lock:
            if obj_id not in self._objects[kind]:
                raise KeyError(f"no {kind} {obj_id}")
            self._deleted[kind].add(obj_id)
            self._drop_field_index(kind)

    def dump(self) -> list[dict]:
        """Every stored object (events included), then a deletion stub per deleted one: ``load`` restores it."""
        with self.lock:
            objects = [o for bucket in self._objects.values() for o in bucket.values()]
            stubs = [{"id": i, "object": kind, "deleted": True} for kind, ids in self._deleted.items() for i in ids]
            return objects + stubs

    def get(self, kind: str, obj_id: str) -> dict | None:
        """The stored (fully expanded) object, deleted or not."""
        with self.lock:
            return self._objects[kind].get(obj_id)

    def lookup(self, kind: str, obj_id: str) -> tuple[dict | None, bool]:
        """The stored object (or ``None``) and whether it is deleted."""
        with self.lock:
            return self._objects[kind].get(obj_id), obj_id in self._deleted[kind]

    def count(self, kind: str) -> int:
        """How many live (not deleted) objects of a type are stored."""
        with self.lock:
            return len(self._objects[kind]) - len(self._deleted[kind])

    def select(self, kind: str, q: ListQuery) -> tuple[list[dict], bool]:
        """One page of a list request, newest first, and whether more follow."""
        with self.lock:
            if q.indexed is not None:
                keys = self._field_keys(kind, *q.indexed)
            else:
                keys = self._sorted_keys(kind)
            return select_page(q, kind, keys, self._objects[kind], self._deleted[kind])

    def _sorted_keys(self, kind: str) -> list[SortKey]:
        keys = self._keys.get(kind)
        if keys is None:
            keys = sorted(sort_key(o) for o in self._objects[kind].values())
            self._keys[kind] = keys
        return keys

    def _field_keys(self, kind: str, field: str, path: tuple[str, ...], value: str) -> list[SortKey]:
        index = self._field_index.get((kind, field))
        if index is None:
            index = collections.defaultdict(list)
            for k in self._sorted_keys(kind):
                index[field_at(self._objects[kind][k[1]], path)].append(k)
            self._field_index[(kind, field)] = index
        return index.get(value, [])

    def _drop_field_index(self, kind: str) -> None:
        for k in [k for k in self._field_index if k[0] == kind]:
            del self._field_index[k]
