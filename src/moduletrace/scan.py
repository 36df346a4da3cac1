"""The pipeline both commands and the demo run: sources -> normalised spans -> analysis -> report.

::

    options = ScanOptions(files=["spans/*.jsonl"])
    report, scan = races(options)                # a RaceReport, and what the scan read
    report, scan = diagnose(options)             # a DiagnosisReport

The CLI only parses flags into :class:`ScanOptions`, calls one of these and renders the report.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter, le
from typing import TYPE_CHECKING, Protocol

from moduletrace.analysis.races import DEFAULT_SKEW_TOLERANCE_MS, LoadScope, RaceDetector
from moduletrace.analysis.races import wanted as race_wanted
from moduletrace.analysis.report import RaceReport
from moduletrace.errors import BudgetExhausted, EmptyScanError, InputError
from moduletrace.spans import CheckedSpans, Span, Wanted

if TYPE_CHECKING:
    from moduletrace.analysis.database import DatabaseMetrics
    from moduletrace.analysis.diagnosis import DiagnosisReport
    from moduletrace.sources import Source
    from moduletrace.sources.http import Auth

#: At most this many modules are looked up by id in a backend (creations outside the window).
MAX_MODULE_LOOKUPS = 500
_HOUR_NS = 3600 * 10**9
#: OTLP times are unsigned 64-bit nanoseconds: nothing later exists on the wire (2554-07-21).
_MAX_NS = 2**64 - 1
_TRACE_ID = re.compile(r"[0-9a-f]{32}").fullmatch
_SPAN_ID = re.compile(r"[0-9a-f]{16}").fullmatch
_HEX_DIGITS = b"0123456789abcdef"
_TRACE, _SPAN, _PARENT, _START, _END = (itemgetter(i) for i in (0, 1, 2, 5, 6))  # Span's fields


@dataclass(frozen=True)
class ScanOptions:
    """What to read and how to judge it."""

    files: Sequence[str] = ()
    metrics: Sequence[str] = ()  # the metrics archive(s), for the database side of diagnose
    jaeger: str | None = None
    tempo: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    service: str | None = None
    module: str | None = None
    lookback_s: float = 86400.0
    skew_tolerance_ms: float = DEFAULT_SKEW_TOLERANCE_MS
    derive_bounds: bool = True
    settle_after_s: float | None = 3600.0
    auth: Auth | None = None
    limit: int = 1000
    timeout_s: float = 30.0
    max_requests: int = 10_000  # over all backends (sources.http.DEFAULT_MAX_REQUESTS)
    log: Callable[[str], None] | None = None  # backend requests, for --verbose

    @property
    def from_backend(self) -> bool:
        return bool(self.jaeger or self.tempo)

    def window(self) -> tuple[int | None, int | None]:
        """The load window; a backend needs both ends (default: the last hour)."""
        start, end = self.start_ns, self.end_ns
        if self.from_backend:
            end = end if end is not None else time.time_ns()
            start = start if start is not None else end - _HOUR_NS
        return start, end


@dataclass
class Scan:
    """What a scan read: its sources, how many spans, and what it could not read whole."""

    sources: list[Source]
    spans_read: int = 0
    lifecycle_spans: int = 0
    partial: list[str] = field(default_factory=list)
    #: Spans skipped as impossible, by reason: (count, the first one's trace and span ids).
    rejected: dict[str, tuple[int, str]] = field(default_factory=dict)

    def trace_url(self, trace_id: str) -> str | None:
        for source in self.sources:
            url = source.trace_url(trace_id)
            if url is not None:
                return url
        return None

    @property
    def links(self) -> bool:
        return any(s.trace_url("0" * 32) is not None for s in self.sources)


class SpanSink(Protocol):
    """What a scan feeds: the race detector, or the diagnoser around it."""

    def add(self, span: Span) -> None: ...

    def modules_without_creation(self) -> list[str]: ...

    @property
    def lifecycle_spans(self) -> int: ...

    @property
    def settled_problem(self) -> str: ...


def open_sources(options: ScanOptions, warn: Callable[[str], None]) -> list[Source]:
    """The sources the options name, ready to read."""
    if not (options.files or options.from_backend):
        raise InputError("give a source: --file PATH, --jaeger URL or --tempo URL")
    if options.skew_tolerance_ms < 0:
        raise InputError("--skew-tolerance must be >= 0")
    if options.limit < 1:
        raise InputError("--limit must be >= 1")
    if options.max_requests < 1:
        raise InputError("--max-requests must be >= 1")
    sources: list[Source] = []
    if options.files:
        from moduletrace.sources.file import FileSource

        sources.append(FileSource(options.files, warn))
    if options.from_backend:
        from moduletrace.sources.http import Auth, Backend, RequestBudget

        auth = options.auth or Auth()
        budget = RequestBudget(options.max_requests)
        start, end = options.window()
        assert start is not None and end is not None
        try:
            if options.jaeger:
                from moduletrace.sources.jaeger import JaegerSource

                backend = Backend(
                    options.jaeger, auth, "Jaeger", timeout=options.timeout_s, log=options.log, budget=budget
                )
                sources.append(JaegerSource(backend, start, end, options.service, options.limit, warn))
            if options.tempo:
                from moduletrace.sources.tempo import TempoSource

                backend = Backend(
                    options.tempo, auth, "Tempo", timeout=options.timeout_s, log=options.log, budget=budget
                )
                sources.append(TempoSource(backend, start, end, options.service, options.limit, warn))
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return sources


def read(
    sources: list[Source],
    sink: SpanSink,
    wanted: Wanted,
    options: ScanOptions,
    tick: Callable[[Scan], None] | None = None,
    warn: Callable[[str], None] = lambda _: None,
    claim: str = "no race",
) -> Scan:
    """Feed every span of the sources to ``sink``, then the creations of loads whose creation lies
    outside the window (looked up by module id). Raises EmptyScanError when no lifecycle span came:
    an empty answer is no evidence of ``claim``."""
    scan = Scan(sources)
    start, _ = options.window()
    try:
        with _collector_paused():
            try:
                add = sink.add
                for source in sources:
                    for batch in source.batches(wanted):
                        for span in _admitted(batch, scan, tick):
                            add(span)
                missing = sink.modules_without_creation()
                if missing and start is not None:
                    since = start - int(options.lookback_s * 1e9)
                    for source in sources:
                        for span in source.spans_for_modules(missing[:MAX_MODULE_LOOKUPS], since, wanted):
                            for admitted in _admitted([span], scan):
                                add(admitted)
                    if len(missing) > MAX_MODULE_LOOKUPS and options.from_backend:
                        scan.partial.append(
                            f"creation searched by module id for {MAX_MODULE_LOOKUPS} of {len(missing)} modules only"
                        )
            except BudgetExhausted as exc:  # what was read is judged, as a partial scan
                scan.partial.append(str(exc))
        for source in sources:
            scan.partial.extend(source.partial)
    finally:
        for source in sources:
            source.close()
    for reason, (count, first) in scan.rejected.items():
        skipped = f"{count} span{'s' if count > 1 else ''} skipped: {reason} (first: {first})"
        warn(skipped)
        scan.partial.append(skipped)  # a skipped span may have been the race, or the failed load
    if sink.settled_problem:
        warn(sink.settled_problem)
    scan.lifecycle_spans = sink.lifecycle_spans
    if not scan.lifecycle_spans:
        searched = "; ".join(s.describe() for s in sources) or "no source"
        window = "" if not options.from_backend else " in the window"
        also = f" for service {options.service}" if options.service and not options.from_backend else ""
        raise EmptyScanError(
            f"no lifecycle span found in {searched}{window}{also} ({scan.spans_read} spans read{_partial(scan)}): "
            f"nothing was judged, so this is no evidence of '{claim}'"
        )
    return scan


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused; resumed by the outermost pause only.

    A scan builds only acyclic data (tuples, dicts of strings): reference counting frees it, and
    the collector's passes over a growing heap would cost a third of the scan. Its first pass once
    resumed walks every object made while paused: the commands let the scan's state go first.
    """
    resume = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if resume:
            gc.enable()


def _admitted(batch: list[Span], scan: Scan, tick: Callable[[Scan], None] | None = None) -> list[Span]:
    """The spans, counted, without those no clock or id could have produced (counted apart).

    A batch is checked whole first, in C (id lengths as sets, the joined ids' characters, times by
    min/max), and span by span only when that check fails: the usual batch costs no Python per span.
    """
    before = scan.spans_read
    scan.spans_read = count = before + len(batch)
    if tick is not None and count >> 12 != before >> 12:  # every 4096 spans
        tick(scan)
    if batch.__class__ is CheckedSpans or _admissible(batch):
        return batch
    kept = []
    for span in batch:
        start_ns, end_ns = span.start_ns, span.end_ns
        if 0 < start_ns <= end_ns <= _MAX_NS and _TRACE_ID(span.trace_id) and _SPAN_ID(span.span_id):
            parent = span.parent_span_id
            if not parent or _SPAN_ID(parent):
                kept.append(span)
                continue
        _reject(scan, span)
    return kept


def _admissible(batch: list[Span]) -> bool:
    """Whether every span of the batch has times in 0 < start <= end <= 2**64-1 and lower-case hex ids."""
    if not batch:
        return True
    try:
        starts = list(map(_START, batch))
        ends = list(map(_END, batch))
        if not (min(starts) > 0 and max(ends) <= _MAX_NS and all(map(le, starts, ends))):
            return False
        traces, spans, parents = list(map(_TRACE, batch)), list(map(_SPAN, batch)), list(map(_PARENT, batch))
        if {*map(len, traces)} != {32} or {*map(len, spans)} != {16} or not {*map(len, parents)} <= {0, 16}:
            return False
        # Every character a lower-case hex digit: nothing left once they are deleted.
        return not "".join(chain(traces, spans, parents)).encode("ascii").translate(None, _HEX_DIGITS)
    except (TypeError, UnicodeEncodeError):  # not ints, not strings, not ASCII: span by span says which
        return False


def _reject(scan: Scan, span: Span) -> None:
    if span.start_ns == 0:
        reason = "no start time (OTLP JSON leaves a zero time out: the span never had one)"
    elif not 0 <= span.start_ns <= _MAX_NS or not 0 <= span.end_ns <= _MAX_NS:
        reason = "a time before 1970 or past what OTLP can hold"
    elif span.end_ns < span.start_ns:
        reason = "it ends before it starts"
    else:
        reason = "a trace, span or parent id that is not lower-case hex of 32/16 characters"
    count, first = scan.rejected.get(reason, (0, ""))
    if not first:
        first = f"trace {span.trace_id[:40]!r}, span {span.span_id[:20]!r}, {span.name[:60]!r}"
    scan.rejected[reason] = (count + 1, first)


def races(
    options: ScanOptions, warn: Callable[[str], None] = lambda _: None, tick: Callable[[Scan], None] | None = None
) -> tuple[RaceReport, Scan]:
    """The race rule over every load the options select."""
    detector = _detector(options)
    with _collector_paused():
        scan = read(open_sources(options, warn), detector, race_wanted, options, tick, warn)
        report = detector.report()
        del detector  # freed here, by reference counting, before the collector resumes
    _require_loads(report.loads, scan, options)
    return report, scan


def diagnose(
    options: ScanOptions, warn: Callable[[str], None] = lambda _: None, tick: Callable[[Scan], None] | None = None
) -> tuple[DiagnosisReport, Scan]:
    """The cause of every failed load the options select."""
    diagnosis, _, scan = incident(options, warn, tick, claim="no failed load")
    return diagnosis, scan


def incident(
    options: ScanOptions,
    warn: Callable[[str], None] = lambda _: None,
    tick: Callable[[Scan], None] | None = None,
    claim: str = "no race",
) -> tuple[DiagnosisReport, RaceReport, Scan]:
    """Both answers from one read: the cause of every failed load, and the race rule over every load."""
    from moduletrace.analysis.diagnosis import Diagnoser
    from moduletrace.analysis.diagnosis import wanted as diagnosis_wanted

    # The metrics first: a bad --metrics is bad input, said before a long read of the spans.
    database = _database(options.metrics, warn) if options.metrics else None
    detector = _detector(options)
    with _collector_paused():
        diagnoser = Diagnoser(detector)
        scan = read(open_sources(options, warn), diagnoser, diagnosis_wanted, options, tick, warn, claim)
        diagnosis, races = diagnoser.reports()
        # Freed here, by reference counting, before the collector resumes: the detector's hook to
        # the diagnoser is the one cycle between them.
        detector.on_settled = None
        del diagnoser, detector
    if database is not None:
        from moduletrace.analysis.database import attach

        attach(diagnosis, database)
    _require_loads(races.loads, scan, options, claim)
    return diagnosis, races, scan


def _database(patterns: Sequence[str], warn: Callable[[str], None]) -> DatabaseMetrics | None:
    from moduletrace.analysis.database import DatabaseMetrics
    from moduletrace.sources.metrics import KEPT_PREFIXES, read_metrics

    metrics = DatabaseMetrics(read_metrics(patterns, warn))
    if not metrics:
        warn(
            f"--metrics {' '.join(patterns)}: no database, pool or broker metrics in it "
            f"({', '.join(prefix + '*' for prefix in KEPT_PREFIXES)})"
        )
        return None
    return metrics


def _detector(options: ScanOptions) -> RaceDetector:
    """The race detector the options ask for: its rule's flags, its settling, the loads in scope."""
    start, end = options.window()
    return RaceDetector(
        options.skew_tolerance_ms,
        derive_bounds=options.derive_bounds,
        settle_after_s=options.settle_after_s,
        scope=LoadScope(options.module, options.service, start, end),
    )


def _require_loads(loads: int, scan: Scan, options: ScanOptions, claim: str = "no race") -> None:
    """Zero loads judged is no answer: say what was searched and exit 3, never "no race"."""
    if loads:
        return
    of = " ".join(
        w
        for w in (options.service and f"service {options.service}", options.module and f"module {options.module}")
        if w
    )
    window = options.start_ns is not None or options.end_ns is not None
    which = (f" of {of}" if of else "") + (" in the window" if window else "")
    searched = "; ".join(s.describe() for s in scan.sources)
    raise EmptyScanError(
        f"no load{which} found in {searched} ({scan.lifecycle_spans} lifecycle spans "
        f"read{_partial(scan)}): nothing was judged, so this is no evidence of '{claim}'"
    )


def _partial(scan: Scan) -> str:
    if not scan.partial:
        return ""
    more = f" and {len(scan.partial) - 1} more" if len(scan.partial) > 1 else ""
    return f"; the scan was partial: {scan.partial[0]}{more}"
