"""The scan's span checks: a batch checked at once admits and rejects exactly what span-by-span checks do."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moduletrace.analysis.races import RaceDetector
from moduletrace.analysis.races import wanted as race_wanted
from moduletrace.scan import Scan, ScanOptions, _admitted, read
from moduletrace.spans import Resource, Span
from tests.analysis.test_settling import fillers

HEX = "0123456789abcdef"
MAX_NS = 2**64 - 1


def ids(length: int) -> st.SearchStrategy[str]:
    good = st.text(HEX, min_size=length, max_size=length)
    return st.one_of(
        good,
        good,
        good.map(str.upper),
        st.text(HEX, min_size=length - 1, max_size=length + 1),
        st.text(HEX + "g ,é\n", min_size=length, max_size=length),
        st.just(""),
    )


times = st.one_of(st.integers(0, 2**40), st.integers(-5, 5), st.integers(MAX_NS - 2, MAX_NS + 2))
spans = st.builds(
    lambda trace, span, parent, start, end: Span(trace, span, parent, "s", 1, start, end, 0, "", {}, Resource()),
    ids(32),
    ids(16),
    st.one_of(st.just(""), ids(16)),
    times,
    times,
)


def one_by_one(span: Span) -> bool:
    """What the scan admits, written plainly: the specification."""
    return (
        0 < span.start_ns <= span.end_ns <= MAX_NS  # 0: no time (OTLP JSON leaves zero times out)
        and re.fullmatch("[0-9a-f]{32}", span.trace_id) is not None
        and re.fullmatch("[0-9a-f]{16}", span.span_id) is not None
        and (span.parent_span_id == "" or re.fullmatch("[0-9a-f]{16}", span.parent_span_id) is not None)
    )


@settings(max_examples=500, deadline=None)
@given(batch=st.lists(spans, max_size=8))
def test_a_batch_admits_and_counts_exactly_what_span_by_span_checks_do(batch: list[Span]) -> None:
    scan = Scan([])
    assert _admitted(list(batch), scan) == [s for s in batch if one_by_one(s)]
    assert scan.spans_read == len(batch)
    assert sum(count for count, _ in scan.rejected.values()) == sum(not one_by_one(s) for s in batch)


def test_progress_ticks_once_per_4096_spans_read() -> None:
    scan = Scan([])
    ticks: list[int] = []
    span = Span("a" * 32, "b" * 16, "", "s", 1, 1, 2, 0, "", {}, Resource())
    for _ in range(100):
        _admitted([span] * 250, scan, lambda s: ticks.append(s.spans_read))
    assert ticks == [4250, 8250, 12500, 16500, 20500, 24750]  # the first count past each multiple of 4096


class ListSource:
    """Spans held in a list: the scan's own contract, with no format in between."""

    def __init__(self, spans: list[Span]) -> None:
        self.spans_ = spans
        self.partial: list[str] = []

    def describe(self) -> str:
        return "a list"

    def batches(self, wanted: object = None) -> Iterator[list[Span]]:
        yield self.spans_

    def spans_for_modules(self, module_ids: object, since_ns: int, wanted: object = None) -> Iterator[Span]:
        return iter(())

    def close(self) -> None:
        pass


def test_a_scan_whose_settled_summaries_could_not_go_to_disk_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from moduletrace.analysis import _spill

    def unopenable() -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(_spill, "Disk", unopenable)
    # The builders' trace ids ("...tf1") are no hex: made hex, one for one, as the scan admits only those.
    spans = [s._replace(trace_id=hashlib.md5(s.trace_id.encode()).hexdigest()) for s in fillers(120 * 60_000)]
    detector = RaceDetector(settle_after_s=60, settled_in_memory=10)
    warnings: list[str] = []
    scan = read([ListSource(spans)], detector, race_wanted, ScanOptions(), warn=warnings.append)  # type: ignore[list-item]
    assert scan.lifecycle_spans == len(spans)
    assert len(warnings) == 1 and "kept in memory" in warnings[0] and "unable to open" in warnings[0]
    assert detector.report().loads == 300  # judged all the same
