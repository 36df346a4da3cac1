"""Spans from Grafana Tempo: TraceQL search for lifecycle spans, then each trace by id.

Search is ``GET /api/search`` with ``q={ span.module.stage != nil }`` (and the service, when
given) over the window in Unix seconds. Tempo answers the first ``limit`` traces it finds, not
the newest, so when a search comes back full the window is halved and both halves searched
again. Trace ids in search results have their leading zeros stripped; they are padded back.
Each trace is then fetched whole with ``GET /api/v2/traces/{id}``, whose JSON is the proto3
mapping (base64 ids, enum names), not OTLP JSON; a trace Tempo marks ``PARTIAL`` is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from moduletrace.errors import BackendError
from moduletrace.sources.http import BackendSource
from moduletrace.sources.otlp_json import FormatError, decode
from moduletrace.spans import Span, Wanted, normalise_trace_id

_MIN_WINDOW_S = 2
_MAX_SPLITS = 12


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TempoSource(BackendSource):
    """Lifecycle traces from Tempo in [start_ns, end_ns]."""

    name = "Tempo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fetched: set[str] = set()

    def trace_url(self, trace_id: str) -> str:
        return f"{self.backend.base_url}/api/v2/traces/{trace_id}"

    def query(self) -> str:
        condition = "span.module.stage != nil"
        if self.service:
            condition += f" && resource.service.name = {_quote(self.service)}"
        return "{ " + condition + " }"

    def spans(self, wanted: Wanted | None = None) -> Iterator[Span]:
        start_s = self.start_ns // 1_000_000_000
        end_s = -(-self.end_ns // 1_000_000_000)
        for trace_id in self._search(self.query(), start_s, max(end_s, start_s + 1), 0):
            yield from self._trace(trace_id, wanted)

    def spans_for_modules(
        self, module_ids: Iterable[str], since_ns: int, wanted: Wanted | None = None
    ) -> Iterator[Span]:
        start_s = since_ns // 1_000_000_000
        end_s = max(-(-self.end_ns // 1_000_000_000), start_s + 1)
        for module_id in module_ids:
            q = (
                "{ span.module.id = "
                + _quote(module_id)
                + ' && span.module.stage =~ "create_start|db_commit|cache_update" }'
            )
            for trace_id in self._search(q, start_s, end_s, 0):
                yield from self._trace(trace_id, wanted)

    def _search(self, q: str, start_s: int, end_s: int, depth: int) -> Iterator[str]:
        params = {"q": q, "start": str(start_s), "end": str(end_s), "limit": str(self.limit), "spss": "1"}
        body = self.backend.json(self.backend.get("/api/search", params))
        if not isinstance(body, dict):
            raise BackendError(f"Tempo at {self.backend.base_url}: unexpected search answer")
        traces = body.get("traces") or []
        if len(traces) >= self.limit:
            if depth < _MAX_SPLITS and end_s - start_s >= _MIN_WINDOW_S:
                middle = start_s + (end_s - start_s) // 2
                yield from self._search(q, start_s, middle, depth + 1)
                yield from self._search(q, middle, end_s, depth + 1)
                return
            self.partial.append(f"more than {self.limit} traces match {q} in one {end_s - start_s} s window")
        for trace in traces:
            trace_id = trace.get("traceID") if isinstance(trace, dict) else None
            if trace_id:
                yield normalise_trace_id(str(trace_id))

    def _trace(self, trace_id: str, wanted: Wanted | None) -> Iterator[Span]:
        if trace_id in self._fetched:
            return
        self._fetched.add(trace_id)
        response = self.backend.get(f"/api/v2/traces/{trace_id}", ok_statuses=(404,))
        if response.status_code == 404:
            self.partial.append(f"trace {trace_id} found by search but not by id")
            return
        body = self.backend.json(response)
        if not isinstance(body, dict) or not isinstance(body.get("trace"), dict):
            raise BackendError(f"Tempo at {self.backend.base_url}: unexpected trace answer for {trace_id}")
        if body.get("status") == "PARTIAL":
            self.partial.append(f"trace {trace_id} is partial: {body.get('message', '')}".strip())
        if not body["trace"].get("resourceSpans"):
            return
        try:
            yield from decode(body["trace"], self.resources, wanted)
        except FormatError as exc:
            raise BackendError(f"Tempo at {self.backend.base_url}: trace {trace_id}: {exc}") from None
