"""Turning a RaceReport into the JSON document (a stable contract) or a table for people."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from moduletrace.analysis.diagnosis import Diagnosis, DiagnosisReport
from moduletrace.analysis.races import FailedCommit, RaceReport, RaceVerdict, Unmatched

#: Given a trace id, the URL of that trace in a backend's UI (None: no link).
TraceLink = Callable[[str], "str | None"]


def rfc3339(ns: int) -> str:
    return (
        dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def _verdict(v: RaceVerdict, link: TraceLink | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "module_id": v.module_id,
        "trace_id": v.trace_id,
        "load_span_id": v.load_span_id,
        "preceded": v.preceded,
        "margin_ms": v.margin_ms,
        "verdict": v.verdict,
        "same_trace": v.same_trace,
        "matched_by": v.matched_by,
        "creation_trace_id": v.creation_trace_id,
        "load_service": v.load_service,
        "load_start": rfc3339(v.load_start_ns),
        "load_instant": v.load_instant,
        "load_failed": v.load_failed,
        "evidence": [
            {
                "stage": c.stage,
                "verdict": c.verdict,
                "margin_ms": c.margin_ms,
                "stage_span_id": c.stage_span_id,
                "stage_end": rfc3339(c.stage_end_ns),
                "clock": c.basis,
                "offset_bound_ms": list(c.bound_ms) if c.bound_ms else None,
                "explanation": c.explanation,
            }
            for c in v.checks
        ],
    }
    if link is not None:
        out["trace_url"] = link(v.trace_id)
    return out


def _unmatched(u: Unmatched, link: TraceLink | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "module_id": u.module_id,
        "trace_id": u.trace_id,
        "load_span_id": u.load_span_id,
        "load_service": u.load_service,
        "load_start": rfc3339(u.load_start_ns),
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


def as_json(report: RaceReport, link: TraceLink | None = None, partial: list[str] | None = None) -> dict[str, Any]:
    """The ``--format json`` document (shape fixed in shared/design.md, documented in the README)."""
    return {
        "races": [_verdict(v, link) for v in report.races],
        "ambiguous": [_verdict(v, link) for v in report.ambiguous],
        "unmatched": [_unmatched(u, link) for u in report.unmatched],
        "failed_commits": [_failed(f) for f in report.failed_commits],
        "summary": {
            "loads": report.loads,
            "races": len(report.races),
            "ambiguous": len(report.ambiguous),
            "unmatched": len(report.unmatched),
            "clean": report.clean,
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
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  " + "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        lines.append("")

    def verdict_rows(verdicts: list[RaceVerdict]) -> list[list[str]]:
        rows = []
        for v in verdicts:
            beat = ", ".join(f"{s} by {v.margin_ms[s]:.1f} ms" for s in v.preceded) or "-"
            clock = "/".join(sorted({c.basis for c in v.checks}))
            row = [
                v.module_id,
                v.trace_id,
                v.load_span_id,
                beat,
                "yes" if v.same_trace else f"no ({v.matched_by})",
                clock,
                "failed" if v.load_failed else "ok",
            ]
            if link is not None:
                row.append(link(v.trace_id) or "")
            rows.append(row)
        return rows

    header = ["MODULE", "TRACE", "LOAD SPAN", "CAME BEFORE", "SAME TRACE", "CLOCK", "LOAD"]
    if link is not None:
        header.append("LINK")
    if report.races:
        table(f"Loads that raced their module's creation ({len(report.races)}):", verdict_rows(report.races), header)
    if report.ambiguous:
        table(f"Within clock skew, undecided ({len(report.ambiguous)}):", verdict_rows(report.ambiguous), header)
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
    lines.append(
        f"{report.loads} loads of {report.modules} modules: {len(report.races)} raced, "
        f"{len(report.ambiguous)} ambiguous, "
        f"{len(report.unmatched)} unmatched, {report.clean} clean."
    )
    if report.inconsistent_clocks:
        pairs = "; ".join(f"{a} / {b}" for a, b in report.inconsistent_clocks)
        lines.append(f"Clock pairs whose RPC timings contradict each other (no bound used): {pairs}")
    if partial:
        lines.append("PARTIAL SCAN: " + "; ".join(partial))
    return "\n".join(lines)


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
    if partial:
        lines.append("PARTIAL SCAN: " + "; ".join(partial))
    return "\n".join(lines)
