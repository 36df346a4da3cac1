"""The race rule of shared/design.md, as pure functions over normalised spans.

For a module M, ``commit_end`` is the end of its first successful ``module_create_db_commit``
span and ``cache_end`` that of its first successful ``module_create_cache_update`` span. For a
load L of M, ``t_L`` is the start of L's first ``module_load_db_query`` span (of its
``module_load_request`` span when it has none). L raced a stage when ``t_L`` < the stage's end;
``margin_ms`` = stage end - ``t_L`` (positive: the load came first).

Timestamps compare exactly when both spans share a clock (same process, or same host). Across
hosts the margin must clear the clock offset: a bound derived from client/server RPC pairs
between the two hosts when the data has them, else the skew tolerance; inside it the verdict is
``ambiguous``, never ``race``. Every verdict carries the spans, instants and rule that decided it.

Feed spans with :meth:`RaceDetector.add` in any order (duplicates are ignored), then call
:meth:`RaceDetector.report`. State is kept per module, compactly: memory grows with the number
of modules, not with the number of spans read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from moduletrace.analysis.skew import ClockOffsets, OffsetBound
from moduletrace.conventions import LIFECYCLE_SPAN_NAMES, MODULE_CANCELLED, MODULE_ID, MODULE_LINK_TYPE, STAGES
from moduletrace.spans import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, Resource, Span

Verdict = Literal["race", "ambiguous", "clean"]
CREATION_STAGES = ("db_commit", "cache_update")
DEFAULT_SKEW_TOLERANCE_MS = 5.0


@dataclass(frozen=True, slots=True)
class StageCheck:
    """One load compared with one creation stage."""

    stage: str
    verdict: Verdict
    margin_ms: float
    stage_span_id: str
    stage_end_ns: int
    basis: str  # "same process", "same host", "derived bound", "tolerance"
    bound_ms: tuple[float, float] | None  # offset interval used across hosts (ms), else None
    explanation: str


@dataclass(frozen=True, slots=True)
class RaceVerdict:
    """A load that raced (or may have raced) its module's creation, with the evidence."""

    module_id: str
    trace_id: str
    load_span_id: str
    load_service: str
    load_start_ns: int  # t_L
    load_instant: str  # which span's start t_L is
    load_failed: bool
    verdict: Verdict
    same_trace: bool
    matched_by: str  # "trace", "link", "module.id"
    creation_trace_id: str
    checks: tuple[StageCheck, ...]

    @property
    def preceded(self) -> list[str]:
        """The stages this load came before (for an ambiguous verdict: the undecided ones)."""
        wanted = "race" if self.verdict == "race" else "ambiguous"
        return [c.stage for c in self.checks if c.verdict == wanted]

    @property
    def margin_ms(self) -> dict[str, float]:
        return {c.stage: c.margin_ms for c in self.checks}


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A load that could not be compared with a creation, and why."""

    module_id: str
    trace_id: str
    load_span_id: str
    load_service: str
    load_start_ns: int
    reason: str


@dataclass(frozen=True, slots=True)
class FailedCommit:
    """A creation whose commit failed and never succeeded later."""

    module_id: str
    trace_id: str
    span_id: str
    service: str
    end_ns: int
    error: str


@dataclass(slots=True)
class RaceReport:
    races: list[RaceVerdict] = field(default_factory=list)
    ambiguous: list[RaceVerdict] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)
    failed_commits: list[FailedCommit] = field(default_factory=list)
    clean: int = 0
    loads: int = 0
    modules: int = 0
    lifecycle_spans: int = 0
    spans_without_module_id: int = 0
    duplicates: int = 0
    inconsistent_clocks: list[tuple[str, str]] = field(default_factory=list)


# --- compact per-module state ------------------------------------------------------------------


@dataclass(slots=True)
class _StageSpan:
    span_id: str
    end_ns: int
    ok: bool
    resource: Resource
    error: str


@dataclass(slots=True)
class _Creation:
    trace_id: str
    start_ns: int | None = None
    commits: list[_StageSpan] = field(default_factory=list)
    caches: list[_StageSpan] = field(default_factory=list)


@dataclass(slots=True)
class _LoadSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    failed: bool
    resource: Resource
    linked_traces: tuple[str, ...]


@dataclass(slots=True)
class _Module:
    creations: dict[str, _Creation] = field(default_factory=dict)
    requests: list[_LoadSpan] = field(default_factory=list)
    queries: list[_LoadSpan] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


def wanted(name: str, kind: int) -> bool:
    """The spans the detector uses: lifecycle spans, and client/server spans for clock bounds."""
    return name in LIFECYCLE_SPAN_NAMES or kind == KIND_CLIENT or kind == KIND_SERVER


class RaceDetector:
    """Applies the race rule to spans fed in any order."""

    def __init__(self, skew_tolerance_ms: float = DEFAULT_SKEW_TOLERANCE_MS, derive_bounds: bool = True) -> None:
        self.tolerance_ns = int(skew_tolerance_ms * 1_000_000)
        self.derive_bounds = derive_bounds
        self.offsets = ClockOffsets()
        self._modules: dict[str, _Module] = {}
        self._lifecycle = 0
        self._without_id = 0
        self._duplicates = 0

    # -- input ------------------------------------------------------------------------------

    def add(self, span: Span) -> None:
        if self.derive_bounds and (span.kind == KIND_CLIENT or span.kind == KIND_SERVER):
            self.offsets.add(span)
        stage = STAGES.get(span.name)
        if stage is None:
            return
        raw_id = span.attributes.get(MODULE_ID)
        if raw_id is None or raw_id == "":
            self._without_id += 1
            return
        module_id = raw_id if isinstance(raw_id, str) else str(raw_id)
        module = self._modules.get(module_id)
        if module is None:
            module = self._modules[module_id] = _Module()
        key = span.trace_id + span.span_id
        if key in module.seen:
            self._duplicates += 1
            return
        module.seen.add(key)
        self._lifecycle += 1
        failed = span.status_code == STATUS_ERROR or bool(span.attributes.get(MODULE_CANCELLED))
        if stage in ("create_start", "db_commit", "cache_update"):
            creation = module.creations.get(span.trace_id)
            if creation is None:
                creation = module.creations[span.trace_id] = _Creation(span.trace_id)
            if stage == "create_start":
                creation.start_ns = span.start_ns if creation.start_ns is None else min(creation.start_ns, span.start_ns)
            else:
                record = _StageSpan(span.span_id, span.end_ns, not failed, span.resource, _error(span))
                (creation.commits if stage == "db_commit" else creation.caches).append(record)
        else:
            load = _LoadSpan(
                span.trace_id,
                span.span_id,
                span.parent_span_id,
                span.start_ns,
                span.end_ns,
                failed,
                span.resource,
                tuple(
                    link.trace_id
                    for link in span.links
                    if link.attributes.get(MODULE_LINK_TYPE, "creation") == "creation"
                ),
            )
            (module.requests if stage == "load_request" else module.queries).append(load)

    def add_all(self, spans: Iterable[Span]) -> None:
        for span in spans:
            self.add(span)

    def modules_without_creation(self) -> list[str]:
        """Modules with loads but no creation span: their creation may lie in another trace."""
        return sorted(m for m, state in self._modules.items() if not state.creations and (state.requests or state.queries))

    # -- output -----------------------------------------------------------------------------

    def report(
        self, module: str | None = None, service: str | None = None, start_ns: int | None = None, end_ns: int | None = None
    ) -> RaceReport:
        """Verdicts for every load (optionally: of one module, served by one service, in a window)."""
        report = RaceReport(
            lifecycle_spans=self._lifecycle,
            spans_without_module_id=self._without_id,
            duplicates=self._duplicates,
            inconsistent_clocks=self.offsets.inconsistent_pairs(),
        )
        for module_id in sorted(self._modules):
            if module is not None and module_id != module:
                continue
            state = self._modules[module_id]
            report.modules += 1
            for creation in state.creations.values():
                failure = _failed_commit(module_id, creation)
                if failure is not None:
                    report.failed_commits.append(failure)
            for load, instant, t_load in _loads(state):
                if service is not None and load.resource.service_name != service:
                    continue
                if (start_ns is not None and t_load < start_ns) or (end_ns is not None and t_load > end_ns):
                    continue
                report.loads += 1
                outcome = self._judge(module_id, state, load, instant, t_load)
                if isinstance(outcome, Unmatched):
                    report.unmatched.append(outcome)
                elif outcome.verdict == "race":
                    report.races.append(outcome)
                elif outcome.verdict == "ambiguous":
                    report.ambiguous.append(outcome)
                else:
                    report.clean += 1
        for entries in (report.races, report.ambiguous, report.unmatched):
            entries.sort(key=lambda e: (e.load_start_ns, e.module_id))
        return report

    def _judge(self, module_id: str, state: _Module, load: _LoadSpan, instant: str, t_load: int) -> RaceVerdict | Unmatched:
        def unmatched(reason: str) -> Unmatched:
            return Unmatched(module_id, load.trace_id, load.span_id, load.resource.service_name, t_load, reason)

        if not state.creations:
            return unmatched("no creation spans for this module in the data")
        creation, matched_by = _creation_for(state, load, t_load)
        checks = []
        missing = []
        for stage, records in (("db_commit", creation.commits), ("cache_update", creation.caches)):
            first_ok = min((r for r in records if r.ok), key=lambda r: r.end_ns, default=None)
            if first_ok is None:
                if records:
                    missing.append(f"its {stage} failed")
                else:
                    missing.append(f"no {stage} span")
                continue
            checks.append(self._check(stage, first_ok, load, t_load))
        if not checks:
            return unmatched(f"creation in trace {creation.trace_id} is partial: " + ", ".join(missing))
        verdicts = {c.verdict for c in checks}
        verdict: Verdict = "race" if "race" in verdicts else "ambiguous" if "ambiguous" in verdicts else "clean"
        return RaceVerdict(
            module_id=module_id,
            trace_id=load.trace_id,
            load_span_id=load.span_id,
            load_service=load.resource.service_name,
            load_start_ns=t_load,
            load_instant=instant,
            load_failed=load.failed,
            verdict=verdict,
            same_trace=creation.trace_id == load.trace_id,
            matched_by=matched_by,
            creation_trace_id=creation.trace_id,
            checks=tuple(checks),
        )

    def _check(self, stage: str, record: _StageSpan, load: _LoadSpan, t_load: int) -> StageCheck:
        margin = record.end_ns - t_load
        margin_ms = round(margin / 1e6, 3)
        shared = load.resource.shares_clock_with(record.resource)
        what = f"{stage} span {record.span_id} ended {margin_ms:+.3f} ms after the load began"
        if shared is not None:
            verdict: Verdict = "race" if margin > 0 else "clean"
            return StageCheck(stage, verdict, margin_ms, record.span_id, record.end_ns, shared, None,
                              f"{what}; {shared}, timestamps compare exactly")
        bound: OffsetBound | None = None
        if self.derive_bounds:
            bound = self.offsets.bound(record.resource.clock, load.resource.clock)
        if bound is not None:
            # theta = clock(load) - clock(stage) in [low, high]: the load's instant on the
            # stage's clock is t_load - theta, so the true margin lies in [margin+low, margin+high].
            low, high = margin + bound.low_ns, margin + bound.high_ns
            basis = "derived bound"
            bound_ms = (round(bound.low_ns / 1e6, 3), round(bound.high_ns / 1e6, 3))
            rule = (f"clock offset {load.resource.clock} - {record.resource.clock} in "
                    f"[{bound_ms[0]}, {bound_ms[1]}] ms from {bound.pairs} client/server pairs")
        else:
            low, high = margin - self.tolerance_ns, margin + self.tolerance_ns
            basis = "tolerance"
            tolerance_ms = round(self.tolerance_ns / 1e6, 3)
            bound_ms = (-tolerance_ms, tolerance_ms)
            rule = f"different hosts, skew tolerance {tolerance_ms} ms"
        if low > 0:
            verdict = "race"
        elif high <= 0:
            verdict = "clean"
        else:
            verdict = "ambiguous"
        return StageCheck(stage, verdict, margin_ms, record.span_id, record.end_ns, basis, bound_ms, f"{what}; {rule}")


def _error(span: Span) -> str:
    if span.attributes.get(MODULE_CANCELLED):
        return "cancelled"
    if span.status_code != STATUS_ERROR:
        return ""
    return str(span.attributes.get("error.type") or span.status_message or "error")


def _loads(state: _Module) -> list[tuple[_LoadSpan, str, int]]:
    """Each load with its t_L: a request with its first query, or a query with no request."""
    out: list[tuple[_LoadSpan, str, int]] = []
    claimed: set[str] = set()
    by_trace: dict[str, list[_LoadSpan]] = {}
    for query in state.queries:
        by_trace.setdefault(query.trace_id, []).append(query)
    for request in state.requests:
        candidates = [
            q for q in by_trace.get(request.trace_id, ())
            if q.parent_span_id == request.span_id or request.start_ns <= q.start_ns <= max(request.end_ns, request.start_ns)
        ]
        direct = [q for q in candidates if q.parent_span_id == request.span_id]
        first = min(direct or candidates, key=lambda q: q.start_ns, default=None)
        if first is None:
            out.append((request, "module_load_request start", request.start_ns))
        else:
            for q in candidates:
                claimed.add(q.span_id)
            load = _LoadSpan(request.trace_id, request.span_id, request.parent_span_id, request.start_ns,
                             request.end_ns, request.failed or first.failed, first.resource, request.linked_traces)
            out.append((load, "module_load_db_query start", first.start_ns))
    for query in state.queries:
        if query.span_id not in claimed:
            out.append((query, "module_load_db_query start", query.start_ns))
    return out


def _creation_for(state: _Module, load: _LoadSpan, t_load: int) -> tuple[_Creation, str]:
    if load.trace_id in state.creations:
        return state.creations[load.trace_id], "trace"
    for trace_id in load.linked_traces:
        if trace_id in state.creations:
            return state.creations[trace_id], "link"
    creations = list(state.creations.values())

    def started(c: _Creation) -> int:
        if c.start_ns is not None:
            return c.start_ns
        ends = [r.end_ns for r in (*c.commits, *c.caches)]
        return min(ends) if ends else 0

    before = [c for c in creations if started(c) <= t_load]
    chosen = max(before, key=started) if before else min(creations, key=started)
    return chosen, "module.id"


def _failed_commit(module_id: str, creation: _Creation) -> FailedCommit | None:
    if not creation.commits or any(r.ok for r in creation.commits):
        return None
    last = max(creation.commits, key=lambda r: r.end_ns)
    return FailedCommit(module_id, creation.trace_id, last.span_id, last.resource.service_name, last.end_ns, last.error)
