"""Many loads of one module cost time in proportion to their number, not its square.

Measured as a ratio in one run (4x the loads must take well under 16x the time), never as an
absolute time: the machine running the tests may be slow or busy.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from moduletrace.analysis.diagnosis import Diagnoser
from moduletrace.analysis.races import RaceDetector
from moduletrace.spans import Span
from tests.support.builders import creation, load


def loads_of_one_module(count: int, shape: str) -> list[Span]:
    """One creation and ``count`` loads of m-1, 10 us apart, half of them failed.

    ``distinct``: each load in its own trace, its query a child of its request. ``one-trace``: all
    in one trace (a batch job). ``one-trace-no-parent``: all in one trace and the query's parent is
    not the request (a handler span sits between them), so queries are matched by time.
    """
    spans = creation("m-1", "c", 10)
    for n in range(count):
        trace = f"{n + 1:x}" if shape == "distinct" else "c"
        request, query = load("m-1", trace, 20 + n * 0.01, failed=not n % 2)
        if shape == "one-trace-no-parent":
            query = query._replace(parent_span_id=format(0xFFFF0000 + n, "016x"))
        spans += [request, query]
    return spans


def races_seconds(spans: list[Span]) -> float:
    with _as_the_scan_runs():
        started = time.perf_counter()
        detector = RaceDetector()
        detector.add_all(spans)
        report = detector.report()
        seconds = time.perf_counter() - started
    assert report.loads == len(spans) // 2 - 1
    return seconds


def diagnose_seconds(spans: list[Span]) -> float:
    with _as_the_scan_runs():
        started = time.perf_counter()
        diagnoser = Diagnoser()
        for span in spans:
            diagnoser.add(span)
        report = diagnoser.report()
        seconds = time.perf_counter() - started
    assert report.loads == len(spans) // 2 - 1
    return seconds


@contextmanager
def _as_the_scan_runs() -> Iterator[None]:
    """Without the cyclic garbage collector, as moduletrace.scan runs: its passes over a growing heap
    are superlinear themselves and would hide what is measured here."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("shape", ["distinct", "one-trace", "one-trace-no-parent"])
@pytest.mark.parametrize("command", [races_seconds, diagnose_seconds], ids=["races", "diagnose"])
def test_forty_thousand_loads_of_one_module_cost_near_linear_time(shape: str, command: object) -> None:
    small, large = loads_of_one_module(10_000, shape), loads_of_one_module(40_000, shape)
    timed = command  # type: ignore[assignment]
    small_s = min(timed(small) for _ in range(2))  # type: ignore[operator]
    large_s = timed(large)  # type: ignore[operator]
    ratio = large_s / small_s
    assert ratio < 8, f"10k loads {small_s:.2f} s, 40k loads {large_s:.2f} s: x{ratio:.1f} for 4x the loads"
