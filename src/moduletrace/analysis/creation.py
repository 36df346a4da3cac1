"""A module's creation as the race rule judges loads against it: its stages' spans, in one trace.

Below the detector and the store of settled modules alike (both keep creations; the store writes
them to disk and reads them back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from moduletrace.analysis.report import ConsumerLag
from moduletrace.conventions import DB_COMMIT
from moduletrace.spans import Resource


class StageSpan(NamedTuple):
    """A creation stage's span: its window, its clock, whether it succeeded, what it wrote."""

    span_id: str
    start_ns: int
    end_ns: int
    ok: bool
    resource: Resource
    error: str
    version: Any = None  # DATA_VERSION on a commit, CACHE_VERSION on a cache update
    lag: ConsumerLag | None = None  # run by a message consumer that recorded its lag


@dataclass(slots=True)
class Creation:
    trace_id: str
    start_ns: int | None = None
    commits: list[StageSpan] = field(default_factory=list)
    caches: list[StageSpan] = field(default_factory=list)

    def first_ok(self, stage: str) -> StageSpan | None:
        records = self.commits if stage == DB_COMMIT else self.caches
        if len(records) == 1:
            return records[0] if records[0].ok else None
        return min((r for r in records if r.ok), key=_start, default=None)

    def started(self) -> int:
        if self.start_ns is not None:
            return self.start_ns
        return min((r.start_ns for r in (*self.commits, *self.caches)), default=0)


def _start(record: StageSpan) -> int:
    return record.start_ns
