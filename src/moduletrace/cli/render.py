"""Turning a RaceReport into the JSON document (a stable contract) or a table for people."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moduletrace.analysis.report import ConsumerLag, FailedCommit, RaceReport, RaceVerdict, Unmatched

if TYPE_CHECKING:  # types only: `races` does not load the diagnosis
    from moduletrace.analysis.diagnosis import Diagnosis, DiagnosisReport
    from moduletrace.demo.runner import DemoOptions, DemoResult

#: Given a trace id, the URL of that trace in a backend's UI (None: no link).
TraceLink = Callable[[str], "str | None"]


def pretty_json(document: object) -> str:
    """``json.dumps(document, indent=2)``, character for character, three times faster where msgspec
    is installed (``moduletrace[fast]``): the C encoder writes it compact, msgspec indents that text
    (numbers and escapes kept as written). ``json.dumps``'s own indenting runs in pure Python."""
    try:
        from msgspec.json import format as indent
    except ImportError:
        return json.dumps(document, indent=2)
    try:
        return indent(json.dumps(document), indent=2)
    except ValueError:  # NaN or Infinity, which json.dumps writes and JSON has not (DecodeError)
        return json.dumps(document, indent=2)


def rfc3339(ns: int) -> str:
    """Unix nanoseconds as RFC 3339 (UTC, microseconds); a time no calendar date holds stays a number."""
    try:
        moment = _EPOCH + dt.timedelta(microseconds=ns // 1000)
    except OverflowError:  # before year 1 or after 9999
        return f"{ns}ns since 1970-01-01T00:00:00Z"
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def printable(text: object) -> str:
    """``text`` safe for a terminal: control characters (ANSI escapes), lone surrogates and other
    unprintable characters written as Python escapes (``\\x1b``, ``\\ud800``)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _verdict(v: RaceVerdict, link: TraceLink | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "module_id": v.module_id,
        "trace_id": v.trace_id,
        "load_span_id": v.load_span_id,
        "preceded": v.preceded,
        "margin_ms": v.margin_ms,
        "verdict": v.verdict,
        "same_trace": v.same_trace,
        "load_failed": v.load_failed,
        "decided_by": v.decided_by,
        "matched_by": v.matched_by,
        "creation_trace_id": v.creation_trace_id,
        "load_service": v.load_service,
        "read_start": rfc3339(v.read_start_ns),
        "read_end": rfc3339(v.read_end_ns),
        "read_source": v.read_source,
        "evidence": [
            {
                "stage": c.stage,
                "verdict": c.verdict,
                **({"reason": c.reason} if c.reason else {}),
                "decided_by": c.decided_by,
                "margin_ms": c.margin_ms,
                "stage_span_id": c.stage_span_id,
                "stage_service": c.stage_service,
                "stage_start": rfc3339(c.stage_window.start_ns),
                "stage_end": rfc3339(c.stage_window.end_ns),
                "clock": c.basis,
                "offset_bound_ms": list(c.bound_ms) if c.bound_ms else None,
                "clocks_contradicted": c.clocks_contradicted,
                "explanation": c.explanation,
                **_lag_json(v.consumer_lag, c.stage),
            }
            for c in v.checks
        ],
    }
    if v.verdict == "ambiguous":
        out["reason"] = v.reason
    if link is not None:
        out["trace_url"] = link(v.trace_id)
        if v.creation_trace_id != v.trace_id:  # matched by link or module id: its creation is elsewhere
            out["creation_trace_url"] = link(v.creation_trace_id)
    return out


def _lag_json(lags: tuple[ConsumerLag, ...], stage: str) -> dict[str, Any]:
    """A consumer's recorded lag under its stage's check (absent when it recorded none)."""
    for lag in lags:
        if lag.stage == stage:
            return {
                "consumer_lag_ms": lag.lag_ms,
                "consumer_lag_clock": lag.lag_clock or None,
                "queue_depth": lag.queue_depth,
                "messaging_system": lag.system or None,
                "messaging_destination": lag.destination or None,
            }
    return {}


def _unmatched(u: Unmatched, link: TraceLink | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "module_id": u.module_id,
        "trace_id": u.trace_id,
        "load_span_id": u.load_span_id,
        "load_service": u.load_service,
        "read_start": rfc3339(u.read_start_ns),
        "load_failed": u.load_failed,
        "reason": u.reason,
    }
    if link is not None:
        out["trace_url"] = link(u.trace_id)
    return out


def _failed(f: FailedCommit) -> dict[str, Any]:
    return {
        "module_id": f.module_id,
        "trace_id": f.trace_id,
        "span_id": f.span_id,
        "service": f.service,
        "end": rfc3339(f.end_ns),
        "error": f.error,
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _split(verdicts: list[RaceVerdict] | list[Unmatched]) -> dict[str, int]:
    failed = sum(1 for v in verdicts if v.load_failed)
    return {"failed": failed, "succeeded": len(verdicts) - failed}


def as_json(report: RaceReport, link: TraceLink | None = None, partial: list[str] | None = None) -> dict[str, Any]:
    """The ``--format json`` document (its shape is fixed in docs/design.md)."""
    return {
        "races": [_verdict(v, link) for v in report.races],
        "ambiguous": [_verdict(v, link) for v in report.ambiguous],
        "stale_reads": [_verdict(v, link) for v in report.stale_reads],
        "clocks_contradicted": [_verdict(v, link) for v in report.contradicted],
        "unmatched": [_unmatched(u, link) for u in report.unmatched],
        "failed_commits": [_failed(f) for f in report.failed_commits],
        "summary": {
            "loads": report.loads,
            "failed_loads": report.failed_loads,
            "succeeded_loads": report.loads - report.failed_loads,
            "races": len(report.races),
            "races_by_load": _split(report.races),
            "stale_reads": len(report.stale_reads),
            "stale_reads_by_load": _split(report.stale_reads),
            "ambiguous": len(report.ambiguous),
            "ambiguous_by_reason": {
                reason: sum(1 for v in report.ambiguous if v.reason == reason) for reason in ("overlap", "clock")
            },
            "ambiguous_by_load": _split(report.ambiguous),
            "unmatched": len(report.unmatched),
            "clean": report.clean,
            "clocks_contradicted": len(report.contradicted),
            "modules": report.modules,
            "failed_commits": len(report.failed_commits),
            "lifecycle_spans": report.lifecycle_spans,
            "duplicate_spans": report.duplicates,
            "spans_without_module_id": report.spans_without_module_id,
            "inconsistent_clock_pairs": [list(pair) for pair in report.inconsistent_clocks],
            "partial": partial or [],
        },
    }


def as_table(report: RaceReport, link: TraceLink | None = None, partial: list[str] | None = None) -> str:
    lines: list[str] = []

    def table(title: str, rows: list[list[str]], header: list[str]) -> None:
        lines.append(title)
        rows = [[printable(cell) for cell in row] for row in rows]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  " + "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        lines.append("")

    def verdict_rows(verdicts: list[RaceVerdict]) -> list[list[str]]:
        rows = []
        for v in verdicts:
            if v.verdict == "race":
                # A stage the data says was missed while the clocks give the read no lead over it
                # (it overlapped) has no "by": a negative lead would read as a contradiction.
                margins = v.margin_ms
                what = ", ".join(
                    f"{s} by {margins[s]:.1f} ms" if margins[s] > 0 else f"{s}: missed (data), no clock lead"
                    for s in v.preceded
                )
            else:
                what = ", ".join(v.preceded) + (f" ({v.reason})" if v.reason else "")
            what += "".join(
                f" [{lag.stage}: consumer lag {lag.lag_ms:,.1f} ms"
                + (f", depth {lag.queue_depth:,}" if lag.queue_depth is not None else "")
                + "]"
                for lag in v.consumer_lag
                if lag.lag_ms is not None and lag.stage in v.preceded
            )
            row = [
                v.module_id,
                v.trace_id,
                v.load_span_id,
                what or "-",
                v.decided_by,
                "/".join(sorted({c.basis for c in v.checks})),
                "yes" if v.same_trace else f"no ({v.matched_by})",
                "failed" if v.load_failed else "ok",
            ]
            if link is not None:
                row.append(link(v.trace_id) or "")
            rows.append(row)
        return rows

    header = ["MODULE", "TRACE", "LOAD SPAN", "STAGES", "DECIDED BY", "CLOCK", "SAME TRACE", "LOAD"]
    if link is not None:
        header.append("LINK")
    sections = (
        ("Loads that read before their module's commit or cache update", report.races),
        ("Stale reads: after the stage ended, yet the write was not seen", report.stale_reads),
        ("Undecided: the read overlapped the stage, or the gap is inside the clock bound", report.ambiguous),
        ("Recorded data contradicts the clocks (saw the write the clocks say it read before)", report.contradicted),
    )
    for title, verdicts in sections:
        if verdicts:
            table(f"{title} ({len(verdicts)}):", verdict_rows(verdicts), header)
    if report.unmatched:
        rows = [[u.module_id, u.trace_id, u.load_span_id, u.reason] for u in report.unmatched]
        table(
            f"Loads with no comparable creation ({len(report.unmatched)}):",
            rows,
            ["MODULE", "TRACE", "LOAD SPAN", "WHY"],
        )
    if report.failed_commits:
        rows = [[f.module_id, f.trace_id, f.span_id, f.error] for f in report.failed_commits]
        table(
            f"Creations whose commit failed ({len(report.failed_commits)}):",
            rows,
            ["MODULE", "TRACE", "COMMIT SPAN", "ERROR"],
        )
    races, stale = _split(report.races), _split(report.stale_reads)
    listed: list[RaceVerdict | Unmatched] = [*report.races, *report.stale_reads, *report.ambiguous, *report.unmatched]
    listed_failed = sum(v.load_failed for v in listed)
    cleared = report.failed_loads - listed_failed
    lines.append(
        f"{_count(report.loads, 'load')} of {_count(report.modules, 'module')} ({report.failed_loads} failed): "
        f"{len(report.races)} raced ({races['failed']} failed, {races['succeeded']} succeeded), "
        f"{_count(len(report.stale_reads), 'stale read')} ({stale['failed']} failed, {stale['succeeded']} succeeded), "
        f"{len(report.ambiguous)} ambiguous, {len(report.unmatched)} unmatched, {report.clean} clean."
    )
    if cleared:
        lines.append(
            f"{_count(cleared, 'failed load')} the race rule clears (clean): "
            "`moduletrace diagnose` names their cause (auth, pool, ...)."
        )
    if report.inconsistent_clocks:
        pairs = "; ".join(f"{a} / {b}" for a, b in report.inconsistent_clocks)
        lines.append(f"Clock pairs whose RPC timings contradict each other (no bound used): {pairs}")
    if partial:
        lines.append("PARTIAL SCAN: " + "; ".join(partial))
    return "\n".join(printable(line) for line in lines)


def _diagnosis(d: Diagnosis, link: TraceLink | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "module_id": d.module_id,
        "trace_id": d.trace_id,
        "load_span_id": d.load_span_id,
        "cause": d.cause,
        "detail": d.detail,
        "strength": d.strength,
        "evidence": list(d.evidence),
        "secondary": list(d.secondary),
        "missing": list(d.missing),
        "database": list(d.database),
        "duration_ms": d.duration_ms,
        "load_service": d.load_service,
        "load_start": rfc3339(d.load_start_ns),
    }
    if link is not None:
        out["trace_url"] = link(d.trace_id)
    return out


def diagnosis_json(
    report: DiagnosisReport, link: TraceLink | None = None, partial: list[str] | None = None
) -> dict[str, Any]:
    """The ``diagnose --format json`` document (documented in the README)."""
    return {
        "failed_loads": [_diagnosis(d, link) for d in report.diagnoses],
        "summary": {
            "loads": report.loads,
            "failed_loads": report.failed_loads,
            "by_cause": {
                cause: {"count": s.count, "share": s.share, "median_ms": s.median_ms, "p95_ms": s.p95_ms}
                for cause, s in report.by_cause.items()
            },
            "partial": partial or [],
        },
        "database": list(report.database),
    }


def diagnosis_table(report: DiagnosisReport, link: TraceLink | None = None, partial: list[str] | None = None) -> str:
    lines: list[str] = []
    if report.diagnoses:
        lines.append(f"Failed loads ({report.failed_loads}):")
        for d in report.diagnoses:
            cause = d.cause + (f" ({d.detail})" if d.detail else "")
            also = f"; also {', '.join(d.secondary)}" if d.secondary else ""
            lines.append(f"  {d.module_id}  trace {d.trace_id}  {cause}, {d.strength}{also}  [{d.duration_ms:.1f} ms]")
            for line in d.evidence:
                lines.append(f"      {line}")
            for line in d.database:
                lines.append(f"      database: {line}")
            for hint in d.missing:
                lines.append(f"      missing: {hint}")
            if link is not None:
                lines.append(f"      {link(d.trace_id)}")
        lines.append("")
    lines.append(f"{report.failed_loads} of {report.loads} loads failed.")
    rows = [
        f"  {cause:10s} {s.count:5d}  {100 * s.share:5.1f}%   median {s.median_ms} ms, p95 {s.p95_ms} ms"
        for cause, s in report.by_cause.items()
        if s.count
    ]
    if rows:
        lines.append("By cause:")
        lines.extend(rows)
    if report.database:
        lines.append("Databases, brokers and pools during the incident (metrics):")
        lines.extend(f"  {line}" for line in report.database)
    if partial:
        lines.append("PARTIAL SCAN: " + "; ".join(partial))
    return "\n".join(printable(line) for line in lines)


def demo_json(result: DemoResult) -> dict[str, Any]:
    """``demo --format json``: the races document, the diagnosis, and what was injected against what was found."""
    document = as_json(result.report)
    document["diagnosis"] = diagnosis_json(result.diagnosis)
    document["demo"] = {
        "directory": str(result.directory),
        "spans": result.spans_glob,
        "injected": result.injected,
        "load_statuses": result.statuses,
        "missed": sorted(result.missed),
        "false_positives": sorted(result.false_positives),
        "misdiagnosed": {m: {"injected": f, "diagnosed": c} for m, (f, c) in result.misdiagnosed.items()},
        "matches": result.matches,
    }
    if result.broker is not None:
        document["demo"]["broker"] = {
            "url": result.broker.shown,
            "system": result.broker.system,
            "destination": result.broker.destination,
        }
    return document


def demo_table(result: DemoResult, options: DemoOptions, seconds: float) -> str:
    """``demo`` on a terminal: the races table, then the summary lines."""
    return as_table(result.report) + "\n\n" + "\n".join(summary_lines(result, options, seconds))


def summary_lines(result: DemoResult, options: DemoOptions, seconds: float) -> list[str]:
    """What the demo prints after the race table: failures, the check, where the spans are, what next."""
    failures = Counter(status for status in result.statuses.values() if status != 200)
    failed = sum(failures.values())
    names = {404: "not found (404)", 401: "unauthorized (401)", 503: "pool timeout (503)"}
    loads = len(result.statuses)
    lines = [
        f"{loads} modules created and loaded by {options.concurrency} concurrent clients in {seconds:.1f} s "
        f"(seed {options.seed}); {failed} loads failed ({100 * failed / max(loads, 1):.1f}%): "
        + ", ".join(f"{count} {names.get(status, status)}" for status, count in sorted(failures.items())),
        "",
        f"Injected vs found: {len(result.injected_races)} races injected, "
        f"{len(result.found_races & result.injected_races)}"
        f" found by the race rule, {len(result.missed)} missed, {len(result.false_positives)} clean loads flagged"
        f" -> {'OK' if not result.missed and not result.false_positives else 'MISMATCH'}",
    ]
    if result.missed:
        lines.append("  missed: " + ", ".join(sorted(result.missed)))
    if result.false_positives:
        lines.append("  flagged but not injected: " + ", ".join(sorted(result.false_positives)))
    by_cause = ", ".join(f"{s.count} {cause}" for cause, s in result.diagnosis.by_cause.items() if s.count)
    injected = Counter(result.injected.values())
    lines.append(
        f"Diagnosis of the {result.diagnosis.failed_loads} failed loads: {by_cause or 'none'}; injected: "
        + (", ".join(f"{n} {f}" for f, n in sorted(injected.items())) or "none")
        + f" -> {'OK' if not result.misdiagnosed else 'MISMATCH'}"
    )
    for module_id, (fault, cause) in sorted(result.misdiagnosed.items()):
        lines.append(f"  {module_id}: injected {fault}, diagnosed {cause}")
    if result.broker is not None:
        kind = "stream" if result.broker.system == "redis" else "queue"
        lines.append(
            f"Indexer: a consumer of the {result.broker.system} {kind} {result.broker.destination!r} at "
            f"{result.broker.shown} (removed after the run)"
        )
    lines += [
        "",
        f"Spans (OTLP JSON lines, the collector file-exporter format): {result.spans_glob}",
        "Next:",
        f"  moduletrace races --file '{result.spans_glob}'",
        f"  moduletrace diagnose --file '{result.spans_glob}'",
        "  moduletrace demo --otlp http://127.0.0.1:4318     # also send them to a collector (collector/otelcol.sh)",
        "  moduletrace races --jaeger http://127.0.0.1:16686 --since 15m",
        "  moduletrace races --tempo http://127.0.0.1:3200 --since 15m",
    ]
    return lines
