"""What ``races`` reports: verdicts with their evidence, loads it could not judge, failed commits, counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from moduletrace.analysis.rule import Reason, StageCheck, Verdict


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    """How late a stage run by a message consumer (an indexer) took its event, as it recorded."""

    stage: str
    lag_ms: float | None  # publish to receipt
    lag_clock: str  # "publisher" or "broker": whose clock stamped the publication
    queue_depth: int | None  # messages still queued when it was received
    system: str  # messaging.system
    destination: str  # messaging.destination.name

    def describe(self) -> str:
        """One evidence line: "the indexer took the event 840.2 ms after it was published; queue depth 1,200"."""
        where = " ".join(filter(None, (self.system, repr(self.destination) if self.destination else "")))
        who = f"the consumer of {where}" if where else "the consumer"
        parts = []
        if self.lag_ms is not None:
            clock = f" ({self.lag_clock}'s clock)" if self.lag_clock else ""
            parts.append(f"{who} took the event {self.lag_ms:,.1f} ms after it was published{clock}")
        else:
            parts.append(f"{who} recorded no publish time")
        if self.queue_depth is not None:
            parts.append(f"queue depth {self.queue_depth:,} at receipt")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class RaceVerdict:
    """A load judged against its module's creation, with the evidence of each stage."""

    module_id: str
    trace_id: str
    load_span_id: str
    load_service: str
    read_start_ns: int  # the read window, on the load's clock
    read_end_ns: int
    read_source: str  # which span the read window is: a database client span, the query, the request
    load_failed: bool
    verdict: Verdict
    reason: Reason  # for ambiguous: "overlap" or "clock"
    same_trace: bool
    matched_by: str  # "trace", "link", "module.id"
    creation_trace_id: str
    checks: tuple[StageCheck, ...]
    consumer_lag: tuple[ConsumerLag, ...] = ()  # stages run by a message consumer, with its recorded lag

    @property
    def preceded(self) -> list[str]:
        """The stages behind the verdict: raced, read stale, or left undecided."""
        return [c.stage for c in self.checks if c.verdict == self.verdict]

    @property
    def margin_ms(self) -> dict[str, float]:
        return {c.stage: c.margin_ms for c in self.checks}

    @property
    def decided_by(self) -> str:
        """ "data" when recorded data decided any stage behind the verdict, else "clocks"."""
        return "data" if any(c.decided_by == "data" for c in self.checks if c.verdict == self.verdict) else "clocks"


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A load that could not be compared with a creation, and why."""

    module_id: str
    trace_id: str
    load_span_id: str
    load_service: str
    read_start_ns: int
    load_failed: bool
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


Outcome = RaceVerdict | Unmatched | None  # None: clean, nothing to say


@dataclass(slots=True)
class RaceReport:
    races: list[RaceVerdict] = field(default_factory=list)
    ambiguous: list[RaceVerdict] = field(default_factory=list)
    stale_reads: list[RaceVerdict] = field(default_factory=list)
    #: Loads whose recorded data contradicts the clocks (saw the write the clocks say it came before):
    #: clean by the data, or listed under another verdict for another stage as well.
    contradicted: list[RaceVerdict] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)
    failed_commits: list[FailedCommit] = field(default_factory=list)
    clean: int = 0
    loads: int = 0
    failed_loads: int = 0
    modules: int = 0
    lifecycle_spans: int = 0
    spans_without_module_id: int = 0
    duplicates: int = 0
    inconsistent_clocks: list[tuple[str, str]] = field(default_factory=list)

    def tally(self, outcome: Outcome, failed: bool) -> None:
        self.loads += 1
        self.failed_loads += failed
        if outcome is None:
            self.clean += 1
        elif isinstance(outcome, Unmatched):
            self.unmatched.append(outcome)
        else:
            verdict = outcome.verdict
            if verdict == "race":
                self.races.append(outcome)
            elif verdict == "stale_read":
                self.stale_reads.append(outcome)
            elif verdict == "ambiguous":
                self.ambiguous.append(outcome)
            else:
                self.clean += 1
            if verdict == "clean" or any(check.clocks_contradicted for check in outcome.checks):
                self.contradicted.append(outcome)

    def sort(self) -> None:
        for verdicts in (self.races, self.ambiguous, self.stale_reads, self.contradicted, self.unmatched):
            verdicts.sort(key=lambda v: (v.read_start_ns, v.module_id))
        self.failed_commits.sort(key=lambda f: (f.end_ns, f.module_id))

    def failed_only(self) -> RaceReport:
        """The same report limited to loads that failed (counts of all loads kept)."""
        out = RaceReport(**{name: getattr(self, name) for name in self.__slots__})
        for name in ("races", "ambiguous", "stale_reads", "contradicted", "unmatched"):
            setattr(out, name, [v for v in getattr(self, name) if v.load_failed])
        return out

    @property
    def found_races(self) -> bool:
        """What the exit status says: a race or a stale read (the same hypothesis, by the data)."""
        return bool(self.races or self.stale_reads)
