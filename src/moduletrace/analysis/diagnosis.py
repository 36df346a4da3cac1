"""Which hypothesis caused each failed load: auth, pool, race, not_found or unknown, with evidence.

The decision follows the incident write-up's order (docs/design.md, "diagnose"), first match wins
for the primary cause, the others are kept as secondary:

1. pool: a pool timeout (a timed-out wait recorded by the pool helpers, SQLAlchemy's "QueuePool
   limit ... timed out", psycopg_pool's PoolTimeout), or a wait of at least 90% of the pool's
   timeout. Checked before auth: a long wait can push a token past its expiry, and then the pool
   was the first fault.
2. auth: a 401/403 (on the load span or an HTTP span inside it), an expired token, a
   ``WWW-Authenticate`` error, or a token error type. A token that is not valid *yet* (nbf in the
   future) is clock skew between issuer and validator, not expiry, and is said so.
3. race: the race rule's verdict: decided by what the read recorded having seen (clock-free, the
   strongest; a stale read, which came after the commit and saw nothing, is a race too), else by
   timestamps on one clock or across hosts beyond the offset bound; a read that overlapped the
   stage and found nothing is a race of weaker strength. Other undecided loads stay ``unknown``,
   flagged as a possible race.
4. not_found: no creation of the module at all in the data.
5. unknown: anything else, with what is missing and how to instrument it.

Strength of the evidence, strongest first: ``data version``, ``status code``, ``exception``,
``same-clock timestamps``, ``cross-host timestamps beyond the skew bound``, ``overlap with a
not-found read``, ``weak``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from moduletrace.analysis.races import Judgement, Load, RaceDetector, module_id_of
from moduletrace.analysis.report import RaceReport, RaceVerdict, Unmatched
from moduletrace.causes import SERVER_FULL, classify, is_clock_skew, says_not_found
from moduletrace.conventions import (
    AUTH_ERROR,
    AUTH_STATUS,
    AUTH_TOKEN_EXPIRED,
    AUTH_TOKEN_EXPIRES_IN_S,
    AUTH_TOKEN_NOT_YET_VALID,
    DATA_PREFIX,
    ERROR_TYPE,
    EVIDENCE_PREFIXES,
    EXCEPTION_TYPE,
    HTTP_RESPONSE_STATUS_CODE,
    LIFECYCLE_SPAN_NAMES,
    LOAD_DB_QUERY,
    LOAD_REQUEST,
    POOL_IN_USE,
    POOL_SIZE,
    POOL_TIMED_OUT,
    POOL_TIMEOUT_S,
    POOL_WAIT_MS,
    SPAN_NAMES,
)
from moduletrace.spans import STATUS_ERROR, Span

Cause = Literal["auth", "pool", "race", "not_found", "unknown"]
CAUSES: tuple[Cause, ...] = ("auth", "pool", "race", "not_found", "unknown")

#: Attributes kept from the spans of a failed load (never free text beyond the redacted status).
_EVIDENCE_KEYS = (ERROR_TYPE, HTTP_RESPONSE_STATUS_CODE, EXCEPTION_TYPE)
_LOAD_SPAN_NAMES = frozenset((SPAN_NAMES[LOAD_REQUEST], SPAN_NAMES[LOAD_DB_QUERY]))
_CREATION_SPAN_NAMES = LIFECYCLE_SPAN_NAMES - _LOAD_SPAN_NAMES
#: The HTTP statuses a cause reads (``_auth``): of a span that did not fail, nothing else is kept.
_AUTH_STATUSES = (401, 403)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    module_id: str
    trace_id: str
    load_span_id: str
    load_service: str
    load_start_ns: int
    duration_ms: float
    cause: Cause
    strength: str
    evidence: tuple[str, ...]
    secondary: tuple[Cause, ...] = ()
    missing: tuple[str, ...] = ()
    detail: str = ""  # e.g. "expired", "clock skew", "scope" for auth; "possible race" for unknown
    database: tuple[str, ...] = ()  # the databases and the pool near the failure (diagnose --metrics)

    @property
    def failed_at_ns(self) -> int:
        """When the load gave up: its read began, plus the load's duration."""
        return self.load_start_ns + int(self.duration_ms * 1e6)


@dataclass(slots=True)
class CauseSummary:
    count: int = 0
    share: float = 0.0
    median_ms: float | None = None
    p95_ms: float | None = None


@dataclass(slots=True)
class DiagnosisReport:
    diagnoses: list[Diagnosis] = field(default_factory=list)
    loads: int = 0
    by_cause: dict[str, CauseSummary] = field(default_factory=dict)
    database: list[str] = field(default_factory=list)  # the incident as the metrics saw it (diagnose --metrics)

    @property
    def failed_loads(self) -> int:
        return len(self.diagnoses)


@dataclass(slots=True)
class _Evidence:
    """What the spans of one trace say about failures: per span id, and error spans by time."""

    by_span: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[tuple[int, int, str, dict[str, Any]]] = field(default_factory=list)  # start, end, name, attrs
    loads: int = 0  # load spans in this trace of modules not judged yet (settling): kept while any
    bucket: int = -1  # the time bucket of its latest span (settling)


def wanted(name: str, kind: int) -> object:
    """Diagnosis reads every span whole: a 401 or a pool timeout may sit on any span inside a load."""
    return True


#: Distinct attribute keys remembered as no evidence (a writer with ids in its keys stops it).
_MAX_KEYS = 10_000


class Diagnoser:
    """Feeds the race detector and keeps the failure evidence of each trace (compactly).

    With a settling detector (``settle_after_s``), memory follows the modules in flight, as the
    detector's does: the failed loads of a module are diagnosed when it settles, with the evidence
    read by then; the evidence of a trace is kept while a load of it awaits judgement, else until
    the data has moved ``settle_after_s`` past the trace's latest span. A span of evidence that
    comes later than that (further out of time order than the collector writes) is not seen by the
    diagnosis of a load already judged, and a load arriving that late is diagnosed with the
    evidence of its trace read since (its module's creation is kept, as for ``races``).
    """

    def __init__(self, detector: RaceDetector | None = None) -> None:
        self.detector = detector or RaceDetector()
        self.detector.on_settled = self._settled
        self._traces: dict[str, _Evidence] = {}
        self._plain: set[str] = set()  # attribute keys known not to be evidence
        self._evidence_keys: set[str] = set()  # and known to be
        self._plain_or_status = {HTTP_RESPONSE_STATUS_CODE}  # the first, and the HTTP status
        self._diagnoses: list[Diagnosis] = []  # the failed loads of settled modules
        self._loads = 0  # the loads of settled modules
        settle = self.detector.settle_after_ns
        self._settle_ns = settle
        self._bucket_ns = max(1_000_000_000, settle // 8) if settle is not None else 0
        self._buckets: dict[int, list[str]] = {}  # traces by the time bucket of their latest span
        self._module_traces: dict[str, list[str]] = {}  # module not judged yet -> its load spans' traces
        self._spans = 0

    def add(self, span: Span) -> None:
        self.detector.add(span)
        if self._settle_ns is not None:
            self._spans += 1
            if not self._spans & 0xFFF:
                self._sweep()
            if span.name in _LOAD_SPAN_NAMES:
                self._hold(span)
        # Shortcuts, in C, for what _keep would not keep: most spans did not fail and carry no key of
        # evidence, or only an HTTP status other than 401/403; a creation stage's own evidence is
        # never read (a load's is, by its span id).
        name = span.name
        if name in _CREATION_SPAN_NAMES:
            return
        if span.status_code != STATUS_ERROR:
            attributes = span.attributes
            if self._plain.issuperset(attributes):
                return
            if name not in _LOAD_SPAN_NAMES and self._plain_or_status.issuperset(attributes):
                status = attributes.get(HTTP_RESPONSE_STATUS_CODE)
                if status is not None and status not in _AUTH_STATUSES:
                    return
        self._keep(span)

    def add_all(self, spans: Iterable[Span]) -> None:
        for span in spans:
            self.add(span)

    def _hold(self, load: Span) -> None:
        """A load span (settling): its trace's evidence is kept until its module is judged."""
        module_id = module_id_of(load.attributes)
        if module_id is not None:
            self._evidence(load.trace_id, load.end_ns).loads += 1
            self._module_traces.setdefault(module_id, []).append(load.trace_id)

    def _keep(self, span: Span) -> None:
        """What a span that failed, or carries a key of evidence, says: kept with its trace."""
        trace_id, span_id, _, name, _, start_ns, end_ns, status_code, status_message, attributes, _, _ = span
        kept = self._kept(attributes)
        failed = status_code == STATUS_ERROR
        if not (kept or failed):
            return
        lifecycle = name in LIFECYCLE_SPAN_NAMES  # a load's: the others are not read
        if not (lifecycle or failed) and len(kept) == 1 and attributes.get(HTTP_RESPONSE_STATUS_CODE) is not None:
            # A span that did not fail and says nothing but its HTTP status: only a 401 or a 403 names
            # a cause (auth). The others (most HTTP spans: 200s) are not kept.
            if attributes[HTTP_RESPONSE_STATUS_CODE] not in _AUTH_STATUSES:
                return
        if failed and status_message:
            kept["status.message"] = status_message[:300]
        evidence = self._evidence(trace_id, end_ns)
        if lifecycle:
            evidence.by_span[span_id] = kept
        else:
            evidence.errors.append((start_ns, end_ns, name, kept))

    def _kept(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes that are evidence (each key classified once, a bounded number of keys)."""
        evidence = self._evidence_keys
        plain = self._plain
        for key in attributes:
            if key not in plain and key not in evidence and len(plain) + len(evidence) < _MAX_KEYS:
                if _is_evidence(key):
                    evidence.add(key)
                else:
                    plain.add(key)
                    self._plain_or_status.add(key)
        return {k: v for k, v in attributes.items() if k in evidence or (k not in plain and _is_evidence(k))}

    def _evidence(self, trace_id: str, end_ns: int) -> _Evidence:
        evidence = self._traces.get(trace_id)
        if evidence is None:
            evidence = self._traces[trace_id] = _Evidence()
        if self._settle_ns is not None:
            bucket = end_ns // self._bucket_ns
            if bucket > evidence.bucket:
                evidence.bucket = bucket
                self._buckets.setdefault(bucket, []).append(trace_id)
        return evidence

    def _cutoff(self) -> int:
        assert self._settle_ns is not None
        return (self.detector.watermark_ns - self._settle_ns) // self._bucket_ns

    def _sweep(self) -> None:
        """Forget the evidence of traces the data has moved past and no load in flight needs."""
        cutoff = self._cutoff()
        for bucket in sorted(b for b in self._buckets if b < cutoff):
            for trace_id in self._buckets.pop(bucket):
                evidence = self._traces.get(trace_id)
                if evidence is not None and evidence.bucket == bucket and not evidence.loads:
                    del self._traces[trace_id]

    def _settled(self, module_id: str, judgements: list[Judgement]) -> None:
        """A module the detector judged early: diagnose its failed loads now, then let its traces go."""
        for judgement in judgements:
            self._loads += 1
            if judgement.load.failed:
                self._diagnoses.append(self._diagnose(judgement))
        cutoff = self._cutoff()
        for trace_id in self._module_traces.pop(module_id, ()):
            evidence = self._traces.get(trace_id)
            if evidence is not None:
                evidence.loads -= 1
                if not evidence.loads and evidence.bucket < cutoff:  # swept already: no bucket holds it
                    del self._traces[trace_id]

    def modules_without_creation(self) -> list[str]:
        return self.detector.modules_without_creation()

    @property
    def lifecycle_spans(self) -> int:
        return self.detector.lifecycle_spans

    @property
    def settled_problem(self) -> str:
        return self.detector.settled_problem

    def report(
        self,
        module: str | None = None,
        service: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> DiagnosisReport:
        report = DiagnosisReport(diagnoses=list(self._diagnoses), loads=self._loads)
        for judgement in self.detector.judgements(module, service, start_ns, end_ns):
            self._count(report, judgement)
        return _summarised(report)

    def reports(self) -> tuple[DiagnosisReport, RaceReport]:
        """The diagnosis and the race report, every load judged once (in the detector's scope)."""
        report = DiagnosisReport(diagnoses=list(self._diagnoses), loads=self._loads)
        races = self.detector.report(each=lambda judgement: self._count(report, judgement))
        return _summarised(report), races

    def _count(self, report: DiagnosisReport, judgement: Judgement) -> None:
        report.loads += 1
        if judgement.load.failed:
            report.diagnoses.append(self._diagnose(judgement))

    def _diagnose(self, judgement: Judgement) -> Diagnosis:
        load = judgement.load
        seen = self._load_evidence(load)
        causes: list[tuple[Cause, str, list[str], str]] = []  # cause, strength, evidence lines, detail
        pool = _pool(seen)
        if pool:
            causes.append(("pool", *pool))
        auth = _auth(seen)
        if auth:
            causes.append(("auth", *auth))
        race = self._race(judgement, seen)
        if race:
            causes.append(("race", *race))
        outcome = judgement.outcome
        missing: list[str] = []
        if isinstance(outcome, Unmatched) and outcome.reason.startswith("no creation"):
            causes.append(("not_found", "data", [f"no creation span of module {judgement.module_id} in the data"], ""))
        if not causes:
            cause: Cause = "unknown"
            strength, detail = "weak", ""
            lines: list[str] = []
            if isinstance(outcome, RaceVerdict) and outcome.verdict == "ambiguous":
                detail = "possible race"
                lines.extend(c.explanation for c in outcome.checks if c.verdict == "ambiguous")
            if any(says_not_found(_text(a)) for a in seen):
                if detail == "possible race":  # undecided: it may have overlapped a stage
                    lines.append("the read found nothing; the clocks cannot tell whether it came after the stages")
                else:
                    lines.append(
                        "the read found nothing although it came after the commit and the cache update: "
                        "a wrong key, a tenant filter, or rows hidden by authorisation"
                    )
            missing = self._missing(judgement, seen)
            secondary: tuple[Cause, ...] = ()
        else:
            cause, strength, lines, detail = causes[0]
            secondary = tuple(c for c, *_ in causes[1:])
        error_types = sorted({str(a[ERROR_TYPE]) for a in seen if ERROR_TYPE in a})
        if error_types:
            lines.append("error.type: " + ", ".join(error_types))
        return Diagnosis(
            module_id=judgement.module_id,
            trace_id=load.trace_id,
            load_span_id=load.span_id,
            load_service=load.resource.service_name,
            load_start_ns=judgement.read.window.start_ns,
            duration_ms=round((load.end_ns - load.start_ns) / 1e6, 3),
            cause=cause,
            strength=strength,
            evidence=tuple(lines),
            secondary=secondary,
            missing=tuple(missing),
            detail=detail,
        )

    def _load_evidence(self, load: Load) -> list[dict[str, Any]]:
        """Evidence on the load's own spans and on failing spans that ran inside it (same trace)."""
        evidence = self._traces.get(load.trace_id)
        if evidence is None:
            return []
        found = [evidence.by_span[s] for s in (load.span_id, load.query_span_id) if s in evidence.by_span]
        for start, end, name, attributes in evidence.errors:
            if load.start_ns <= start and end <= max(load.end_ns, load.start_ns):
                found.append({**attributes, "span.name": name})
        return found

    def _race(self, judgement: Judgement, seen: list[dict[str, Any]]) -> tuple[str, list[str], str] | None:
        outcome = judgement.outcome
        if not isinstance(outcome, RaceVerdict):
            return None
        behind = [c for c in outcome.checks if c.verdict == outcome.verdict]
        lines = [c.explanation for c in behind]
        stages = "+".join(outcome.preceded)
        if outcome.verdict == "stale_read":
            lines.insert(0, "the read came after the stage ended and saw nothing: a lagging replica or cache")
            return "data version", lines, f"stale read ({stages})"
        if outcome.verdict == "race":
            if any(c.decided_by == "data" for c in behind):
                strength = "data version"
            elif any(c.basis in ("same process", "same host") for c in behind):
                strength = "same-clock timestamps"
            else:
                strength = "cross-host timestamps beyond the skew bound"
            return strength, lines, stages
        if (
            outcome.verdict == "ambiguous"
            and outcome.reason == "overlap"
            and any(says_not_found(_text(a)) for a in seen)
        ):
            lines.insert(0, "the read ran while the stage was in flight and found nothing")
            return "overlap with a not-found read", lines, stages
        return None

    def _missing(self, judgement: Judgement, seen: list[dict[str, Any]]) -> list[str]:
        hints = []
        if not any(ERROR_TYPE in a for a in seen):
            hints.append(
                "no error.type on the failed load: let the exception reach the stage span "
                "(or set error.type) so the cause has a name"
            )
        if not judgement.load.query_span_id:
            hints.append(f"no {SPAN_NAMES[LOAD_DB_QUERY]} span: wrap the read in moduletrace.load_db_query")
        if not any(k.startswith(DATA_PREFIX) for a in seen for k in a):
            hints.append(
                "no data versions: moduletrace.record_data_version(found=..., observed_version=...) on the read "
                "and version=... on the commit decide races without clocks"
            )
        if isinstance(judgement.outcome, Unmatched):
            hints.append(judgement.outcome.reason)
        return hints


def _summarised(report: DiagnosisReport) -> DiagnosisReport:
    """The report with its counts, shares and durations by cause, its diagnoses in time order."""
    durations: dict[str, list[float]] = {cause: [] for cause in CAUSES}
    for diagnosis in report.diagnoses:
        durations[diagnosis.cause].append(diagnosis.duration_ms)
    for cause, values in durations.items():
        values.sort()
        report.by_cause[cause] = CauseSummary(
            count=len(values),
            share=round(len(values) / report.failed_loads, 4) if report.failed_loads else 0.0,
            median_ms=round(values[len(values) // 2], 3) if values else None,
            p95_ms=round(values[min(len(values) - 1, int(len(values) * 0.95))], 3) if values else None,
        )
    report.diagnoses.sort(key=lambda d: (d.load_start_ns, d.module_id))
    return report


def _is_evidence(key: str) -> bool:
    return key in _EVIDENCE_KEYS or key.startswith(EVIDENCE_PREFIXES)


def _text(attributes: Mapping[str, Any]) -> str:
    return " ".join(str(attributes.get(k, "")) for k in (ERROR_TYPE, "status.message", EXCEPTION_TYPE))


def _pool(seen: list[dict[str, Any]]) -> tuple[str, list[str], str] | None:
    for attributes in seen:
        text = _text(attributes)
        if attributes.get(POOL_TIMED_OUT) is True:
            size = attributes.get(POOL_SIZE)
            used = attributes.get(POOL_IN_USE)
            snapshot = f" (pool size {size}, in use {used})" if size is not None else ""
            return (
                "exception",
                [f"timed out waiting for a pooled connection after {attributes.get(POOL_WAIT_MS, '?')} ms{snapshot}"],
                "timeout",
            )
        if classify(str(attributes.get(ERROR_TYPE, "")), text) == "pool":
            if SERVER_FULL.search(text):
                return "exception", [f"the database refused the connection: {text.strip()[:200]}"], "max_connections"
            return "exception", [f"pool timeout: {text.strip()[:200]}"], "timeout"
        wait, timeout = attributes.get(POOL_WAIT_MS), attributes.get(POOL_TIMEOUT_S)
        if isinstance(wait, (int, float)) and isinstance(timeout, (int, float)) and timeout and wait >= 900 * timeout:
            return (
                "weak",
                [f"waited {wait} ms for a connection, at least 90% of the {timeout} s pool timeout"],
                "slow wait",
            )
    return None


def _auth(seen: list[dict[str, Any]]) -> tuple[str, list[str], str] | None:
    for attributes in seen:
        text = _text(attributes)
        status = attributes.get(HTTP_RESPONSE_STATUS_CODE) or attributes.get(AUTH_STATUS)
        error = str(attributes.get(AUTH_ERROR, ""))
        skew = attributes.get(AUTH_TOKEN_NOT_YET_VALID) is True or is_clock_skew(text)
        where = attributes.get("span.name", "the load")
        if skew:
            return (
                "exception",
                [
                    f"the token was not valid yet at {where}: issuer and validator clocks differ "
                    "(clock skew, not expiry)"
                ],
                "clock skew",
            )
        if status in _AUTH_STATUSES or error or attributes.get(AUTH_TOKEN_EXPIRED) is True:
            kind = "scope" if status == 403 or error == "insufficient_scope" else "expired"
            lines = [f"HTTP {status} at {where}" if status else f"token rejected at {where}"]
            if error:
                lines.append(f'WWW-Authenticate error="{error}"')
            expires_in = attributes.get(AUTH_TOKEN_EXPIRES_IN_S)
            if isinstance(expires_in, (int, float)):
                lines.append(
                    f"token expired {abs(expires_in):.1f} s before the request"
                    if expires_in <= 0
                    else f"token still valid for {expires_in:.1f} s"
                )
            return "status code" if status else "exception", lines, kind
        if classify(str(attributes.get(ERROR_TYPE, ""))) == "auth":
            return "exception", [f"authentication error {attributes[ERROR_TYPE]} at {where}"], "expired"
    return None
