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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from sys import intern
from typing import Any, Literal, NamedTuple

from moduletrace.analysis.skew import ClockOffsets, OffsetBound
from moduletrace.conventions import LIFECYCLE_SPAN_NAMES, MODULE_CANCELLED, MODULE_ID, MODULE_LINK_TYPE, STAGES
from moduletrace.spans import BARE, KIND_CLIENT, KIND_SERVER, STATUS_ERROR, Resource, Span

Verdict = Literal["race", "ambiguous", "clean"]
CREATION_STAGES = ("db_commit", "cache_update")
_UNKNOWN: Any = object()
_EVIDENCE_PREFIXES = ("module.data.", "module.cache.")
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


class _StageSpan(NamedTuple):
    span_id: str
    end_ns: int
    ok: bool
    resource: Resource
    error: str
    evidence: dict[str, Any] | None = None  # module.data.* / module.cache.* written by this stage


@dataclass(slots=True)
class _Creation:
    trace_id: str
    start_ns: int | None = None
    start_span_id: str = ""
    commits: list[_StageSpan] = field(default_factory=list)
    caches: list[_StageSpan] = field(default_factory=list)


class Load(NamedTuple):
    """One load: its request span (or a lone query span), judged at ``t_load``."""

    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    failed: bool
    resource: Resource
    linked_traces: tuple[str, ...]
    query_span_id: str = ""  # the first query's span, when the load has one


@dataclass(frozen=True)
class LoadScope:
    """Which loads a report covers: one module, loads served by one service, loads in a window."""

    module: str | None = None
    service: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None

    def includes(self, load: Load, t_load: int) -> bool:
        if self.service is not None and load.resource.service_name != self.service:
            return False
        if self.start_ns is not None and t_load < self.start_ns:
            return False
        return self.end_ns is None or t_load <= self.end_ns


class Judgement(NamedTuple):
    """A load and what the race rule says of it (None: clean)."""

    module_id: str
    load: Load
    instant: str
    t_load: int
    outcome: RaceVerdict | Unmatched | None


@dataclass(slots=True)
class _Module:
    creations: dict[str, _Creation] = field(default_factory=dict)
    requests: list[Load] = field(default_factory=list)
    queries: list[Load] = field(default_factory=list)
    bucket: int = -1  # the time bucket of its latest lifecycle span (settling)


def wanted(name: str, kind: int) -> object:
    """What the detector reads: lifecycle spans whole; client/server spans' timing, for clock bounds."""
    if name in LIFECYCLE_SPAN_NAMES:
        return True
    return BARE if kind == KIND_CLIENT or kind == KIND_SERVER else False


class RaceDetector:
    """Applies the race rule to spans fed in any order."""

    def __init__(
        self,
        skew_tolerance_ms: float = DEFAULT_SKEW_TOLERANCE_MS,
        derive_bounds: bool = True,
        settle_after_s: float | None = None,
        scope: LoadScope | None = None,
    ) -> None:
        """``settle_after_s``: judge a module's loads once the data has moved that far past its last
        lifecycle span, and keep only a summary of its creation (memory then follows the modules in
        flight); None keeps everything to the end. ``scope``: which loads to report."""
        self.tolerance_ns = int(skew_tolerance_ms * 1_000_000)
        self.derive_bounds = derive_bounds
        self.offsets = ClockOffsets()
        self.scope = scope or LoadScope()
        self._modules: dict[str, _Module] = {}
        self._lifecycle = 0
        self._without_id = 0
        self._duplicates = 0
        self._bounds: dict[tuple[str, str], OffsetBound | None] = {}
        self._settle_after_ns = None if settle_after_s is None else int(settle_after_s * 1e9)
        # Modules by the time bucket of their latest lifecycle span: a sweep settles the old buckets.
        self._bucket_ns = max(1_000_000_000, (self._settle_after_ns or 0) // 8)
        self._buckets: dict[int, list[str]] = {}
        self._watermark = 0
        self._settled = RaceReport()  # verdicts of loads already judged
        self._summaries: dict[str, tuple[_Summary, ...]] = {}  # settled modules: their creations only
        self._settled_modules: set[str] = set()

    # -- input ------------------------------------------------------------------------------

    def add(self, span: Span) -> None:
        # One unpacking instead of a dozen attribute reads: this runs for every span of a scan.
        (
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            start_ns,
            end_ns,
            status_code,
            _,
            attributes,
            resource,
            links,
        ) = span
        if (kind == KIND_CLIENT or kind == KIND_SERVER) and self.derive_bounds:
            self.offsets.add(span)
        stage = STAGES.get(name)
        if stage is None:
            return
        raw_id = attributes.get(MODULE_ID)
        if raw_id is None or raw_id == "":
            self._without_id += 1
            return
        module_id = raw_id if raw_id.__class__ is str else str(raw_id)
        module = self._modules.get(module_id)
        if module is None:
            module = self._modules[module_id] = _Module()
            summary = self._summaries.pop(module_id, None)
            if summary is not None:  # a late span of a settled module: it comes back in flight
                module.creations = {c.trace_id: _expand(c) for c in summary}
        if self._settle_after_ns is not None:
            bucket = end_ns // self._bucket_ns
            if bucket > module.bucket:
                module.bucket = bucket
                self._buckets.setdefault(bucket, []).append(module_id)
            if end_ns > self._watermark:
                self._watermark = end_ns
            if not self._lifecycle & 0x3FF:  # every 1024 lifecycle spans
                self._sweep()
        failed = status_code == STATUS_ERROR or attributes.get(MODULE_CANCELLED) is True
        trace_id = intern(trace_id)  # ids repeat across a module's spans: share one string
        if stage == "load_request" or stage == "load_db_query":
            loads = module.requests if stage == "load_request" else module.queries
            for other in loads:
                if other.span_id == span_id:  # a re-exported batch
                    self._duplicates += 1
                    return
            linked: tuple[str, ...] = ()
            if links:
                linked = tuple(
                    intern(link.trace_id)
                    for link in links
                    if link.attributes.get(MODULE_LINK_TYPE, "creation") == "creation"
                )
            loads.append(Load(trace_id, span_id, parent_span_id, start_ns, end_ns, failed, resource, linked))
        else:
            creation = module.creations.get(trace_id)
            if creation is None:
                creation = module.creations[trace_id] = _Creation(trace_id)
            if stage == "create_start":
                if creation.start_span_id == span_id:
                    self._duplicates += 1
                    return
                creation.start_span_id = creation.start_span_id or span_id
                creation.start_ns = start_ns if creation.start_ns is None else min(creation.start_ns, start_ns)
            else:
                records = creation.commits if stage == "db_commit" else creation.caches
                for record in records:
                    if record.span_id == span_id:
                        self._duplicates += 1
                        return
                evidence = None
                if "module.data.version" in attributes or "module.cache.version" in attributes:  # rare: cheap test
                    evidence = {k: v for k, v in attributes.items() if k.startswith(_EVIDENCE_PREFIXES)}
                records.append(
                    _StageSpan(span_id, end_ns, not failed, resource, _error(span) if failed else "", evidence)
                )
        self._lifecycle += 1

    def add_all(self, spans: Iterable[Span]) -> None:
        for span in spans:
            self.add(span)

    # -- settling: judging early what can no longer change ---------------------------------

    def _sweep(self) -> None:
        assert self._settle_after_ns is not None
        cutoff = (self._watermark - self._settle_after_ns) // self._bucket_ns
        self._bounds = {}  # the clock bounds may have tightened since the last sweep
        for bucket in sorted(b for b in self._buckets if b < cutoff):
            for module_id in self._buckets.pop(bucket):
                state = self._modules.get(module_id)
                # Settle a module only if nothing newer came since, and if it has a creation: a
                # load whose creation is not in yet stays, since its creation may still come.
                if state is not None and state.bucket == bucket and state.creations:
                    self._settle(module_id, state)

    def _settle(self, module_id: str, state: _Module) -> None:
        scope = self.scope
        settled = self._settled
        if module_id not in self._settled_modules and scope.module in (None, module_id):
            self._settled_modules.add(module_id)
            for creation in state.creations.values():
                failure = _failed_commit(module_id, creation)
                if failure is not None:
                    settled.failed_commits.append(failure)
        for judgement in self._judge_module(module_id, state, scope):
            settled.loads += 1
            _tally(settled, judgement.outcome)
        # Keep of each creation only what a later load is judged against.
        self._summaries[module_id] = tuple(_compact(c) for c in state.creations.values())
        del self._modules[module_id]

    def modules_without_creation(self) -> list[str]:
        """Modules with loads but no creation span: their creation may lie in another trace."""
        return sorted(
            m for m, state in self._modules.items() if not state.creations and (state.requests or state.queries)
        )

    # -- output -----------------------------------------------------------------------------

    def report(
        self,
        module: str | None = None,
        service: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> RaceReport:
        """Verdicts for every load (optionally: of one module, served by one service, in a window).

        With settling on, the scope is fixed at construction (``scope=``): loads judged early were
        judged in it, so a report for another scope would be wrong.
        """
        scope = self._scope_for(module, service, start_ns, end_ns)
        self._bounds = {}  # per report: the data may have grown
        settled = self._settled
        report = RaceReport(
            races=list(settled.races),
            ambiguous=list(settled.ambiguous),
            unmatched=list(settled.unmatched),
            failed_commits=list(settled.failed_commits),
            clean=settled.clean,
            loads=settled.loads,
            modules=len(self._settled_modules),
            lifecycle_spans=self._lifecycle,
            spans_without_module_id=self._without_id,
            duplicates=self._duplicates,
            inconsistent_clocks=self.offsets.inconsistent_pairs(),
        )
        for module_id in self._selected(scope.module):
            if module_id in self._settled_modules:
                continue  # counted, and its failed commits reported, when it settled
            report.modules += 1
            for creation in self._modules[module_id].creations.values():
                failure = _failed_commit(module_id, creation)
                if failure is not None:
                    report.failed_commits.append(failure)
        for judgement in self.judgements(module, service, start_ns, end_ns):
            report.loads += 1
            _tally(report, judgement.outcome)
        for entries in (report.races, report.ambiguous, report.unmatched):
            entries.sort(key=lambda e: (e.load_start_ns, e.module_id))
        report.failed_commits.sort(key=lambda f: (f.end_ns, f.module_id))
        return report

    def judgements(
        self,
        module: str | None = None,
        service: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[Judgement]:
        """Every load still in flight (all loads when settling is off) with the rule's outcome for it."""
        scope = self._scope_for(module, service, start_ns, end_ns)
        for module_id in self._selected(scope.module):
            yield from self._judge_module(module_id, self._modules[module_id], scope)

    def _judge_module(self, module_id: str, state: _Module, scope: LoadScope) -> Iterator[Judgement]:
        for load, instant, t_load in _loads(state):
            if scope.includes(load, t_load):
                yield Judgement(module_id, load, instant, t_load, self._judge(module_id, state, load, instant, t_load))

    def _scope_for(
        self, module: str | None, service: str | None, start_ns: int | None, end_ns: int | None
    ) -> LoadScope:
        asked = LoadScope(module, service, start_ns, end_ns)
        if asked == LoadScope():
            return self.scope
        if self._settled_modules or self._summaries:
            if asked != self.scope:
                raise ValueError("loads were judged early in the detector's scope; give the scope at construction")
        return asked

    def _selected(self, module: str | None) -> list[str]:
        if module is not None:
            return [module] if module in self._modules else []
        return sorted(self._modules)

    def creation_stage_attributes(self, module_id: str, trace_id: str) -> dict[str, Any]:
        """Evidence attributes recorded on a creation's successful stages (e.g. module.data.version)."""
        state = self._modules.get(module_id)
        creation = state.creations.get(trace_id) if state else None
        out: dict[str, Any] = {}
        for record in (*creation.commits, *creation.caches) if creation else ():
            if record.ok and record.evidence:
                out.update(record.evidence)
        return out

    def _judge(
        self, module_id: str, state: _Module, load: Load, instant: str, t_load: int
    ) -> RaceVerdict | Unmatched | None:
        """The verdict for one load; None when it is clean (most loads: kept cheap)."""

        def unmatched(reason: str) -> Unmatched:
            return Unmatched(module_id, load.trace_id, load.span_id, load.resource.service_name, t_load, reason)

        if not state.creations:
            return unmatched("no creation spans for this module in the data")
        creation, matched_by = _creation_for(state, load, t_load)
        judged: list[tuple[str, _StageSpan, int, Verdict, str, OffsetBound | None]] = []
        missing = []
        for stage, records in (("db_commit", creation.commits), ("cache_update", creation.caches)):
            if len(records) == 1:  # the usual case: one commit, one cache update
                first_ok = records[0] if records[0].ok else None
            else:
                first_ok = min((r for r in records if r.ok), key=_end, default=None)
            if first_ok is None:
                missing.append(f"its {stage} failed" if records else f"no {stage} span")
                continue
            judged.append((stage, first_ok, *self._compare(first_ok, load, t_load)))
        if not judged:
            return unmatched(f"creation in trace {creation.trace_id} is partial: " + ", ".join(missing))
        verdicts = [j[3] for j in judged]
        if "race" in verdicts:
            verdict: Verdict = "race"
        elif "ambiguous" in verdicts:
            verdict = "ambiguous"
        else:
            return None  # clean
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
            checks=tuple(
                _explain(stage, record, load, margin, stage_verdict, basis, bound)
                for stage, record, margin, stage_verdict, basis, bound in judged
            ),
        )

    def _compare(self, record: _StageSpan, load: Load, t_load: int) -> tuple[int, Verdict, str, OffsetBound | None]:
        """(margin in ns, verdict, clock basis, derived bound) for one stage against one load."""
        margin = record.end_ns - t_load
        shared = load.resource.shares_clock_with(record.resource)
        if shared is not None:
            return margin, ("race" if margin > 0 else "clean"), shared, None
        bound: OffsetBound | None = None
        if self.derive_bounds:
            pair = (record.resource.clock, load.resource.clock)
            bound = self._bounds.get(pair, _UNKNOWN)
            if bound is _UNKNOWN:
                bound = self._bounds[pair] = self.offsets.bound(*pair)
        if bound is not None:
            # theta = clock(load) - clock(stage) in [low, high]: the load's instant on the
            # stage's clock is t_load - theta, so the true margin lies in [margin+low, margin+high].
            low, high, basis = margin + bound.low_ns, margin + bound.high_ns, "derived bound"
        else:
            low, high, basis = margin - self.tolerance_ns, margin + self.tolerance_ns, "tolerance"
        verdict: Verdict = "race" if low > 0 else "clean" if high <= 0 else "ambiguous"
        return (
            margin,
            verdict,
            basis,
            bound if bound is not None else OffsetBound(-self.tolerance_ns, self.tolerance_ns, 0),
        )


def _end(record: _StageSpan) -> int:
    return record.end_ns


def _explain(
    stage: str,
    record: _StageSpan,
    load: Load,
    margin: int,
    verdict: Verdict,
    basis: str,
    bound: OffsetBound | None,
) -> StageCheck:
    margin_ms = round(margin / 1e6, 3)
    what = f"{stage} span {record.span_id} ended {margin_ms:+.3f} ms after the load began"
    if bound is None:
        return StageCheck(
            stage,
            verdict,
            margin_ms,
            record.span_id,
            record.end_ns,
            basis,
            None,
            f"{what}; {basis}, timestamps compare exactly",
        )
    bound_ms = (round(bound.low_ns / 1e6, 3), round(bound.high_ns / 1e6, 3))
    if basis == "derived bound":
        rule = (
            f"clock offset {load.resource.clock} - {record.resource.clock} in "
            f"[{bound_ms[0]}, {bound_ms[1]}] ms from {bound.pairs} client/server pairs"
        )
    else:
        rule = f"different hosts, skew tolerance {bound_ms[1]} ms"
    return StageCheck(stage, verdict, margin_ms, record.span_id, record.end_ns, basis, bound_ms, f"{what}; {rule}")


def _tally(report: RaceReport, outcome: RaceVerdict | Unmatched | None) -> None:
    if outcome is None:
        report.clean += 1
    elif isinstance(outcome, Unmatched):
        report.unmatched.append(outcome)
    elif outcome.verdict == "race":
        report.races.append(outcome)
    else:
        report.ambiguous.append(outcome)


class _Summary(NamedTuple):
    """A settled creation: what a later load is judged against, and no more."""

    trace_id: str
    start_ns: int | None
    commit: _StageSpan | None
    cache: _StageSpan | None


def _compact(creation: _Creation) -> _Summary:
    """Keep of a creation its first successful stages (or, where a stage never succeeded, its last failure)."""

    def keep(records: list[_StageSpan]) -> _StageSpan | None:
        ok = [r for r in records if r.ok]
        if ok:
            return min(ok, key=_end)
        return max(records, key=_end) if records else None

    return _Summary(creation.trace_id, creation.start_ns, keep(creation.commits), keep(creation.caches))


def _expand(summary: _Summary) -> _Creation:
    return _Creation(
        summary.trace_id,
        summary.start_ns,
        "",
        [summary.commit] if summary.commit else [],
        [summary.cache] if summary.cache else [],
    )


def _error(span: Span) -> str:
    if span.attributes.get(MODULE_CANCELLED):
        return "cancelled"
    if span.status_code != STATUS_ERROR:
        return ""
    return str(span.attributes.get("error.type") or span.status_message or "error")


def _loads(state: _Module) -> list[tuple[Load, str, int]]:
    """Each load with its t_L: a request with its first query, or a query with no request."""
    requests, queries = state.requests, state.queries
    if len(requests) == 1 and len(queries) == 1 and queries[0].parent_span_id == requests[0].span_id:
        return [(_with_query(requests[0], queries[0]), "module_load_db_query start", queries[0].start_ns)]  # most loads
    out: list[tuple[Load, str, int]] = []
    claimed: set[str] = set()
    for request in requests:
        candidates = [
            q
            for q in queries
            if q.trace_id == request.trace_id
            and (q.parent_span_id == request.span_id or request.start_ns <= q.start_ns <= request.end_ns)
        ]
        direct = [q for q in candidates if q.parent_span_id == request.span_id]
        first = min(direct or candidates, key=_start, default=None)
        if first is None:
            out.append((request, "module_load_request start", request.start_ns))
        else:
            claimed.update(q.span_id for q in candidates)
            out.append((_with_query(request, first), "module_load_db_query start", first.start_ns))
    for query in queries:
        if query.span_id not in claimed:
            out.append((query, "module_load_db_query start", query.start_ns))
    return out


def _with_query(request: Load, query: Load) -> Load:
    """The load as its request, judged at its first query (on the query's clock)."""
    return Load(
        request.trace_id,
        request.span_id,
        request.parent_span_id,
        request.start_ns,
        request.end_ns,
        request.failed or query.failed,
        query.resource,
        request.linked_traces,
        query.span_id,
    )


def _start(load: Load) -> int:
    return load.start_ns


def _creation_for(state: _Module, load: Load, t_load: int) -> tuple[_Creation, str]:
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
