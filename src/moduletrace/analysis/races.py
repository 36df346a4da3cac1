"""The race detector: collects lifecycle spans per module and judges every load with the rule.

Feed spans with :meth:`RaceDetector.add` in any order (duplicates are ignored), then call
:meth:`RaceDetector.report`. The rule itself is :func:`moduletrace.analysis.rule.judge_stage`; this
module finds, for each load, its read window, what it recorded having seen, the creation it is
judged against and the stage windows, and keeps memory bounded:

- state is kept per module, compactly: memory follows modules, not spans;
- with ``settle_after_s``, a module whose data lies that far behind the newest span read is judged
  early and reduced to a summary of its creation (the first successful commit and cache update), so
  memory follows the modules in flight;
- the summaries, which a late load is judged against, stay in memory up to a bound and go to disk
  beyond it (:mod:`moduletrace.analysis.settled`): memory stays flat in the modules already judged.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from sys import intern
from typing import Any, NamedTuple

from moduletrace.analysis.clocks import ClockBasis, ClockOffsets, Clocks
from moduletrace.analysis.creation import Creation, StageSpan
from moduletrace.analysis.report import ConsumerLag, FailedCommit, Outcome, RaceReport, RaceVerdict, Unmatched
from moduletrace.analysis.rule import StageCheck, Window, decide, judge_stage, settled_by_narrower_bounds
from moduletrace.analysis.settled import DEFAULT_IN_MEMORY, SettledCreations
from moduletrace.conventions import (
    CACHE_HIT,
    CACHE_UPDATE,
    CACHE_VERSION,
    CREATE_START,
    DATA_FOUND,
    DATA_OBSERVED_VERSION,
    DATA_VERSION,
    DB_COMMIT,
    DB_REPLICA_AS_OF_NS,
    DB_REPLICA_LAG_MS,
    DB_SYSTEM,
    DB_SYSTEM_NAME,
    ERROR_TYPE,
    LIFECYCLE_SPAN_NAMES,
    LINK_CREATION,
    LOAD_DB_QUERY,
    LOAD_REQUEST,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_LAG_CLOCK,
    MESSAGING_LAG_MS,
    MESSAGING_QUEUE_DEPTH,
    MESSAGING_SYSTEM,
    MODULE_CANCELLED,
    MODULE_ID,
    MODULE_LINK_TYPE,
    SPAN_NAMES,
    STAGES,
)
from moduletrace.spans import BARE, KIND_CLIENT, KIND_SERVER, STATUS_ERROR, Resource, Span

DEFAULT_SKEW_TOLERANCE_MS = 5.0
_MAX_PENDING_STATEMENTS = 50_000
_SEEN_KEYS = (DATA_FOUND, DATA_OBSERVED_VERSION, CACHE_HIT, DB_REPLICA_AS_OF_NS, DB_REPLICA_LAG_MS)
#: Statements that are not the read: a transaction's control, a session setting, a pool's connect.
_NOT_A_READ = frozenset(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET", "START", "CONNECT", "SHOW"))
#: Where a database span says its statement, first found wins (else its name).
_STATEMENT_KEYS = ("db.operation.name", "db.operation", "db.query.text", "db.statement")
#: Statement texts whose first word is remembered, and the longest remembered.
_MAX_HEADS = 4096
_MAX_HEAD_TEXT = 256
_NOTHING_SEEN: Mapping[str, Any] = {}
#: Builds a named tuple from all its fields without the Python frame of its __new__ (per span).
_new = tuple.__new__
_READ_SOURCES = {
    "db": "database client span",
    LOAD_DB_QUERY: SPAN_NAMES[LOAD_DB_QUERY],
    LOAD_REQUEST: SPAN_NAMES[LOAD_REQUEST],
}


class Load(NamedTuple):
    """One load span (a request, or a query with no request) and what it recorded having seen."""

    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    failed: bool
    resource: Resource
    linked_traces: tuple[str, ...]
    seen: Mapping[str, Any] | None = None  # DATA_FOUND / DATA_OBSERVED_VERSION / CACHE_HIT
    query_span_id: str = ""  # the first query's span, when the load has one


class Read(NamedTuple):
    """A load reduced to what the rule needs: the read window, its clock, its source, what it saw."""

    load: Load
    window: Window
    resource: Resource
    source: str
    seen: Mapping[str, Any]


@dataclass(frozen=True)
class LoadScope:
    """Which loads a report covers: one module, loads served by one service, loads in a window."""

    module: str | None = None
    service: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None

    def takes_every_load(self) -> bool:
        """No service or window: every load of the modules it covers is in it."""
        return self.service is None and self.start_ns is None and self.end_ns is None

    def includes(self, load: Load, read_start: int) -> bool:
        if self.service is not None and load.resource.service_name != self.service:
            return False
        if self.start_ns is not None and read_start < self.start_ns:
            return False
        return self.end_ns is None or read_start <= self.end_ns


class Judgement(NamedTuple):
    """A load and what the race rule says of it (None: clean)."""

    module_id: str
    load: Load
    read: Read
    outcome: Outcome


@dataclass(slots=True)
class _Module:
    creations: dict[str, Creation] = field(default_factory=dict)
    requests: list[Load] = field(default_factory=list)
    queries: list[Load] = field(default_factory=list)
    span_ids: set[str] = field(default_factory=set)  # duplicates (a re-exported batch) are dropped
    bucket: int = -1  # the time bucket of its latest lifecycle span (settling)
    counted: bool = False  # settled before: counted (then)
    #: Creations back from the summary of a settlement: their failed commits were reported then.
    reported: frozenset[str] = frozenset()


def module_id_of(attributes: Mapping[str, Any]) -> str | None:
    """A lifecycle span's module id as the detector keys modules by (None: it has none)."""
    raw_id = attributes.get(MODULE_ID)
    if raw_id is None or raw_id == "":
        return None
    return raw_id if raw_id.__class__ is str else str(raw_id)


def wanted(name: str, kind: int) -> object:
    """What the detector reads: lifecycle spans and client spans whole (a database client span narrows
    a read); server spans' timing only, for clock bounds."""
    if name in LIFECYCLE_SPAN_NAMES or kind == KIND_CLIENT:
        return True
    return BARE if kind == KIND_SERVER else False


class RaceDetector:
    """Applies the race rule (version 2) to spans fed in any order."""

    def __init__(
        self,
        skew_tolerance_ms: float = DEFAULT_SKEW_TOLERANCE_MS,
        derive_bounds: bool = True,
        settle_after_s: float | None = None,
        scope: LoadScope | None = None,
        settled_in_memory: int = DEFAULT_IN_MEMORY,
    ) -> None:
        """``settle_after_s``: judge a module's loads once the data has moved that far past its last
        lifecycle span, keeping only a summary of its creation; None keeps everything to the end.
        ``scope``: which loads to report. ``settled_in_memory``: summaries kept in memory, the older
        ones on disk (:class:`~moduletrace.analysis.settled.SettledCreations`)."""
        self.derive_bounds = derive_bounds
        self.offsets = ClockOffsets()
        # round, not int: 1.001 ms is 1000999.99... in binary, and a gap at the bound must decide nothing
        self.clocks = Clocks(self.offsets, round(skew_tolerance_ms * 1_000_000), derive_bounds)
        self.scope = scope or LoadScope()
        self._modules: dict[str, _Module] = {}
        # The database statement that narrows a query's read window: kept per query in flight
        # (dropped when its module settles), or pending, briefly, until its query span is read.
        self._queries: set[str] = set()  # span ids of the query spans in flight
        self._statements: dict[str, tuple[int, int]] = {}  # query span id -> its first statement
        self._pending: OrderedDict[str, tuple[int, int]] = OrderedDict()  # parent span id -> first statement
        self._heads: dict[str, str] = {}  # statement text -> its first word
        self._lifecycle = 0
        self._without_id = 0
        self._duplicates = 0
        self._settle_after_ns = None if settle_after_s is None else int(settle_after_s * 1e9)
        # Modules by the time bucket of their latest lifecycle span: a sweep settles the old buckets.
        self._bucket_ns = max(1_000_000_000, (self._settle_after_ns or 0) // 8)
        self._buckets: dict[int, list[str]] = {}
        self._watermark = 0
        self._settled = RaceReport()  # verdicts of loads already judged
        self._summaries = SettledCreations(settled_in_memory)  # settled modules: their creations only
        self._settled_modules = 0  # counted as they settled (in the scope)
        self._settled_any = False
        #: While a module is judged to settle (else None): set by _judge when a comparison across
        #: clocks could be answered otherwise by client/server pairs read later.
        self._provisional: bool | None = None
        #: Told the id and the judgements (in the scope) of each module as it settles: what a consumer
        #: around the detector (the diagnoser) needs of loads it will not see in ``judgements()``.
        self.on_settled: Callable[[str, list[Judgement]], None] | None = None

    @property
    def lifecycle_spans(self) -> int:
        return self._lifecycle

    @property
    def settled_problem(self) -> str:
        """Why settled modules' summaries stayed in memory or one was lost ("" when none): a warning."""
        return self._summaries.problem

    @property
    def settle_after_ns(self) -> int | None:
        return self._settle_after_ns

    @property
    def watermark_ns(self) -> int:
        """The latest end of a lifecycle span read: how far the data has moved (settling only)."""
        return self._watermark

    # -- input ------------------------------------------------------------------------------

    def add(self, span: Span) -> None:
        # One unpacking instead of a dozen attribute reads: this runs for every span of a scan.
        trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status_code, _, attributes, resource, links = (
            span
        )
        if kind == KIND_CLIENT:
            if self.derive_bounds:
                self.offsets.add_client(span_id, resource.clock, start_ns, end_ns)
            if parent_span_id and (DB_SYSTEM_NAME in attributes or DB_SYSTEM in attributes):
                self._add_db_read(parent_span_id, start_ns, end_ns, self._statement_head(name, attributes))
        elif kind == KIND_SERVER and parent_span_id and self.derive_bounds:
            self.offsets.add_server(parent_span_id, resource.clock, start_ns)
        stage = STAGES.get(name)
        if stage is None:
            return
        module_id = attributes.get(MODULE_ID)  # as module_id_of, inline: per lifecycle span
        if module_id is None or module_id == "":
            self._without_id += 1
            return
        if module_id.__class__ is not str:
            module_id = str(module_id)
        module = self._modules.get(module_id)
        if module is None:
            module = self._modules[module_id] = _Module()
            if self._settled_any:
                summary = self._summaries.pop(module_id)
                if summary is not None:  # a late span of a settled module: it comes back in flight
                    module.creations = {c.trace_id: c for c in summary}
                    module.counted = True
                    module.reported = frozenset(module.creations)
        span_ids = module.span_ids
        if span_id in span_ids:
            self._duplicates += 1
            return
        span_ids.add(span_id)
        self._lifecycle += 1
        if self._settle_after_ns is not None:
            self._track(module_id, module, end_ns)
        failed = status_code == STATUS_ERROR or attributes.get(MODULE_CANCELLED) is True
        trace_id = intern(trace_id)  # ids repeat across a module's spans: share one string
        if stage == LOAD_REQUEST or stage == LOAD_DB_QUERY:
            linked: tuple[str, ...] = ()
            if links:
                linked = tuple(
                    intern(link.trace_id)
                    for link in links
                    if link.attributes.get(MODULE_LINK_TYPE, LINK_CREATION) == LINK_CREATION
                )
            seen = None
            if (
                DATA_FOUND in attributes
                or DATA_OBSERVED_VERSION in attributes
                or CACHE_HIT in attributes
                or DB_REPLICA_AS_OF_NS in attributes
            ):
                seen = {k: attributes[k] for k in _SEEN_KEYS if k in attributes}
            record = _new(
                Load, (trace_id, span_id, parent_span_id, start_ns, end_ns, failed, resource, linked, seen, "")
            )
            if stage == LOAD_REQUEST:
                module.requests.append(record)
            else:
                module.queries.append(record)
                self._add_query(span_id)
            return
        if links and stage != CREATE_START:  # a stage that links its creation (e.g. a consumer's, as_link=True)
            trace_id = next(
                (intern(link.trace_id) for link in links if link.attributes.get(MODULE_LINK_TYPE) == LINK_CREATION),
                trace_id,
            )
        creation = module.creations.get(trace_id)
        if creation is None:
            creation = module.creations[trace_id] = Creation(trace_id)
        if stage == CREATE_START:
            creation.start_ns = start_ns if creation.start_ns is None else min(creation.start_ns, start_ns)
            return
        version = attributes.get(DATA_VERSION if stage == DB_COMMIT else CACHE_VERSION)
        error = _error(span) if failed else ""
        lag = (
            _consumer_lag(stage, attributes)
            if MESSAGING_LAG_MS in attributes or MESSAGING_QUEUE_DEPTH in attributes
            else None
        )
        (creation.commits if stage == DB_COMMIT else creation.caches).append(
            _new(StageSpan, (span_id, start_ns, end_ns, not failed, resource, error, version, lag))
        )

    def add_all(self, spans: Iterable[Span]) -> None:
        for span in spans:
            self.add(span)

    def _add_db_read(self, parent: str, start_ns: int, end_ns: int, head: str) -> None:
        """Remember the first statement under each parent that is a read, not a transaction's control."""
        if head in _NOT_A_READ:
            return
        table = self._statements if parent in self._queries else self._pending
        known = table.get(parent)
        if known is None or start_ns < known[0]:
            table[parent] = (start_ns, end_ns)
            # Pending statements wait only for their own query span, which an archive holds within a
            # few lines (most never match: statements under commits, cache writes, other requests).
            if table is self._pending and len(self._pending) > _MAX_PENDING_STATEMENTS:
                self._pending.popitem(last=False)

    def _statement_head(self, name: str, attributes: Mapping[str, Any]) -> str:
        """The first word of a database span's statement (or of its name): BEGIN, SELECT, connect, ..."""
        text = name
        for key in _STATEMENT_KEYS:
            value = attributes.get(key)
            if isinstance(value, str) and value:
                text = value
                break
        heads = self._heads  # statements repeat: each text is cut once
        head = heads.get(text)
        if head is None:
            words = text.lstrip(" (").split(None, 1)
            head = words[0].rstrip(";").upper() if words else ""
            if len(heads) < _MAX_HEADS and len(text) <= _MAX_HEAD_TEXT:
                heads[text] = head
        return head

    def _add_query(self, span_id: str) -> None:
        self._queries.add(span_id)
        pending = self._pending.pop(span_id, None)
        if pending is not None:
            known = self._statements.get(span_id)
            if known is None or pending[0] < known[0]:
                self._statements[span_id] = pending

    # -- settling: judging early what can no longer change ---------------------------------

    def _track(self, module_id: str, module: _Module, end_ns: int) -> None:
        bucket = end_ns // self._bucket_ns
        if bucket > module.bucket:
            module.bucket = bucket
            self._buckets.setdefault(bucket, []).append(module_id)
        if end_ns > self._watermark:
            self._watermark = end_ns
        if not self._lifecycle & 0x3FF:  # every 1024 lifecycle spans
            self._sweep()

    def _sweep(self) -> None:
        assert self._settle_after_ns is not None
        cutoff = (self._watermark - self._settle_after_ns) // self._bucket_ns
        self.clocks.forget()  # the clock bounds may have tightened since the last sweep
        for bucket in sorted(b for b in self._buckets if b < cutoff):
            for module_id in self._buckets.pop(bucket):
                state = self._modules.get(module_id)
                # Settle a module only if nothing newer came since, and if it has a creation: a
                # load whose creation is not in yet stays, since its creation may still come.
                if state is not None and state.bucket == bucket and state.creations:
                    self._settle(module_id, state)

    def _settle(self, module_id: str, state: _Module) -> None:
        """Judge a module's loads now and keep only a summary of its creations, unless a span still to
        come could change a verdict; then the module stays in flight (judged at the end, or settled
        after a span of it comes again): a stage its creation lacks (an indexer that was down may
        write the cache hours later), or a stage compared across clocks whose answer later pairs could
        change: on the skew tolerance (a derived bound may lie elsewhere), or on a derived bound that a
        narrower one (later pairs only narrow it) could decide otherwise."""
        if (state.requests or state.queries) and self._stage_may_come(state):
            return
        self._provisional = False if self.derive_bounds else None  # without derived bounds all is final
        judgements = list(self._judge_module(module_id, state, self.scope))
        provisional, self._provisional = self._provisional, None
        if provisional:
            return
        settled = self._settled
        self._settled_any = True
        if self.scope.module in (None, module_id):
            if not state.counted:
                self._settled_modules += self.scope.takes_every_load() or bool(judgements)
            settled.failed_commits.extend(_failed_commits(module_id, state))
        for judgement in judgements:
            settled.tally(judgement.outcome, judgement.load.failed)
        if self.on_settled is not None:
            self.on_settled(module_id, judgements)
        # Keep of each creation only what a later load is judged against.
        self._summaries.put(module_id, tuple(_compact(c) for c in state.creations.values()))
        for query in state.queries:
            self._queries.discard(query.span_id)
            self._statements.pop(query.span_id, None)
        del self._modules[module_id]

    def _stage_may_come(self, state: _Module) -> bool:
        """Whether a creation of the module lacks a stage it may still get: its commit, or after a
        successful commit a successful cache update (an indexer retries; a creation whose commit only
        failed gets none). A service with no cache stage keeps its modules with loads in flight:
        memory then follows all of them, as with ``settle_after_s=None``."""
        for creation in state.creations.values():
            if not creation.commits:
                return True
            if creation.first_ok(CACHE_UPDATE) is None and creation.first_ok(DB_COMMIT) is not None:
                return True
        return False

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
        each: Callable[[Judgement], None] | None = None,
    ) -> RaceReport:
        """Verdicts for every load (optionally: of one module, served by one service, in a window).

        With settling on, the scope is fixed at construction (``scope=``): loads judged early were
        judged in it, so a report for another scope would be wrong. ``each`` is told every load
        judged for this report (those still in flight), so that a consumer judges them only once.
        """
        scope = self._scope_for(module, service, start_ns, end_ns)
        self.clocks.forget()  # per report: the data may have grown
        settled = self._settled
        report = RaceReport(
            races=list(settled.races),
            ambiguous=list(settled.ambiguous),
            stale_reads=list(settled.stale_reads),
            contradicted=list(settled.contradicted),
            unmatched=list(settled.unmatched),
            failed_commits=list(settled.failed_commits),
            clean=settled.clean,
            loads=settled.loads,
            failed_loads=settled.failed_loads,
            modules=self._settled_modules,
            lifecycle_spans=self._lifecycle,
            spans_without_module_id=self._without_id,
            duplicates=self._duplicates,
            inconsistent_clocks=self.offsets.inconsistent_pairs(),
        )
        tally = report.tally
        every = scope.takes_every_load()
        for module_id in self._selected(scope.module):
            state = self._modules[module_id]
            judged = False
            for judgement in self._judge_module(module_id, state, scope):
                judged = True
                tally(judgement.outcome, judgement.load.failed)
                if each is not None:
                    each(judgement)
            if not state.counted:  # else counted as it settled
                # With a service or a window, the modules those loads are of; else every module.
                report.modules += every or judged
            report.failed_commits.extend(_failed_commits(module_id, state))
        report.sort()
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

    def creation_versions(self, module_id: str, trace_id: str) -> dict[str, Any]:
        """What a creation's successful stages recorded having written: {stage: version}."""
        state = self._modules.get(module_id)
        creation = state.creations.get(trace_id) if state else None
        out: dict[str, Any] = {}
        for stage in (DB_COMMIT, CACHE_UPDATE):
            record = creation.first_ok(stage) if creation else None
            if record is not None and record.version is not None:
                out[stage] = record.version
        return out

    def _judge_module(self, module_id: str, state: _Module, scope: LoadScope) -> Iterator[Judgement]:
        judge, every = self._judge, scope.takes_every_load()
        for read in self._reads(state):
            if every or scope.includes(read.load, read.window.start_ns):
                yield _new(Judgement, (module_id, read[0], read, judge(module_id, state, read)))

    def _scope_for(
        self, module: str | None, service: str | None, start_ns: int | None, end_ns: int | None
    ) -> LoadScope:
        asked = LoadScope(module, service, start_ns, end_ns)
        if asked == LoadScope():
            return self.scope
        if self._settled_any and asked != self.scope:
            raise ValueError("loads were judged early in the detector's scope; give the scope at construction")
        return asked

    def _selected(self, module: str | None) -> list[str]:
        if module is not None:
            return [module] if module in self._modules else []
        return sorted(self._modules)

    def _reads(self, state: _Module) -> Iterator[Read]:
        """Each load with its read window: a request with its first query, or a query with no request."""
        requests, queries = state.requests, state.queries
        if not queries:
            for request in requests:
                yield self._read(request, None)
            return
        if len(requests) == 1 and len(queries) == 1 and queries[0].parent_span_id == requests[0].span_id:
            yield self._read(requests[0], queries[0])  # the usual module: one load, its query under it
            return
        request_ids = {r.span_id for r in requests}
        children: dict[str, list[Load]] = {}
        strays: dict[str, list[Load]] = {}  # queries whose parent is no request: matched by trace and time
        for query in queries:
            if query.parent_span_id in request_ids:
                children.setdefault(query.parent_span_id, []).append(query)
            else:
                strays.setdefault(query.trace_id, []).append(query)
        if not strays:  # the usual module: each query under its request
            for request in requests:
                candidates = children.get(request.span_id)
                yield self._read(request, min(candidates, key=_start) if candidates else None)
            return
        # A stray belongs to the innermost request of the module in its trace that was running when it
        # started: of the requests open at its start, the one that began last (a load nested in another
        # load of the module reads in its own query, not the outer one's). One sweep per trace over the
        # requests and the strays by start with a stack of open requests: linear after the sorts. A
        # request reads in its first query, a child or a stray of its own; a stray inside no request is
        # a load of its own.
        by_trace: dict[str, list[Load]] = {}
        for request in requests:
            by_trace.setdefault(request.trace_id, []).append(request)
        taken: dict[str, Load] = {}  # request span id -> its first stray
        claimed: set[str] = set()
        for trace_id, group in strays.items():
            opening = sorted(by_trace.get(trace_id, ()), key=_outer_first)
            if not opening:
                continue
            stack: list[Load] = []
            index = 0
            for query in sorted(group, key=_start):  # stable: ties keep their order
                while index < len(opening) and opening[index].start_ns <= query.start_ns:
                    stack.append(opening[index])
                    index += 1
                while stack and stack[-1].end_ns < query.start_ns:
                    stack.pop()  # ended before this stray, and before every later one
                if stack:
                    claimed.add(query.span_id)
                    taken.setdefault(stack[-1].span_id, query)
        for request in requests:
            candidates = children.get(request.span_id, [])
            stray = taken.get(request.span_id)
            if stray is not None:
                candidates = [*candidates, stray]
            yield self._read(request, min(candidates, key=_start) if candidates else None)
        for group in strays.values():
            for query in group:
                if query.span_id not in claimed:
                    yield self._read(query, query)

    def _read(self, load: Load, query: Load | None) -> Read:
        # Named tuples built with tuple.__new__ (their own __new__ is a Python frame): once per load.
        if query is None:
            seen = load.seen or _NOTHING_SEEN
            window = _new(Window, (load.start_ns, load.end_ns))
            return _new(Read, (load, window, load.resource, _READ_SOURCES[LOAD_REQUEST], seen))
        if query is load:
            seen = load.seen or _NOTHING_SEEN
        else:
            seen = {**load.seen, **query.seen} if load.seen and query.seen else load.seen or query.seen or _NOTHING_SEEN
            load = _new(
                Load,
                (
                    load.trace_id,
                    load.span_id,
                    load.parent_span_id,
                    load.start_ns,
                    load.end_ns,
                    load.failed or query.failed,
                    load.resource,
                    load.linked_traces,
                    load.seen,
                    query.span_id,
                ),
            )
        statement = self._statements.get(query.span_id)
        if statement is not None:
            return _new(Read, (load, _new(Window, statement), query.resource, _READ_SOURCES["db"], seen))
        window = _new(Window, (query.start_ns, query.end_ns))
        return _new(Read, (load, window, query.resource, _READ_SOURCES[LOAD_DB_QUERY], seen))

    def _judge(self, module_id: str, state: _Module, read: Read) -> Outcome:
        """The verdict for one load; None when it is clean (most loads: decided without the evidence)."""
        load = read.load
        if not state.creations:
            return _unmatched(module_id, read, "no creation spans for this module in the data")
        read_start, read_end = read.window
        creation, matched_by = _creation_for(state, load, read_start)
        compare = self.clocks.compare
        stages: list[tuple[str, StageSpan, ClockBasis, bool | None, str]] = []
        missing = []
        clean = True
        for stage in (DB_COMMIT, CACHE_UPDATE):
            record = creation.first_ok(stage)
            if record is None:
                failed_any = creation.commits if stage == DB_COMMIT else creation.caches
                missing.append(f"its {stage} failed" if failed_any else f"no {stage} span")
                continue
            saw, detail = _saw(stage, read.seen, record, self.clocks.tolerance.high_ns)
            clock = compare(record.resource, read.resource)
            if self._provisional is False and clock.bound is not None:
                # Judging to settle: a comparison later pairs could change keeps the module in flight,
                # on the tolerance (a derived bound may lie elsewhere) or on a derived bound that a
                # narrower one could decide otherwise.
                self._provisional = clock.bound is self.clocks.tolerance or not settled_by_narrower_bounds(
                    record.start_ns, record.end_ns, read_start, read_end, clock.bound
                )
            if clean:
                verdict, _, contradicted = decide(
                    record.start_ns, record.end_ns, read_start, read_end, clock.bound, saw
                )
                clean = verdict == "clean" and not contradicted
            stages.append((stage, record, clock, saw, detail))
        if not stages:
            return _unmatched(
                module_id, read, f"creation in trace {creation.trace_id} is partial: " + ", ".join(missing)
            )
        if clean:
            return None
        checks: list[StageCheck] = []
        lags: list[ConsumerLag] = []
        for stage, record, clock, saw, detail in stages:
            written = Window(record.start_ns, record.end_ns)
            check = judge_stage(
                stage, record.span_id, written, read.window, clock, saw, detail, record.resource.service_name
            )
            if record.lag is not None:  # the consumer's lag explains a read that came before the stage
                lags.append(record.lag)
                check = replace(check, explanation=f"{check.explanation}; {record.lag.describe()}")
            checks.append(check)
        verdicts = {c.verdict for c in checks}
        reason = ""
        if "race" in verdicts:
            verdict = "race"
        elif "stale_read" in verdicts:
            verdict = "stale_read"
        elif "ambiguous" in verdicts:
            verdict = "ambiguous"
            reason = "overlap" if any(c.reason == "overlap" for c in checks) else "clock"
        else:  # clean, and the clocks contradicted what a load recorded
            verdict = "clean"
        return RaceVerdict(
            module_id=module_id,
            trace_id=load.trace_id,
            load_span_id=load.span_id,
            load_service=load.resource.service_name,
            read_start_ns=read_start,
            read_end_ns=read_end,
            read_source=read.source,
            load_failed=load.failed,
            verdict=verdict,
            reason=reason,  # type: ignore[arg-type]
            same_trace=creation.trace_id == load.trace_id,
            matched_by=matched_by,
            creation_trace_id=creation.trace_id,
            checks=tuple(checks),
            consumer_lag=tuple(lags),
        )


def _unmatched(module_id: str, read: Read, reason: str) -> Unmatched:
    load = read.load
    service = load.resource.service_name
    return Unmatched(module_id, load.trace_id, load.span_id, service, read.window.start_ns, load.failed, reason)


def _consumer_lag(stage: str, attributes: Mapping[str, Any]) -> ConsumerLag:
    lag, depth = attributes.get(MESSAGING_LAG_MS), attributes.get(MESSAGING_QUEUE_DEPTH)
    return ConsumerLag(
        stage,
        float(lag) if isinstance(lag, (int, float)) and not isinstance(lag, bool) else None,
        str(attributes.get(MESSAGING_LAG_CLOCK) or ""),
        depth if isinstance(depth, int) and not isinstance(depth, bool) else None,
        str(attributes.get(MESSAGING_SYSTEM) or ""),
        str(attributes.get(MESSAGING_DESTINATION_NAME) or ""),
    )


def _saw(stage: str, seen: Mapping[str, Any], record: StageSpan, tolerance_ns: int) -> tuple[bool | None, str]:
    """Whether the read saw the stage's write, by what it recorded (None: it recorded nothing).

    For the commit, a read from a replica also recorded how far the replica's data was behind
    (``DB_REPLICA_AS_OF_NS``, see instrumentation.replica): data as of a time before the commit
    began, by more than the skew tolerance (that time is on the primary's clock), means the read
    could not see the commit, whatever the clocks say of the read itself.
    """
    if stage == DB_COMMIT:
        written = record.version
        found = seen.get(DATA_FOUND)
        observed = seen.get(DATA_OBSERVED_VERSION)
        if found is False:
            return False, f"{DATA_FOUND}=false{_replica_detail(seen, record)}"
        if observed is not None and written is not None:
            older = _older(observed, written)
            if older is not None:
                return not older, f"observed version {observed}, committed {written}{_replica_detail(seen, record)}"
        if found is True:
            return True, f"{DATA_FOUND}=true"
        as_of = seen.get(DB_REPLICA_AS_OF_NS)
        if isinstance(as_of, int) and as_of < record.start_ns - tolerance_ns:
            return False, f"the replica it read had not applied the commit{_replica_detail(seen, record)}"
        return None, ""
    hit = seen.get(CACHE_HIT)
    if isinstance(hit, bool):
        return hit, f"{CACHE_HIT}={'true' if hit else 'false'}"
    return None, ""


def _replica_detail(seen: Mapping[str, Any], record: StageSpan) -> str:
    """ "; the replica was up to 1,500.0 ms behind: its data as of 320.4 ms before the commit ended" (or "").

    "Up to": the lag is the time since the last transaction it applied, while more waited to be
    applied; after a quiet spell on the primary that is more than the delay of what waited.
    """
    as_of, lag = seen.get(DB_REPLICA_AS_OF_NS), seen.get(DB_REPLICA_LAG_MS)
    if not isinstance(as_of, int) or isinstance(as_of, bool):
        return ""
    behind = (
        f" up to {lag:,.1f} ms behind" if isinstance(lag, (int, float)) and not isinstance(lag, bool) else " behind"
    )
    gap_ms = (record.end_ns - as_of) / 1e6
    if gap_ms > 0:
        return f"; the replica was{behind}: its data as of {gap_ms:,.1f} ms before the commit ended"
    return f"; the replica was{behind}: its data as of {-gap_ms:,.1f} ms after the commit ended"


def _older(observed: Any, committed: Any) -> bool | None:
    """Whether the read saw a version older than the commit wrote; None when the two cannot be ordered.

    Numbers compare as numbers, also whole numbers written as text ("10" is newer than "9"), and
    PostgreSQL LSNs with LSNs, as positions ("0/10000000" is past "0/9FFFFFF"); other texts only
    with texts of the same shape (digits in the same places: timestamps in one format). Anything
    else, unless it is the same value of the same kind, says nothing: the rule then goes on to
    ``found`` and the clocks, never to a guessed miss.
    """
    a, b = _version_position(observed), _version_position(committed)
    if a is not None and b is not None:
        return a[1] < b[1] if a[0] == b[0] else None
    if a is not None or b is not None:  # a number or an LSN against something else
        return None
    if isinstance(observed, bool) or isinstance(committed, bool):
        return False if observed is committed else None  # True is no version 1
    if isinstance(observed, float) or isinstance(committed, float):
        return None  # NaN, which equals nothing
    if observed == committed:
        return False
    if isinstance(observed, str) and isinstance(committed, str) and _shape(observed) == _shape(committed):
        return observed < committed
    return None


_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})").fullmatch
_WHOLE = re.compile(r"[+-]?[0-9]+").fullmatch
_NUMBER, _POSITION = 0, 1


def _version_position(version: Any) -> tuple[int, int | float] | None:
    """A version as (kind, value) to order by: a number (or a whole number as text), or an LSN."""
    if isinstance(version, bool):
        return None
    if isinstance(version, (int, float)):
        return (_NUMBER, version) if version == version else None  # NaN orders nothing
    if isinstance(version, str):
        text = version.strip()
        if _WHOLE(text):
            return _NUMBER, int(text)
        lsn = _LSN(text)
        if lsn:
            return _POSITION, int(lsn.group(1), 16) << 32 | int(lsn.group(2), 16)
    return None


def _shape(text: str) -> str:
    return text.translate(_DIGITS_AS_ZERO)


_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")


def _start(record: StageSpan | Load) -> int:
    return record.start_ns


def _outer_first(request: Load) -> tuple[int, int]:
    return request.start_ns, -request.end_ns  # of two that start together, the inner one opens last


def _compact(creation: Creation) -> Creation:
    """Keep of a creation its first successful stages (or, where a stage never succeeded, its last failure)."""

    def keep(records: list[StageSpan]) -> list[StageSpan]:
        ok = [r for r in records if r.ok]
        if ok:
            return [min(ok, key=_start)]
        return [max(records, key=_start)] if records else []

    return Creation(creation.trace_id, creation.start_ns, keep(creation.commits), keep(creation.caches))


def _error(span: Span) -> str:
    if span.attributes.get(MODULE_CANCELLED):
        return "cancelled"
    return str(span.attributes.get(ERROR_TYPE) or span.status_message or "error")


def _creation_for(state: _Module, load: Load, read_start: int) -> tuple[Creation, str]:
    """The creation a load is judged against: its own trace's, a linked one's, else by module id the
    latest creation that began before the read (a module deleted and created again)."""
    if load.trace_id in state.creations:
        return state.creations[load.trace_id], "trace"
    for trace_id in load.linked_traces:
        if trace_id in state.creations:
            return state.creations[trace_id], "link"
    creations = list(state.creations.values())
    before = [c for c in creations if c.started() <= read_start]
    chosen = max(before, key=Creation.started) if before else min(creations, key=Creation.started)
    return chosen, MODULE_ID


def _failed_commits(module_id: str, state: _Module) -> list[FailedCommit]:
    """The creations of a module none of whose commits succeeded (most have one, and it did)."""
    out = []
    reported = state.reported
    for creation in state.creations.values():
        commits = creation.commits
        if commits and not (commits[0].ok or any(r.ok for r in commits)) and creation.trace_id not in reported:
            last = max(commits, key=lambda r: r.end_ns)
            out.append(
                FailedCommit(
                    module_id, creation.trace_id, last.span_id, last.resource.service_name, last.end_ns, last.error
                )
            )
    return out
