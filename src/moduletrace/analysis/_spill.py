"""The disk side of :class:`~moduletrace.analysis.settled.SettledCreations`: pickled summaries in SQLite."""

from __future__ import annotations

import io
import pickle
import sqlite3
from typing import TYPE_CHECKING, Any

from moduletrace.spans import Resource

if TYPE_CHECKING:
    from moduletrace.analysis.races import Creation


class Disk:
    """A private temporary SQLite database (``sqlite3.connect("")``): gone when closed."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -4096"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE settled (module_id TEXT PRIMARY KEY, creations BLOB NOT NULL)")
        # Resources are few and shared: stored once, by index, and given back as the same objects.
        self._resources: list[Resource] = []
        self._resource_index: dict[Resource, int] = {}

    def put(self, items: Any) -> int:
        """Store ``(module_id, creations)`` pairs (ids not on disk: a module back in flight was popped);
        returns how many."""
        buffer = io.BytesIO()
        pickler = _Pickler(buffer, self)
        rows = []
        for module_id, creations in items:
            buffer.seek(0)
            buffer.truncate()
            pickler.clear_memo()
            pickler.dump(creations)
            rows.append((module_id, buffer.getvalue()))
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO settled VALUES (?, ?)", rows)
        self._db.execute("COMMIT")
        return len(rows)

    def pop(self, module_id: str) -> tuple[Creation, ...] | None:
        row = self._db.execute("SELECT creations FROM settled WHERE module_id = ?", (module_id,)).fetchone()
        if row is None:
            return None
        self._db.execute("DELETE FROM settled WHERE module_id = ?", (module_id,))
        creations: tuple[Creation, ...] = _Unpickler(io.BytesIO(row[0]), self._resources).load()
        return creations

    def close(self) -> None:
        self._db.close()

    def resource_id(self, resource: Resource) -> int:
        index = self._resource_index.get(resource)
        if index is None:
            index = self._resource_index[resource] = len(self._resources)
            self._resources.append(resource)
        return index


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, disk: Disk) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._disk = disk

    def persistent_id(self, obj: Any) -> int | None:
        if obj.__class__ is Resource:
            return self._disk.resource_id(obj)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, resources: list[Resource]) -> None:
        super().__init__(file)
        self._resources = resources

    def persistent_load(self, pid: Any) -> Resource:
        return self._resources[int(pid)]
