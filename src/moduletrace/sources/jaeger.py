"""Spans from Jaeger v2's query service: api_v3 over HTTP, the legacy ``/api/traces`` where needed.

Search: for each service (``--service``, else all that Jaeger knows) and each lifecycle span name
that service reports as an operation, ``GET /api/v3/traces`` over the window. api_v3 returns
whole traces, all merged into one ``resourceSpans`` list (spans are regrouped by trace id
downstream). It has no pagination: when a search returns as many traces as it was allowed, the
window is halved and each half searched again, so a busy incident window is covered, not just
its first page. An empty result is HTTP 404 "No traces found", not an error.

By module id (loads whose creation lies in another trace, outside the window): the legacy API's
``tags`` filter on the module id attribute, which every Jaeger v2 honours (api_v3's attribute filter
only exists from v2.19). Legacy JSON has microsecond times and tags for kind and status.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from moduletrace.conventions import CREATION_SPAN_NAMES, MODULE_ID, SPAN_NAMES
from moduletrace.errors import BackendError
from moduletrace.sources.http import BackendSource, ResponseTooLarge
from moduletrace.sources.otlp_json import FormatError, decode
from moduletrace.spans import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_INTERNAL,
    KIND_PRODUCER,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    Link,
    ResourceCache,
    Span,
    Wanted,
    normalise_span_id,
    normalise_trace_id,
)

_LEGACY_KINDS = {
    "client": KIND_CLIENT,
    "server": KIND_SERVER,
    "producer": KIND_PRODUCER,
    "consumer": KIND_CONSUMER,
    "internal": KIND_INTERNAL,
}
_MIN_WINDOW_NS = 1_000_000  # api_v3 takes RFC 3339 with nanoseconds
_MAX_SPLITS = 32


def _rfc3339(ns: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JaegerSource(BackendSource):
    """Lifecycle traces from Jaeger in [start_ns, end_ns]."""

    name = "Jaeger"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._services: list[str] | None = None
        # Traces already given whole: each search (per service and lifecycle operation) answers with
        # whole traces, so a trace matching five operations would come five times (and its spans
        # be counted as duplicates, as a re-exported batch is).
        self._delivered: set[str] = set()

    def trace_url(self, trace_id: str) -> str:
        return f"{self.backend.base_url}/trace/{trace_id}"

    # -- search -------------------------------------------------------------------------------

    def spans(self, wanted: Wanted | None = None) -> Iterator[Span]:
        for service in self._service_names():
            for operation in self._lifecycle_operations(service):
                yield from self._search(service, operation, self.start_ns, self.end_ns, wanted, 0)

    def _service_names(self) -> list[str]:
        if self.service:
            return [self.service]
        if self._services is None:
            body = self.backend.json(self.backend.get("/api/v3/services"))
            if not isinstance(body, dict) or not isinstance(body.get("services", []), list):
                raise BackendError(f"Jaeger at {self.backend.base_url} has no api_v3 (is it Jaeger v2?)")
            self._services = [str(s) for s in body.get("services", [])]  # {} when it has no data yet
        return self._services

    def _lifecycle_operations(self, service: str) -> list[str]:
        response = self.backend.get("/api/v3/operations", {"service": service})
        body = self.backend.json(response)
        operations = body.get("operations") if isinstance(body, dict) else None
        if not isinstance(operations, list):
            raise BackendError(f"Jaeger at {self.backend.base_url}: unexpected operations answer")
        names = {str(op.get("name")) for op in operations if isinstance(op, dict)}
        return [name for name in SPAN_NAMES.values() if name in names]

    def _search(
        self, service: str, operation: str, start: int, end: int, wanted: Wanted | None, depth: int
    ) -> Iterator[Span]:
        params = {
            "query.service_name": service,
            "query.operation_name": operation,
            "query.start_time_min": _rfc3339(start),
            "query.start_time_max": _rfc3339(end),
            "query.num_traces": str(self.limit),
        }
        try:
            response = self.backend.get("/api/v3/traces", params, ok_statuses=(404,))
        except ResponseTooLarge as exc:  # not split: a backend answering that much to each half would be asked again
            self.partial.append(
                f"{service}/{operation} between {_rfc3339(start)} and {_rfc3339(end)}: {exc} "
                f"for {self.limit} traces (a smaller --limit asks for fewer at a time)"
            )
            return
        if response.status_code == 404:
            return
        body = self.backend.json(response)
        if not isinstance(body, dict) or "result" not in body:
            raise BackendError(f"Jaeger at {self.backend.base_url}: unexpected api_v3 answer")
        try:
            spans = decode(body["result"], self.resources, wanted)
        except FormatError as exc:
            raise BackendError(f"Jaeger at {self.backend.base_url}: {exc}") from None
        traces = _trace_count(body["result"])
        if len(traces) >= self.limit:
            if depth < _MAX_SPLITS and end - start > _MIN_WINDOW_NS:
                middle = start + (end - start) // 2
                yield from self._search(service, operation, start, middle, wanted, depth + 1)
                yield from self._search(service, operation, middle, end, wanted, depth + 1)
                return
            self.partial.append(
                f"{service}/{operation}: more than {self.limit} traces between {_rfc3339(start)} and {_rfc3339(end)}"
            )
        yield from self._new(spans)

    def _new(self, spans: Iterable[Span]) -> list[Span]:
        """The spans of traces not given before (answers hold whole traces), remembering them."""
        delivered = self._delivered
        fresh = [span for span in spans if span.trace_id not in delivered]
        delivered.update(span.trace_id for span in fresh)
        return fresh

    # -- by module id -------------------------------------------------------------------------

    def spans_for_modules(
        self, module_ids: Iterable[str], since_ns: int, wanted: Wanted | None = None
    ) -> Iterator[Span]:
        """The traces of these modules' creations, from ``since_ns`` to the window's end."""
        creators = [
            s for s in self._service_names() if any(op in CREATION_SPAN_NAMES for op in self._lifecycle_operations(s))
        ]
        for module_id in module_ids:
            for service in creators:
                params = {
                    "service": service,
                    "tags": json.dumps({MODULE_ID: module_id}),
                    "start": str(since_ns // 1000),
                    "end": str(self.end_ns // 1000),
                    "limit": "20",
                }
                body = self.backend.json(self.backend.get("/api/traces", params))
                traces = body.get("data") if isinstance(body, dict) else None
                for trace in traces if isinstance(traces, list) else []:
                    yield from self._new(legacy_trace_spans(trace, self.resources, wanted))


def _trace_count(result: Any) -> set[str]:
    ids = set()
    for entry in result.get("resourceSpans") or ():
        for scope in entry.get("scopeSpans") or ():
            for span in scope.get("spans") or ():
                ids.add(span.get("traceId"))
    return ids


def legacy_trace_spans(trace: dict[str, Any], resources: ResourceCache, wanted: Wanted | None = None) -> Iterator[Span]:
    """Spans of one trace in Jaeger's legacy (UI) JSON: microsecond times, kind and status as tags."""
    try:
        return iter(list(_legacy_spans(trace, resources, wanted)))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        raise BackendError(f"Jaeger answered a malformed trace ({type(exc).__name__}: {str(exc)[:100]})") from None


def _legacy_spans(trace: dict[str, Any], resources: ResourceCache, wanted: Wanted | None) -> Iterator[Span]:
    processes = {}
    for key, process in (trace.get("processes") or {}).items():
        attributes = {tag["key"]: tag.get("value") for tag in process.get("tags") or []}
        attributes["service.name"] = process.get("serviceName", "")
        processes[key] = resources.get(attributes)
    for raw in trace.get("spans") or []:
        tags = {tag["key"]: tag.get("value") for tag in raw.get("tags") or []}
        kind = _LEGACY_KINDS.get(str(tags.pop("span.kind", "")), 0)
        name = raw.get("operationName", "")
        if wanted is not None and not wanted(name, kind):
            continue
        status_tag = str(tags.pop("otel.status_code", "")).upper()
        error = tags.pop("error", False) in (True, "true")
        status = STATUS_ERROR if status_tag == "ERROR" or error else STATUS_OK if status_tag == "OK" else STATUS_UNSET
        parent = ""
        links = []
        for ref in raw.get("references") or []:
            if ref.get("refType") == "CHILD_OF" and not parent and ref.get("traceID") == raw.get("traceID"):
                parent = normalise_span_id(ref["spanID"])
            else:
                links.append(Link(normalise_trace_id(ref["traceID"]), normalise_span_id(ref["spanID"]), {}))
        start_ns = int(raw.get("startTime", 0)) * 1000
        yield Span(
            trace_id=normalise_trace_id(raw["traceID"]),
            span_id=normalise_span_id(raw["spanID"]),
            parent_span_id=parent,
            name=name,
            kind=kind,
            start_ns=start_ns,
            end_ns=start_ns + int(raw.get("duration", 0)) * 1000,
            status_code=status,
            status_message=str(tags.pop("otel.status_description", "")),
            attributes=tags,
            resource=processes.get(raw.get("processID"), resources.get({})),
            links=tuple(links),
        )
