"""The disk side of :class:`~moduletrace.analysis.settled.SettledCreations`: summaries in SQLite.

A summary is stored as plain tuples in :mod:`marshal`'s format (a stage's recorded version is an
attribute value: strings, numbers, booleans, lists and dicts of them, all of which marshal keeps),
its resources by index into the few this store has seen, so they come back as the same objects.
Marshal's format is the running interpreter's own; the file lives only as long as the process.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Iterable
from typing import Any

from moduletrace.analysis.creation import Creation, StageSpan
from moduletrace.analysis.report import ConsumerLag
from moduletrace.spans import Resource

#: What a failing disk raises (sqlite3.Error: OperationalError for "unable to open", "disk is full").
DiskError = sqlite3.Error


class Undecodable(Exception):
    """A summary was on disk but its bytes cannot be decoded (a damaged file): it is gone."""


class Disk:
    """A private temporary SQLite database (``sqlite3.connect("")``): gone when closed."""

    errors = DiskError
    undecodable = Undecodable

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        # A journal in memory (not OFF: without one a rolled-back batch may corrupt what was stored).
        for pragma in ("journal_mode = MEMORY", "synchronous = OFF", "cache_size = -4096"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE settled (module_id TEXT PRIMARY KEY, creations BLOB NOT NULL)")
        self._resources: list[Resource] = []
        self._resource_index: dict[Resource, int] = {}

    def put(self, items: Iterable[tuple[str, tuple[Creation, ...]]]) -> list[tuple[str, tuple[Creation, ...]]]:
        """Store ``(module_id, creations)`` pairs (ids not on disk: a module back in flight was popped);
        returns those it cannot store (a version marshal does not keep: from a caller's own spans)."""
        dumps, encode = marshal.dumps, self._encode
        rows: list[tuple[str, bytes]] = []
        kept: list[tuple[str, tuple[Creation, ...]]] = []
        for module_id, creations in items:
            try:
                rows.append((module_id, dumps(encode(creations))))
            except ValueError:  # "unmarshallable object"
                kept.append((module_id, creations))
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT INTO settled VALUES (?, ?)", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:  # what was stored before stays readable
                self._db.execute("ROLLBACK")
            raise
        return kept

    def pop(self, module_id: str) -> tuple[Creation, ...] | None:
        """The module's summary, taken off the disk; None if it is not there. Raises DiskError if the
        file cannot be read, Undecodable if the summary was there but cannot be decoded."""
        row = self._db.execute("SELECT creations FROM settled WHERE module_id = ?", (module_id,)).fetchone()
        if row is None:
            return None
        self._db.execute("DELETE FROM settled WHERE module_id = ?", (module_id,))
        try:
            return self._decode(marshal.loads(row[0]))
        except (ValueError, EOFError, TypeError, IndexError) as exc:  # a damaged file's bytes
            raise Undecodable(f"a stored summary cannot be decoded: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def _encode(self, creations: tuple[Creation, ...]) -> Any:
        stage = self._stage
        return tuple(
            (c.trace_id, c.start_ns, tuple(stage(r) for r in c.commits), tuple(stage(r) for r in c.caches))
            for c in creations
        )

    def _stage(self, record: StageSpan) -> Any:
        lag = record.lag
        return (
            record.span_id,
            record.start_ns,
            record.end_ns,
            record.ok,
            self._resource_id(record.resource),
            record.error,
            record.version,
            None
            if lag is None
            else (lag.stage, lag.lag_ms, lag.lag_clock, lag.queue_depth, lag.system, lag.destination),
        )

    def _decode(self, stored: Any) -> tuple[Creation, ...]:
        resources = self._resources

        def stage(fields: Any) -> StageSpan:
            span_id, start, end, ok, resource, error, version, lag = fields
            lagged = None if lag is None else ConsumerLag(*lag)
            return StageSpan(span_id, start, end, ok, resources[resource], error, version, lagged)

        return tuple(
            Creation(trace_id, start_ns, [stage(r) for r in commits], [stage(r) for r in caches])
            for trace_id, start_ns, commits, caches in stored
        )

    def _resource_id(self, resource: Resource) -> int:
        index = self._resource_index.get(resource)
        if index is None:
            index = self._resource_index[resource] = len(self._resources)
            self._resources.append(resource)
        return index
