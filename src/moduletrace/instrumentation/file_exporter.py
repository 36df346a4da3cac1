"""The embedded default: spans and metrics written as OTLP JSON lines, the collector ``file`` exporter's format.

Each span export appends one line ``{"resourceSpans": [...]}`` (an ``ExportTraceServiceRequest`` in
OTLP JSON: lower-case hex ids, integer enums, 64-bit integers as decimal strings), exactly what
``moduletrace races --file`` reads and what a collector's ``file`` exporter writes, so a service
with no collector at hand still leaves an incident archive behind. Each metrics export appends one
line ``{"resourceMetrics": [...]}`` (an ``ExportMetricsServiceRequest``), to a file of its own, as
the collector archives metrics beside spans.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.status import StatusCode

from moduletrace.instrumentation._guard import logger, warn_once

_CLOSED = io.StringIO()  # where a file that could not be opened writes: nowhere (closed)
_CLOSED.close()


class _LinesFile:
    """A file kept open for appending whole lines, one writer at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file: Any = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        except OSError as exc:  # the service's path, not our bug: one line, and the service runs on
            warn_once(
                f"file:{self.path}",
                "moduletrace: cannot open %s for writing (%s): nothing is written there; other exporters still run",
                self.path,
                exc.strerror or exc,
            )
            self._file = _CLOSED

    def append(self, document: dict[str, Any], what: str) -> bool:
        line = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        try:
            with self._lock:
                if self._file.closed:
                    return False
                self._file.write(line + "\n")
                self._file.flush()
        except OSError as exc:
            logger.warning("moduletrace: cannot write %s to %s: %s", what, self.path, exc)
            return False
        return True

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


class OTLPJsonFileExporter(SpanExporter):
    """Append finished spans to ``path`` as OTLP JSON lines (one line per export batch)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._lines = _LinesFile(path)
        self.path = self._lines.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        written = self._lines.append(encode_spans(spans), "spans")
        return SpanExportResult.SUCCESS if written else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._lines.flush()
        return True

    def shutdown(self) -> None:
        self._lines.close()


class OTLPJsonMetricFileExporter(MetricExporter):
    """Append each metrics collection to ``path`` as one OTLP JSON line ``{"resourceMetrics": [...]}``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._lines = _LinesFile(path)
        self.path = self._lines.path

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if not metrics_data.resource_metrics:
            return MetricExportResult.SUCCESS
        written = self._lines.append(encode_metrics(metrics_data), "metrics")
        return MetricExportResult.SUCCESS if written else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        self._lines.flush()
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._lines.close()


def encode_metrics(metrics_data: MetricsData) -> dict[str, Any]:
    """Encode an SDK collection as one OTLP JSON ``ExportMetricsServiceRequest``, as the collector writes it.

    The OTLP exporters' own protobuf encoder does the work; OTLP JSON then differs from protobuf's
    JSON mapping only in ids (exemplars' trace and span ids: lower-case hex, not base64).
    """
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics as encode_protobuf

    document: dict[str, Any] = json_format.MessageToDict(encode_protobuf(metrics_data), use_integers_for_enums=True)
    return _hex_ids(document)  # type: ignore[no-any-return]


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: base64.b64decode(value).hex() if key in ("traceId", "spanId") else _hex_ids(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(value) for value in node]
    return node


def encode_spans(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Encode SDK spans as one OTLP JSON ``ExportTraceServiceRequest`` (grouped by resource, scope)."""
    by_resource: dict[int, tuple[Any, dict[Any, list[dict[str, Any]]]]] = {}
    for span in spans:
        resource_key = id(span.resource)
        if resource_key not in by_resource:
            by_resource[resource_key] = (span.resource, {})
        scopes = by_resource[resource_key][1]
        scope = span.instrumentation_scope
        scope_key = (scope.name, scope.version, scope.schema_url) if scope else None
        scopes.setdefault(scope_key, []).append(_span(span))
    resource_spans = []
    for resource, scopes in by_resource.values():
        scope_spans = []
        for key, encoded in scopes.items():
            entry: dict[str, Any] = {"scope": {}, "spans": encoded}
            if key is not None:
                name, version, schema_url = key
                entry["scope"] = {k: v for k, v in (("name", name), ("version", version)) if v}
                if schema_url:
                    entry["schemaUrl"] = schema_url
            scope_spans.append(entry)
        item: dict[str, Any] = {"resource": {"attributes": _attributes(resource.attributes)}, "scopeSpans": scope_spans}
        if resource.schema_url:
            item["schemaUrl"] = resource.schema_url
        resource_spans.append(item)
    return {"resourceSpans": resource_spans}


def _span(span: ReadableSpan) -> dict[str, Any]:
    ctx: SpanContext = span.context
    out: dict[str, Any] = {
        "traceId": format(ctx.trace_id, "032x"),
        "spanId": format(ctx.span_id, "016x"),
    }
    trace_state = ctx.trace_state.to_header() if ctx.trace_state else ""
    if trace_state:
        out["traceState"] = trace_state
    if span.parent is not None and span.parent.is_valid:
        out["parentSpanId"] = format(span.parent.span_id, "016x")
    out["flags"] = _flags(span.parent)
    out["name"] = span.name
    out["kind"] = span.kind.value + 1  # API SpanKind INTERNAL=0 ... ; OTLP INTERNAL=1 ...
    out["startTimeUnixNano"] = str(span.start_time or 0)
    out["endTimeUnixNano"] = str(span.end_time or 0)
    if span.attributes:
        out["attributes"] = _attributes(span.attributes)
    if span.dropped_attributes:
        out["droppedAttributesCount"] = span.dropped_attributes
    if span.events:
        out["events"] = [
            {
                "timeUnixNano": str(event.timestamp),
                "name": event.name,
                **({"attributes": _attributes(event.attributes)} if event.attributes else {}),
            }
            for event in span.events
        ]
    if span.dropped_events:
        out["droppedEventsCount"] = span.dropped_events
    if span.links:
        out["links"] = [_link(link) for link in span.links]
    if span.dropped_links:
        out["droppedLinksCount"] = span.dropped_links
    status: dict[str, Any] = {}
    if span.status.status_code is not StatusCode.UNSET:
        status["code"] = 2 if span.status.status_code is StatusCode.ERROR else 1
        if span.status.description:
            status["message"] = span.status.description
    out["status"] = status
    return out


def _flags(parent: SpanContext | None) -> int:
    # As the OpenTelemetry OTLP exporter encodes them (so a file we write equals the file a
    # collector writes for the same spans): 0x100 = "is_remote known", 0x200 = parent is remote.
    return 0x100 | (0x200 if parent is not None and parent.is_remote else 0)


def _link(link: Link) -> dict[str, Any]:
    ctx = link.context
    out: dict[str, Any] = {"traceId": format(ctx.trace_id, "032x"), "spanId": format(ctx.span_id, "016x")}
    if ctx.trace_state:
        out["traceState"] = ctx.trace_state.to_header()
    if link.attributes:
        out["attributes"] = _attributes(link.attributes)
    out["flags"] = _flags(ctx)
    return out


def _attributes(attributes: Any) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in attributes.items()]


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"doubleValue": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": str(value)}
