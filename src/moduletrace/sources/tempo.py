"""Spans from Grafana Tempo: TraceQL search for lifecycle spans, then each trace by id.

Search is ``GET /api/search`` with ``q={ span.module.stage != nil }`` (and the service, when
given) over the window in Unix seconds. Tempo refuses a window longer than its ``max_duration``
(168h unless configured, per tenant ``max_search_duration``) with a 400, so windows are cut to
168h, or to the shorter limit a 400 names. Tempo answers the first ``limit`` traces it finds, not
the newest, so when a search comes back full the window is halved and both halves searched
again. Trace ids in search results have their leading zeros stripped; they are padded back.

Each trace is then fetched whole with ``GET /api/v2/traces/{id}`` (Tempo 2.6 and later), whose
JSON is the proto3 mapping (base64 ids, enum names), not OTLP JSON. A trace Tempo cannot find
comes back as HTTP 200 ``{"trace": {}}``: it is reported partial, as is a trace Tempo marks
``PARTIAL``. A Tempo without ``/api/v2`` (before 2.6) is read through ``/api/traces/{id}``
(``{"batches": [...]}``), and that choice is kept for the rest of the scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx

from moduletrace.conventions import CREATE_START, CREATION_STAGES, MODULE_ID, MODULE_STAGE
from moduletrace.errors import BackendError, InputError
from moduletrace.sources.http import BackendSource
from moduletrace.sources.otlp_json import FormatError, decode
from moduletrace.spans import Span, Wanted, normalise_trace_id

_MIN_WINDOW_S = 2
_MAX_SPLITS = 12
#: Tempo's default ``query_frontend.search.max_duration``: a longer search window is a 400.
_DEFAULT_MAX_WINDOW_S = 168 * 3600
#: The creation stages, whose spans a load without its creation in the window is missing.
_CREATION_STAGES = (CREATE_START, *CREATION_STAGES)

# The 400 bodies of Tempo's query frontend (plain text), modules/frontend/search_sharder.go and
# search_handlers.go: "range specified by start and end exceeds 168h0m0s. received start=.. end=..",
# "limit 1000 exceeds max limit 500".
_WINDOW_TOO_LONG = re.compile(r"range specified by start and end exceeds ((?:\d+(?:\.\d+)?(?:ns|us|µs|μs|ms|s|m|h))+)")
_LIMIT_TOO_HIGH = re.compile(r"limit (\d+) exceeds max limit (\d+)")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
#: What Go's router answers for a path it has no route for (Tempo before 2.6 on /api/v2/...).
_NO_ROUTE = "404 page not found"


def go_duration_seconds(text: str) -> float:
    """Seconds in a Go duration as ``time.Duration.String`` prints it: ``168h0m0s``, ``1.5s``, ``500ms``."""
    if not text or _GO_DURATION_PART.sub("", text):
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(number) * _GO_UNITS_S[unit] for number, unit in _GO_DURATION_PART.findall(text))


def traceql_string(value: str) -> str:
    """``value`` as a TraceQL string literal.

    Tempo lexes a string with Go's text/scanner and decodes it with strconv.Unquote, so the literal
    follows Go's rules: a raw newline ends it ("literal not terminated"), a NUL is an invalid
    character, and ``\\`` starts an escape. Quotes, backslashes and control characters are
    escaped; a lone surrogate has no UTF-8 form and no escape (ValueError).

    >>> traceql_string('m"1\\n')
    '"m\\\\"1\\\\n"'
    """
    out = ['"']
    for char in value:
        code = ord(char)
        if char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{value!r} holds a lone surrogate, which TraceQL cannot express")
        elif code < 0x20 or not char.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_NAMED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class _Rejected(Exception):
    """Tempo refused one search (a 400 other than the window or the limit)."""


class TempoSource(BackendSource):
    """Lifecycle traces from Tempo in [start_ns, end_ns]."""

    name = "Tempo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fetched: set[str] = set()
        self._max_window_s = _DEFAULT_MAX_WINDOW_S
        self._page = self.limit
        self._has_v2 = True

    def trace_url(self, trace_id: str) -> str:
        path = "/api/v2/traces/" if self._has_v2 else "/api/traces/"
        return f"{self.backend.base_url}{path}{trace_id}"

    def query(self) -> str:
        condition = f"span.{MODULE_STAGE} != nil"
        if self.service:
            condition += f" && resource.service.name = {traceql_string(self.service)}"
        return "{ " + condition + " }"

    def module_query(self, module_id: str) -> str:
        """The creation spans of one module (ValueError when the id cannot be written in TraceQL)."""
        stages = " || ".join(f"span.{MODULE_STAGE} = {traceql_string(stage)}" for stage in _CREATION_STAGES)
        return "{ " + f"span.{MODULE_ID} = {traceql_string(module_id)} && ({stages})" + " }"

    def spans(self, wanted: Wanted | None = None) -> Iterator[Span]:
        start_s = self.start_ns // 1_000_000_000
        end_s = -(-self.end_ns // 1_000_000_000)
        try:
            q = self.query()
        except ValueError:
            raise InputError(f"--service {self.service!r} cannot be written as a TraceQL string") from None
        try:
            for trace_id in self._search(q, start_s, max(end_s, start_s + 1)):
                yield from self._trace(trace_id, wanted)
        except _Rejected as exc:
            raise BackendError(f"Tempo at {self.backend.base_url} rejected the search {q}: {exc}") from None

    def spans_for_modules(
        self, module_ids: Iterable[str], since_ns: int, wanted: Wanted | None = None
    ) -> Iterator[Span]:
        """The traces of these modules' creations, from ``since_ns`` to the window's end.

        A lookup Tempo rejects, or an id TraceQL cannot express, leaves that module partial and
        the others are still looked up.
        """
        start_s = since_ns // 1_000_000_000
        end_s = max(-(-self.end_ns // 1_000_000_000), start_s + 1)
        for module_id in module_ids:
            shown = repr(module_id if len(module_id) <= 80 else module_id[:80] + "...")
            try:
                q = self.module_query(module_id)
            except ValueError:
                self.partial.append(f"module {shown}: its id cannot be written as a TraceQL string")
                continue
            try:
                trace_ids = list(self._search(q, start_s, end_s))
            except _Rejected as exc:
                self.partial.append(f"module {shown}: Tempo rejected the creation lookup: {exc}")
                continue
            for trace_id in trace_ids:
                yield from self._trace(trace_id, wanted)

    # -- search -------------------------------------------------------------------------------

    def _search(self, q: str, start_s: int, end_s: int) -> Iterator[str]:
        """Trace ids matching ``q`` in [start_s, end_s], in windows no longer than Tempo accepts."""
        while start_s < end_s:
            window_end = min(end_s, start_s + self._max_window_s)
            yield from self._search_window(q, start_s, window_end, 0)
            start_s = window_end

    def _search_window(self, q: str, start_s: int, end_s: int, depth: int) -> Iterator[str]:
        params = {"q": q, "start": str(start_s), "end": str(end_s), "limit": str(self._page), "spss": "1"}
        response = self.backend.get("/api/search", params, ok_statuses=(400,))
        if response.status_code == 400:
            self._adapt_to(response, end_s - start_s)
            yield from self._search(q, start_s, end_s)
            return
        body = self.backend.json(response)
        if not isinstance(body, dict):
            raise BackendError(f"Tempo at {self.backend.base_url}: unexpected search answer")
        traces = body.get("traces") or []
        if len(traces) >= self._page:
            if depth < _MAX_SPLITS and end_s - start_s >= _MIN_WINDOW_S:
                middle = start_s + (end_s - start_s) // 2
                yield from self._search_window(q, start_s, middle, depth + 1)
                yield from self._search_window(q, middle, end_s, depth + 1)
                return
            self.partial.append(f"more than {self._page} traces match {q} in one {end_s - start_s} s window")
        for trace in traces:
            trace_id = trace.get("traceID") if isinstance(trace, dict) else None
            if trace_id:
                yield normalise_trace_id(str(trace_id))

    def _adapt_to(self, response: httpx.Response, window_s: int) -> None:
        """Take the smaller window or page a 400 names; any other 400 rejects this search."""
        reason = self.backend.reason(response)
        too_long = _WINDOW_TOO_LONG.search(response.text)
        if too_long:
            max_window_s = int(go_duration_seconds(too_long.group(1)))
            if max_window_s < 1:
                raise BackendError(f"Tempo at {self.backend.base_url} allows no search window of 1 s: {reason}")
            if max_window_s < window_s:
                self._max_window_s = max_window_s
                return
        too_high = _LIMIT_TOO_HIGH.search(response.text)
        if too_high and 0 < int(too_high.group(2)) < self._page:
            self._page = int(too_high.group(2))
            return
        raise _Rejected(f"HTTP 400: {reason}" if reason else "HTTP 400")

    # -- traces -------------------------------------------------------------------------------

    def _trace(self, trace_id: str, wanted: Wanted | None) -> Iterator[Span]:
        if trace_id in self._fetched:
            return
        self._fetched.add(trace_id)
        payload = self._payload(trace_id)
        if payload is None:
            self.partial.append(f"trace {trace_id} found by search but not by id")
            return
        try:
            yield from decode(payload, self.resources, wanted)
        except FormatError as exc:
            raise BackendError(f"Tempo at {self.backend.base_url}: trace {trace_id}: {exc}") from None

    def _payload(self, trace_id: str) -> Mapping[str, Any] | None:
        """The trace's ``resourceSpans``/``batches`` object, or None when Tempo has no such trace."""
        if not self._has_v2:
            return self._payload_v1(trace_id)
        response = self.backend.get(f"/api/v2/traces/{trace_id}", ok_statuses=(404,))
        if response.status_code != 404:
            return self._payload_v2(trace_id, response)
        # Tempo 2.6+ answers a missing trace with 200, so a 404 here is a missing route (Tempo
        # before 2.6, or a proxy passing /api/traces only) or a trace hidden from this tenant.
        # The v1 route settles it: when it has the trace, it is used from now on.
        if response.text.strip() == _NO_ROUTE:
            self._use_v1()
            return self._payload_v1(trace_id)
        payload = self._payload_v1(trace_id)
        if payload is not None:
            self._use_v1()
        return payload

    def _use_v1(self) -> None:
        self._has_v2 = False
        if self.backend.log is not None:
            self.backend.log(f"Tempo at {self.backend.base_url} has no /api/v2 (before 2.6): using /api/traces")

    def _payload_v2(self, trace_id: str, response: httpx.Response) -> Mapping[str, Any] | None:
        body = self.backend.json(response)
        if not isinstance(body, dict) or "trace" not in body or not isinstance(body["trace"], (dict, type(None))):
            raise BackendError(f"Tempo at {self.backend.base_url}: unexpected trace answer for {trace_id}")
        trace = _spans_or_none(body["trace"])
        if body.get("status") == "PARTIAL":
            message = " ".join(str(body.get("message") or "").split())[:200]
            self.partial.append(f"trace {trace_id} is partial: {message}".strip())
            return trace or _NO_SPANS  # reported once, as partial
        return trace

    def _payload_v1(self, trace_id: str) -> Mapping[str, Any] | None:
        response = self.backend.get(f"/api/traces/{trace_id}", ok_statuses=(404,))
        if response.status_code == 404:
            return None
        body = self.backend.json(response)
        if not isinstance(body, dict):
            raise BackendError(f"Tempo at {self.backend.base_url}: unexpected trace answer for {trace_id}")
        return _spans_or_none(body)


_NO_SPANS: Mapping[str, Any] = {"resourceSpans": []}


def _spans_or_none(trace: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The trace object when it holds resource spans under either name, else None (not found)."""
    if not trace or not (trace.get("resourceSpans") or trace.get("batches")):
        return None
    return trace
