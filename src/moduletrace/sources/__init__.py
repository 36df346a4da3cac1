"""Where spans come from: a collector archive (``file``), Jaeger, Tempo.

Each source turns its wire format into the normalised :class:`moduletrace.spans.Span`; nothing
past this package sees a wire format. Every source has the shape of :class:`Source`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from moduletrace.spans import Span, Wanted


class Source(Protocol):
    """A place spans are read from."""

    #: What could not be read whole (a search that could not be split, a trace not found, ...).
    partial: list[str]

    def describe(self) -> str:
        """What is searched, for messages: paths, or a backend's address and filters."""
        ...

    def spans(self, wanted: Wanted | None = None) -> Iterator[Span]:
        """Every span in the source's window that ``wanted`` asks for."""
        ...

    def batches(self, wanted: Wanted | None = None) -> Iterator[list[Span]]:
        """The same spans in lists (a file's record, or one span): what a scan reads, a list at a time."""
        ...

    def spans_for_modules(
        self, module_ids: Sequence[str], since_ns: int, wanted: Wanted | None = None
    ) -> Iterator[Span]:
        """The spans of these modules' creations from ``since_ns`` on (creations outside the window)."""
        ...

    def trace_url(self, trace_id: str) -> str | None:
        """A link to the trace in the backend's UI, or None."""
        ...

    def progress(self) -> str:
        """How far the read has come, for a progress line ("" when unknown)."""
        ...

    def close(self) -> None: ...
