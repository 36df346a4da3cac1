"""Tempo's wire formats, as its API documentation gives them (v3.0.3).

No Tempo runs here: its module is AGPL-licensed and this workplace's registry policy marks it
"not to use", so scripts/peers.sh cannot build it. These tests replay the documented payloads
through an httpx MockTransport; they check our parsing and paging, not Tempo's behaviour.
The real-Tempo end-to-end test is the open part of issue 4.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from moduletrace.sources.http import Auth, Backend
from moduletrace.sources.otlp_json import decode
from moduletrace.sources.tempo import TempoSource
from moduletrace.spans import ResourceCache

TRACE_HEX = "0af7651916cd43dd8448eb211c80319c"
SPAN_HEX = "b7ad6b7169203331"


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def tempo_trace(trace_hex: str = TRACE_HEX, status: str | None = None) -> dict[str, Any]:
    """`GET /api/v2/traces/{id}`: proto3 JSON mapping, base64 ids, enum names."""
    return {
        "trace": {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "canvas"}}]},
                    "scopeSpans": [
                        {
                            "scope": {"name": "moduletrace"},
                            "spans": [
                                {
                                    "traceId": b64(trace_hex),
                                    "spanId": b64(SPAN_HEX),
                                    "name": "module_load_request",
                                    "kind": "SPAN_KIND_INTERNAL",
                                    "startTimeUnixNano": "1689969302000000000",
                                    "endTimeUnixNano": "1689969302500000000",
                                    "attributes": [{"key": "module.id", "value": {"stringValue": "m-1"}}],
                                    "status": {"code": "STATUS_CODE_ERROR", "message": "not found"},
                                }
                            ],
                        }
                    ],
                }
            ]
        },
        **({"status": status, "message": "some blocks unreadable"} if status else {}),
    }


def test_tempo_trace_json_decodes_base64_ids_and_enum_names() -> None:
    (span,) = decode(tempo_trace()["trace"], ResourceCache())
    assert (span.trace_id, span.span_id, span.kind, span.status_code) == (TRACE_HEX, SPAN_HEX, 1, 2)
    assert span.resource.service_name == "canvas" and span.attributes == {"module.id": "m-1"}


def test_v1_batches_envelope_decodes_too() -> None:
    (span,) = decode({"batches": tempo_trace()["trace"]["resourceSpans"]}, ResourceCache())
    assert span.trace_id == TRACE_HEX


class Tempo:
    """Replays documented answers; a search answers ``page`` traces per window until ``total``."""

    def __init__(self, trace_ids: list[str], limit: int) -> None:
        self.trace_ids = trace_ids
        self.limit = limit
        self.searches: list[dict[str, list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/search":
            query = parse_qs(request.url.query.decode())
            self.searches.append(query)
            start, end = int(query["start"][0]), int(query["end"][0])
            # one trace per second from t=1000; Tempo strips leading zeros in search results
            found = [t for n, t in enumerate(self.trace_ids) if start <= 1000 + n < end][: self.limit]
            return httpx.Response(200, json={"traces": [{"traceID": t.lstrip("0")} for t in found], "metrics": {}})
        trace_id = request.url.path.rsplit("/", 1)[-1]
        if trace_id not in self.trace_ids:
            return httpx.Response(404)
        return httpx.Response(200, json=tempo_trace(trace_id, status="PARTIAL" if trace_id.endswith("9") else None))


def source(tempo: Tempo, limit: int, **kwargs: Any) -> TempoSource:
    backend = Backend(
        "http://tempo.test", Auth(tenant="team-a"), "Tempo", transport=httpx.MockTransport(tempo), retries=0
    )
    return TempoSource(backend, 1000 * 10**9, 1010 * 10**9, limit=limit, **kwargs)


def test_a_full_search_page_splits_the_window_until_every_trace_is_found() -> None:
    ids = [f"{n:032x}" for n in range(1, 9)]  # leading zeros everywhere
    tempo = Tempo(ids, limit=3)
    found = sorted({s.trace_id for s in source(tempo, limit=3).spans()})
    assert found == ids
    assert len(tempo.searches) > 1
    assert tempo.searches[0]["q"] == ["{ span.module.stage != nil }"]


def test_the_service_filter_goes_into_the_traceql_query() -> None:
    tempo = Tempo([], limit=3)
    list(source(tempo, limit=3, service='canvas "v2"').spans())
    assert tempo.searches[0]["q"] == ['{ span.module.stage != nil && resource.service.name = "canvas \\"v2\\"" }']


def test_partial_traces_are_reported_never_silently_complete() -> None:
    tempo = Tempo([f"{9:032x}"], limit=3)
    tempo_source = source(tempo, limit=3)
    list(tempo_source.spans())
    assert tempo_source.partial == [f"trace {9:032x} is partial: some blocks unreadable"]


@pytest.mark.parametrize("answer", [httpx.Response(200, text="<html>"), httpx.Response(200, json=[1, 2])])
def test_an_unexpected_answer_is_a_backend_error(answer: httpx.Response) -> None:
    from moduletrace.errors import BackendError

    backend = Backend("http://tempo.test", Auth(), "Tempo", transport=httpx.MockTransport(lambda r: answer), retries=0)
    with pytest.raises(BackendError):
        list(TempoSource(backend, 0, 10**9).spans())


def test_the_tenant_header_is_sent() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Scope-OrgID", ""))
        return httpx.Response(200, json={"traces": []})

    backend = Backend("http://tempo.test", Auth(tenant="team-a"), "Tempo", transport=httpx.MockTransport(handler))
    list(TempoSource(backend, 0, 10**9).spans())
    assert seen == ["team-a"]
