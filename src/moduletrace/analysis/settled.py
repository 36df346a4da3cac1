"""The creations of settled modules, kept for the late loads that may still come: memory stays flat.

When a module settles, the detector keeps a summary of its creations (each one's first successful
commit and cache update): a load that arrives later, after the settle window, is judged against it.
Summaries grow with the modules already judged, so the newest ``in_memory`` stay in a dict and the
older ones move, in batches, to a private temporary SQLite database (``sqlite3.connect("")``: a
file in ``SQLITE_TMPDIR`` or ``TMPDIR``, else /var/tmp or /tmp, that SQLite unlinks as it opens it,
so nothing is left behind even by a killed process; its page cache is bounded). Nothing is ever
forgotten: a late load finds its module's summary wherever it lies, at the price of one indexed
lookup per module that was not in flight when its span came.
"""

from __future__ import annotations

import sys
from contextlib import suppress
from itertools import islice
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moduletrace.analysis._spill import Disk
    from moduletrace.analysis.creation import Creation

#: Summaries kept in memory (about 0.5 KB each) before the oldest half moves to disk.
DEFAULT_IN_MEMORY = 50_000


_LOST = ": a later load of such a module finds no creation (reported unmatched, never a race)"


class SettledCreations:
    """Module id -> the summary of its creations; in memory up to ``in_memory``, then spilled to disk."""

    def __init__(self, in_memory: int = DEFAULT_IN_MEMORY) -> None:
        if in_memory < 1:
            raise ValueError("in_memory must be at least 1")
        self._in_memory = in_memory
        self._memory: dict[str, tuple[Creation, ...]] = {}
        self._pinned: dict[str, tuple[Creation, ...]] = {}  # what the disk cannot keep: held here
        self._disk: Disk | None = None
        self._on_disk = 0
        #: Why summaries stopped going to disk (it could not be opened or written: all stay in memory).
        self.problem = ""

    def __len__(self) -> int:
        return len(self._memory) + len(self._pinned) + self._on_disk

    @property
    def on_disk(self) -> int:
        """How many summaries lie on disk now."""
        return self._on_disk

    def put(self, module_id: str, creations: tuple[Creation, ...]) -> None:
        """Keep a settled module's summary (not held already: a module back in flight was popped)."""
        memory = self._memory
        memory[module_id] = creations
        if len(memory) > self._in_memory:
            self._spill()

    def pop(self, module_id: str) -> tuple[Creation, ...] | None:
        """Take a module's summary out (its module comes back in flight), or None if it has none.

        A summary found on disk but undecodable comes out empty, ``()``: the module was settled (not
        counted twice) and its later loads find no creation. A disk that cannot be read is given up.
        """
        found = self._memory.pop(module_id, None)
        if found is None and self._pinned:
            found = self._pinned.pop(module_id, None)
        if found is None and self._on_disk:
            assert self._disk is not None
            try:
                found = self._disk.pop(module_id)
            except self._disk.undecodable as exc:  # it was settled: not counted again; its creation is gone
                self._on_disk -= 1
                self.problem = (
                    self.problem or f"a settled module's summary was lost in its temporary file ({exc})" + _LOST
                )
                return ()
            except self._disk.errors as exc:  # the file cannot be read: what it holds is gone
                self.problem = self.problem or (
                    f"{self._on_disk} settled modules' summaries were lost with their temporary file ({exc})"
                    + _LOST
                    + "; those modules may be counted twice; the rest are kept in memory"
                )
                with suppress(self._disk.errors):
                    self._disk.close()
                self._disk, self._on_disk, self._in_memory = None, 0, sys.maxsize
                return None
            if found is not None:
                self._on_disk -= 1
        return found

    def close(self) -> None:
        """Drop everything (the disk file with it)."""
        self._memory = {}
        self._pinned = {}
        if self._disk is not None:
            self._disk.close()
            self._disk = None
        self._on_disk = 0

    def _spill(self) -> None:
        """Move the oldest half (settling order: the data's time order) to disk."""
        from moduletrace.analysis._spill import Disk, DiskError  # sqlite3: only once a scan spills

        memory = self._memory
        moving = [(module_id, memory[module_id]) for module_id in islice(memory, len(memory) // 2 or 1)]
        try:
            if self._disk is None:
                self._disk = Disk()
            kept = self._disk.put(moving)
        except DiskError as exc:  # no writable temporary directory, a full disk: memory as before
            self.problem = self.problem or (
                f"settled modules' summaries could not go to a temporary file ({exc}): from then on they "
                "were kept in memory (set SQLITE_TMPDIR or TMPDIR to a writable directory with space)"
            )
            self._in_memory = sys.maxsize
            return
        for module_id, _ in moving:
            del memory[module_id]
        self._on_disk += len(moving) - len(kept)
        self._pinned.update(kept)
