"""The Tempo source against Tempo's real answers: missing traces, window limits, TraceQL strings, old APIs.

No Tempo runs here (it is AGPL-licensed and cannot be built on this machine). ``FakeTempo`` is an
httpx MockTransport handler (served over HTTP by tests/support/local_server.py for the command's
test) that answers as Tempo's API documentation and query-frontend code describe
(grafana/tempo v3.0.3, read, not copied; every payload below is written by hand):

- ``GET /api/v2/traces/{id}`` (2.6+): ``{"trace": {"resourceSpans": [...]}, "metrics": {...}}``;
  a trace it cannot find is HTTP 200 ``{"trace": {}, ...}`` (combiner/trace_by_id_v2.go; grafana/tempo#5105);
  a trace hidden from the tenant is a 404 with no body (combiner/common.go).
- ``GET /api/traces/{id}``: ``{"batches": [...]}`` (pkg/tempopb/trace_utils.go MarshalToJSONV1),
  ``instrumentationLibrarySpans`` before Tempo 2.0; not found is a 404 with no body.
- Tempo before 2.6 has no ``/api/v2`` route: Go's router answers ``404 page not found``.
- ``GET /api/search`` refuses a window longer than ``max_duration`` (168h by default) with a plain
  text 400 "range specified by start and end exceeds 168h0m0s. received start=.. end=.."
  (modules/frontend/search_sharder.go), a limit above ``max_result_limit`` with
  "limit N exceeds max limit M" (search_handlers.go), and a query TraceQL cannot lex with
  "invalid TraceQL query: parse error at line 1, col N: ...".
- TraceQL strings are lexed by Go's text/scanner and decoded by strconv.Unquote
  (pkg/traceql/lexer.go): ``scan_go_string`` below follows the Go specification's rules for
  interpreted string literals, independently of the code under test.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moduletrace.cli.main import main
from moduletrace.conventions import SPAN_NAMES
from moduletrace.errors import BackendError, InputError
from moduletrace.sources.http import Auth, Backend
from moduletrace.sources.tempo import TempoSource, go_duration_seconds, traceql_string
from tests.support.local_server import LocalServer

DAY = 86400
NOW_S = 1_790_000_000
CREATION_STAGES = ("create_start", "db_commit", "cache_update")  # the contract's creation stages (design.md)
MODULE_QUERY_TAIL = (
    ' && (span.module.stage = "create_start" || span.module.stage = "db_commit"'
    ' || span.module.stage = "cache_update") }'
)


# -- Go's interpreted string literal, as Tempo's lexer reads it ---------------------------------------

_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}


def scan_go_string(text: str, pos: int) -> tuple[str, int]:
    """The string literal at ``text[pos]`` and the position after it; ValueError as Tempo's lexer fails."""
    if text[pos : pos + 1] != '"':
        raise ValueError("expected a string")
    out = bytearray()
    i = pos + 1
    while True:
        if i >= len(text) or text[i] == "\n":
            raise ValueError("literal not terminated")
        char = text[i]
        if char == "\x00":
            raise ValueError("invalid character NUL")
        if char == '"':
            return out.decode("utf-8"), i + 1
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        escape = text[i + 1 : i + 2]
        if escape in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[escape])
            i += 2
        elif escape and escape in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError("invalid syntax")
            out.append(int(digits, 8))
            i += 4
        elif escape in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[escape]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError("invalid syntax")
            code = int(digits, 16)
            if escape == "x":
                out.append(code)
            elif 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise ValueError("invalid syntax")
            else:
                out += chr(code).encode("utf-8")
            i += 2 + width
        else:
            raise ValueError("unknown escape sequence")


# -- the fake -----------------------------------------------------------------------------------------


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


@dataclass
class Stored:
    """One trace in the fake: one lifecycle span of ``module_id`` at ``start_s``."""

    trace_id: str
    start_s: int
    module_id: str = "m-1"
    stage: str = "load_request"

    def resource_spans(self, scope_key: str = "scopeSpans") -> list[dict[str, Any]]:
        start_ns = self.start_s * 10**9
        span = {
            "traceId": b64(self.trace_id),
            "spanId": b64("b7ad6b7169203331"),
            "name": SPAN_NAMES[self.stage],
            "kind": "SPAN_KIND_INTERNAL",
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(start_ns + 40_000_000),
            "attributes": [
                {"key": "module.id", "value": {"stringValue": self.module_id}},
                {"key": "module.stage", "value": {"stringValue": self.stage}},
            ],
            "status": {},
        }
        scope = {"scope": {"name": "moduletrace"}} if scope_key == "scopeSpans" else {"instrumentationLibrary": {}}
        return [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "canvas"}}]},
                scope_key: [{**scope, "spans": [span]}],
            }
        ]


@dataclass
class FakeTempo:
    """Answers like a Tempo query frontend; ``searches`` records (q, start, end, limit, HTTP status)."""

    traces: list[Stored]
    max_duration: tuple[str, int] = ("168h0m0s", 168 * 3600)  # as Go prints it, and in seconds
    max_limit: int = 256 * 1024
    has_v2: bool = True
    v1_key: str = "batches"  # what /api/traces/{id} names the resource spans
    v2_key: str = "resourceSpans"
    scope_key: str = "scopeSpans"
    lost: set[str] = field(default_factory=set)  # found by search, not by id
    hidden: set[str] = field(default_factory=set)  # v2 404 with no body (data access control)
    reject_modules: set[str] = field(default_factory=set)
    searches: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == "/api/search":
            query = {k: v[0] for k, v in parse_qs(request.url.query.decode(), keep_blank_values=True).items()}
            response = self.search(query["q"], int(query["start"]), int(query["end"]), int(query["limit"]))
            self.searches.append(
                (query["q"], int(query["start"]), int(query["end"]), int(query["limit"]), response.status_code)
            )
            return response
        trace_id = request.url.path.rsplit("/", 1)[-1].zfill(32)
        stored = {t.trace_id: t for t in self.traces if t.trace_id not in self.lost}
        if request.url.path.startswith("/api/v2/traces/"):
            if not self.has_v2:
                return httpx.Response(404, text="404 page not found\n")
            if trace_id in self.hidden:
                return httpx.Response(404)
            if trace_id not in stored:
                return httpx.Response(200, json={"trace": {}, "metrics": {}})
            body = {self.v2_key: stored[trace_id].resource_spans(self.scope_key)}
            return httpx.Response(200, json={"trace": body, "metrics": {"inspectedBytes": "3051"}})
        if request.url.path.startswith("/api/traces/"):
            if trace_id not in stored or trace_id in self.hidden:
                return httpx.Response(404)
            return httpx.Response(200, json={self.v1_key: stored[trace_id].resource_spans(self.scope_key)})
        return httpx.Response(404, text="404 page not found\n")

    def search(self, q: str, start: int, end: int, limit: int) -> httpx.Response:
        go_max, max_s = self.max_duration
        if end - start > max_s:
            return bad_request(f"range specified by start and end exceeds {go_max}. received start={start} end={end}")
        if limit > self.max_limit:
            return bad_request(f"limit {limit} exceeds max limit {self.max_limit}")
        if q == "{ span.module.stage != nil }":
            matching = self.traces
        elif q.startswith("{ span.module.id = "):
            try:
                module_id, after = scan_go_string(q, len("{ span.module.id = "))
            except ValueError as exc:
                return bad_request(f"invalid TraceQL query: parse error at line 1, col 20: {exc}")
            if q[after:] != MODULE_QUERY_TAIL:
                return bad_request(f"invalid TraceQL query: parse error at line 1, col {after + 1}: syntax error")
            if module_id in self.reject_modules:
                return bad_request("invalid TraceQL query: parse error at line 1, col 20: syntax error")
            matching = [t for t in self.traces if t.module_id == module_id and t.stage in CREATION_STAGES]
        else:
            return bad_request("invalid TraceQL query: parse error at line 1, col 1: syntax error")
        found = [t for t in matching if start <= t.start_s < end][:limit]
        return httpx.Response(
            200,
            json={
                "traces": [
                    {
                        "traceID": t.trace_id.lstrip("0"),
                        "rootServiceName": "canvas",
                        "rootTraceName": SPAN_NAMES[t.stage],
                        "startTimeUnixNano": str(t.start_s * 10**9),
                        "durationMs": 40,
                        "spanSets": [{"spans": [{"spanID": "b7ad6b7169203331"}], "matched": 1}],
                    }
                    for t in found
                ],
                "metrics": {"inspectedBytes": "292781", "completedJobs": 1, "totalJobs": 1},
            },
        )


def bad_request(text: str) -> httpx.Response:
    return httpx.Response(400, text=text, headers={"Content-Type": "text/plain; charset=utf-8"})


def source(fake: FakeTempo, start_ns: int, end_ns: int, limit: int = 1000, auth: Auth | None = None) -> TempoSource:
    backend = Backend("http://tempo.test", auth or Auth(), "Tempo", transport=httpx.MockTransport(fake), retries=0)
    return TempoSource(backend, start_ns, end_ns, limit=limit)


def trace_hex(n: int) -> str:
    return f"{n:032x}"


# -- 1. a trace Tempo cannot find -------------------------------------------------------------------


def test_trace_not_found_by_id_makes_the_scan_partial() -> None:
    fake = FakeTempo([Stored(trace_hex(1), NOW_S - 60), Stored(trace_hex(2), NOW_S - 30)], lost={trace_hex(2)})
    tempo = source(fake, (NOW_S - 3600) * 10**9, NOW_S * 10**9)
    spans = list(tempo.spans())
    assert [s.trace_id for s in spans] == [trace_hex(1)]
    assert tempo.partial == [f"trace {trace_hex(2)} found by search but not by id"]


# -- 2. windows longer than max_duration ----------------------------------------------------------


def test_a_seven_day_window_is_searched_in_windows_no_longer_than_168h() -> None:
    # --since 7d: the window's end is rounded up to the second, so it is 168h and a bit.
    start_ns, end_ns = (NOW_S - 7 * DAY) * 10**9 + 123, NOW_S * 10**9 + 123
    fake = FakeTempo([Stored(trace_hex(1), NOW_S - 7 * DAY), Stored(trace_hex(2), NOW_S)])
    tempo = source(fake, start_ns, end_ns)
    assert sorted(s.trace_id for s in tempo.spans()) == [trace_hex(1), trace_hex(2)]
    assert all(status == 200 for *_, status in fake.searches)
    assert all(end - start <= 168 * 3600 for _, start, end, _, _ in fake.searches)
    assert covered(fake.searches) == (NOW_S - 7 * DAY, NOW_S + 1)
    assert tempo.partial == []


def test_a_shorter_max_duration_named_in_tempos_400_is_honoured() -> None:
    fake = FakeTempo([Stored(trace_hex(n), NOW_S - n * DAY + 5) for n in range(1, 4)], max_duration=("24h0m0s", DAY))
    tempo = source(fake, (NOW_S - 3 * DAY) * 10**9, NOW_S * 10**9)
    assert sorted(s.trace_id for s in tempo.spans()) == [trace_hex(n) for n in range(1, 4)]
    assert [status for *_, status in fake.searches].count(400) == 1
    answered = [s for s in fake.searches if s[4] == 200]
    assert all(end - start <= DAY for _, start, end, _, _ in answered)
    assert covered(answered) == (NOW_S - 3 * DAY, NOW_S)


def test_the_creation_lookup_over_the_window_and_its_lookback_fits_max_duration() -> None:
    creation = Stored(trace_hex(7), NOW_S - 8 * DAY, module_id="m-7", stage="db_commit")
    fake = FakeTempo([creation, Stored(trace_hex(8), NOW_S - 10, module_id="m-7", stage="load_request")])
    tempo = source(fake, (NOW_S - 2 * DAY) * 10**9, NOW_S * 10**9)
    since_ns = (NOW_S - 2 * DAY - 7 * DAY) * 10**9  # window start minus --lookback 7d
    assert [s.trace_id for s in tempo.spans_for_modules(["m-7"], since_ns)] == [trace_hex(7)]
    assert all(status == 200 and end - start <= 168 * 3600 for _, start, end, _, status in fake.searches)
    assert covered(fake.searches) == (NOW_S - 9 * DAY, NOW_S)


def test_a_limit_above_tempos_max_result_limit_is_lowered_to_it() -> None:
    fake = FakeTempo([Stored(trace_hex(n), NOW_S - 100 + n) for n in range(1, 6)], max_limit=500)
    tempo = source(fake, (NOW_S - 3600) * 10**9, NOW_S * 10**9, limit=1000)
    assert len({s.trace_id for s in tempo.spans()}) == 5
    assert [(limit, status) for _, _, _, limit, status in fake.searches] == [(1000, 400), (500, 200)]


def test_a_400_tempo_does_not_explain_ends_the_scan_with_its_reason() -> None:
    fake = FakeTempo([], max_duration=("1h0m0s", 0))  # refuses even the window it says it allows
    with pytest.raises(BackendError, match="rejected the search .* exceeds 1h0m0s"):
        list(source(fake, (NOW_S - 60) * 10**9, NOW_S * 10**9).spans())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("168h0m0s", 604800), ("24h0m0s", 86400), ("1h30m0s", 5400), ("1.5s", 1.5), ("500ms", 0.5), ("2m0.5s", 120.5)],
)
def test_go_durations_as_tempo_prints_them_are_read(text: str, seconds: float) -> None:
    assert go_duration_seconds(text) == pytest.approx(seconds)


def covered(searches: list[tuple[str, int, int, int, int]]) -> tuple[int, int]:
    """The window the searches cover, asserting they leave no gap."""
    windows = sorted((start, end) for _, start, end, _, _ in searches)
    reached = windows[0][0]
    for start, end in windows:
        assert start <= reached, f"nothing searched between {reached} and {start}"
        reached = max(reached, end)
    return windows[0][0], reached


# -- 3. module ids as TraceQL strings ------------------------------------------------------------


@pytest.mark.parametrize(
    "module_id",
    ["m\n1", "m\x001", 'm"1', "m\\1", "m'1", 'x\\"\r\n\t"\\', "模块-1\u2028", "m-😀", "m\x7f\x1b[0m", ""],
    ids=["newline", "nul", "quote", "backslash", "apostrophe", "mix", "unicode", "astral", "controls", "empty"],
)
def test_a_module_id_of_any_characters_is_looked_up_with_a_valid_traceql_literal(module_id: str) -> None:
    fake = FakeTempo([Stored(trace_hex(3), NOW_S - 50, module_id=module_id, stage="create_start")])
    tempo = source(fake, (NOW_S - 60) * 10**9, NOW_S * 10**9)
    spans = list(tempo.spans_for_modules([module_id], (NOW_S - 3600) * 10**9))
    assert [(s.trace_id, s.attributes["module.id"]) for s in spans] == [(trace_hex(3), module_id)]
    assert tempo.partial == []


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_every_string_round_trips_through_a_traceql_literal(value: str) -> None:
    literal = traceql_string(value)
    assert scan_go_string(literal, 0) == (value, len(literal))


def test_one_rejected_module_lookup_marks_that_module_partial_and_the_others_are_still_read() -> None:
    fake = FakeTempo(
        [
            Stored(trace_hex(4), NOW_S - 50, module_id="m-bad", stage="db_commit"),
            Stored(trace_hex(5), NOW_S - 40, module_id="m-good", stage="db_commit"),
        ],
        reject_modules={"m-bad"},
    )
    tempo = source(fake, (NOW_S - 60) * 10**9, NOW_S * 10**9)
    spans = list(tempo.spans_for_modules(["m-bad", "\ud800 lone surrogate", "m-good"], (NOW_S - 3600) * 10**9))
    assert [s.attributes["module.id"] for s in spans] == ["m-good"]
    assert len(tempo.partial) == 2
    assert tempo.partial[0].startswith("module 'm-bad': Tempo rejected the creation lookup: HTTP 400: invalid TraceQL")
    assert tempo.partial[1] == "module '\\ud800 lone surrogate': its id cannot be written as a TraceQL string"
    assert all("\n" not in line for line in tempo.partial)


def test_creation_stages_in_the_lookup_are_the_contracts() -> None:
    tempo = source(FakeTempo([]), 0, 10**9)
    assert tempo.module_query("m-1") == '{ span.module.id = "m-1"' + MODULE_QUERY_TAIL


# -- 4. Tempo before 2.6 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v1_key", "scope_key"),
    [("batches", "scopeSpans"), ("batches", "instrumentationLibrarySpans"), ("resourceSpans", "scopeSpans")],
    ids=["tempo-2.x", "tempo-1.x", "resourceSpans"],
)
def test_tempo_before_2_6_is_read_through_api_traces_and_the_choice_is_kept(v1_key: str, scope_key: str) -> None:
    ids = [trace_hex(n) for n in (1, 2, 3)]
    fake = FakeTempo(
        [Stored(t, NOW_S - 50 + n) for n, t in enumerate(ids)], has_v2=False, v1_key=v1_key, scope_key=scope_key
    )
    tempo = source(fake, (NOW_S - 60) * 10**9, NOW_S * 10**9)
    spans = list(tempo.spans())
    assert sorted(s.trace_id for s in spans) == ids
    assert all(s.attributes["module.id"] == "m-1" and s.resource.service_name == "canvas" for s in spans)
    assert tempo.partial == []
    assert sum(p.startswith("/api/v2/") for p in fake.paths) == 1
    assert tempo.trace_url(ids[0]) == f"http://tempo.test/api/traces/{ids[0]}"


def test_a_trace_missing_from_an_old_tempo_is_partial() -> None:
    fake = FakeTempo([Stored(trace_hex(1), NOW_S - 50), Stored(trace_hex(2), NOW_S - 40)], has_v2=False)
    fake.lost = {trace_hex(2)}
    tempo = source(fake, (NOW_S - 60) * 10**9, NOW_S * 10**9)
    assert [s.trace_id for s in tempo.spans()] == [trace_hex(1)]
    assert tempo.partial == [f"trace {trace_hex(2)} found by search but not by id"]


def test_a_trace_hidden_from_the_tenant_is_partial_and_v2_stays_in_use() -> None:
    fake = FakeTempo([Stored(trace_hex(1), NOW_S - 50), Stored(trace_hex(2), NOW_S - 40)], hidden={trace_hex(1)})
    tempo = source(fake, (NOW_S - 60) * 10**9, NOW_S * 10**9)
    assert [s.trace_id for s in tempo.spans()] == [trace_hex(2)]
    assert tempo.partial == [f"trace {trace_hex(1)} found by search but not by id"]
    assert fake.paths[-1] == f"/api/v2/traces/{trace_hex(2)}"
    assert tempo.trace_url(trace_hex(2)).endswith(f"/api/v2/traces/{trace_hex(2)}")


# -- 5. both names of the resource spans, both names of the scope spans ---------------------------


@pytest.mark.parametrize("scope_key", ["scopeSpans", "instrumentationLibrarySpans"])
def test_a_v2_trace_in_the_batches_shape_is_decoded_not_dropped(scope_key: str) -> None:
    fake = FakeTempo([Stored(trace_hex(6), NOW_S - 50)], v2_key="batches", scope_key=scope_key)
    tempo = source(fake, (NOW_S - 60) * 10**9, NOW_S * 10**9)
    (span,) = tempo.spans()
    assert (span.trace_id, span.name, span.attributes["module.id"]) == (trace_hex(6), "module_load_request", "m-1")
    assert tempo.partial == []


# -- error bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [Auth(token="tok-3f9a8b7c6d5e"), Auth(user="reader", password="pa55-w0rd-x")],
    ids=["bearer", "basic"],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_error_body_echoing_the_authorization_header_is_not_repeated(auth: Auth, as_json: bool) -> None:
    sent: list[str] = []

    def echoing_proxy(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Authorization"])
        headers = "; ".join(f"{k.title()}: {v}" for k, v in sorted(request.headers.items()))  # Authorization first
        text = f'GET /api/search (401) Response: "unauthorized" ws: false; {headers};\nline 2'
        return httpx.Response(401, json={"error": {"message": text}}) if as_json else httpx.Response(401, text=text)

    backend = Backend("http://tempo.test", auth, "Tempo", transport=httpx.MockTransport(echoing_proxy), retries=0)
    with pytest.raises(BackendError) as caught:
        list(TempoSource(backend, 0, 10**9).spans())
    message = str(caught.value)
    credential = sent[0].split(" ", 1)[1]
    assert credential not in message and (auth.token or auth.password or "") not in message
    assert "\n" not in message and "answered HTTP 401" in message and "Authorization: ***" in message


# -- through the command, over HTTP ------------------------------------------------------------------


class Served:
    """``fake`` behind a real HTTP server on 127.0.0.1 (tests/support/local_server.py)."""

    def __init__(self, fake: FakeTempo) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                answer = fake(httpx.Request("GET", "http://tempo.test" + self.path, headers=dict(self.headers)))
                self.send_response(answer.status_code)
                for key in ("Content-Type",):
                    if key in answer.headers:
                        self.send_header(key, answer.headers[key])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.local = LocalServer(Handler)
        self.url = self.local.url


def test_races_since_7d_on_a_default_tempo_with_a_lost_trace_exits_3_partial(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = int(time.time())
    fake = FakeTempo(
        [
            Stored(trace_hex(1), now - 6 * DAY, module_id="m-1", stage="load_request"),
            Stored(trace_hex(2), now - 3 * DAY, module_id="m-2", stage="load_request"),
        ],
        lost={trace_hex(2)},
    )
    served = Served(fake)
    try:
        code = main(["races", "--tempo", served.url, "--since", "7d", "--lookback", "7d", "--format", "json"])
    finally:
        served.local.close()
    out, err = capsys.readouterr()
    assert code == 3
    assert f"trace {trace_hex(2)} found by search but not by id" in json.loads(out)["summary"]["partial"]
    assert err.count("\n") == 1 and "the scan is partial" in err
    assert {status for *_, status in fake.searches} == {200}
    assert any(q.startswith('{ span.module.id = "m-1"') for q, *_ in fake.searches)  # the creation lookup ran


def test_a_partial_trace_with_no_spans_left_is_reported_once() -> None:
    def tempo(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/search":
            return httpx.Response(200, json={"traces": [{"traceID": trace_hex(9).lstrip("0")}]})
        return httpx.Response(200, json={"trace": {}, "status": "PARTIAL", "message": "Trace exceeds\nmaximum size"})

    backend = Backend("http://tempo.test", Auth(), "Tempo", transport=httpx.MockTransport(tempo), retries=0)
    tempo_source = TempoSource(backend, 0, 10**9)
    assert list(tempo_source.spans()) == []
    assert tempo_source.partial == [f"trace {trace_hex(9)} is partial: Trace exceeds maximum size"]


def test_a_service_name_traceql_cannot_express_is_bad_usage_not_a_traceback() -> None:
    fake = FakeTempo([])
    backend = Backend("http://tempo.test", Auth(), "Tempo", transport=httpx.MockTransport(fake), retries=0)
    with pytest.raises(InputError, match="--service 'canvas\\\\udcff' cannot be written as a TraceQL string"):
        list(TempoSource(backend, 0, 10**9, service="canvas\udcff").spans())  # an undecodable argv byte
    assert fake.paths == []
