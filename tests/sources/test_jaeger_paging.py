"""The Jaeger source pages a busy window by halving it: every trace is read, not the first page only.

Jaeger's api_v3 has no pagination; a search returns at most ``query.num_traces`` traces. This fake
answers like Jaeger v2 does (the newest traces first, at most that many, 404 when none) so the
test can choose a window holding far more traces than one answer. The real Jaeger is covered by
the peers tests; the fake is here to make a page limit of 5 against 60 traces cheap and exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from moduletrace.demo.services import JsonHandler
from moduletrace.scan import ScanOptions, races
from tests.support.local_server import LocalServer

T0 = 1_795_000_000_000_000_000
MODULES = 60


def _span(trace: str, span_id: str, name: str, stage: str, module: str, start: int, end: int, parent: str = "") -> dict:
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [
            {"key": "module.id", "value": {"stringValue": module}},
            {"key": "module.stage", "value": {"stringValue": stage}},
        ],
        "status": {},
    }


def _traces(spacing_ns: int = 10**9) -> list[tuple[int, dict[str, Any]]]:
    """One trace a module, ``spacing_ns`` apart: a creation, then a load that read before the commit began."""
    out = []
    for n in range(MODULES):
        base = T0 + n * spacing_ns
        trace = f"{n + 1:032x}"
        spans = [
            _span(trace, f"{n:014x}a1", "module_create_start", "create_start", f"m-{n}", base, base + 50_000_000),
            _span(
                trace,
                f"{n:014x}a2",
                "module_create_db_commit",
                "db_commit",
                f"m-{n}",
                base + 20_000_000,
                base + 30_000_000,
                f"{n:014x}a1",
            ),
            _span(
                trace,
                f"{n:014x}b1",
                "module_load_request",
                "load_request",
                f"m-{n}",
                base + 1_000_000,
                base + 5_000_000,
            ),
            _span(
                trace,
                f"{n:014x}b2",
                "module_load_db_query",
                "load_db_query",
                f"m-{n}",
                base + 2_000_000,
                base + 3_000_000,
                f"{n:014x}b1",
            ),
        ]
        resource = {
            "attributes": [
                {"key": "service.name", "value": {"stringValue": "svc"}},
                {"key": "host.name", "value": {"stringValue": "h1"}},
            ]
        }
        out.append((base, {"resource": resource, "scopeSpans": [{"scope": {}, "spans": spans}]}))
    return out


def _ns(text: str) -> int:
    import datetime as dt

    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.timezone.utc).timestamp()
    return int(seconds) * 10**9 + int((fraction or "0").ljust(9, "0")[:9])


class FakeJaeger(JsonHandler):
    requests: list[dict[str, str]] = []
    traces = _traces()

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/v3/services":
            self.reply(200, {"services": ["svc"]})
        elif url.path == "/api/v3/operations":
            names = ["module_create_start", "module_create_db_commit", "module_load_request", "module_load_db_query"]
            self.reply(200, {"operations": [{"name": n} for n in names]})
        elif url.path == "/api/v3/traces":
            FakeJaeger.requests.append(query)
            low, high = _ns(query["query.start_time_min"]), _ns(query["query.start_time_max"])
            found = [t for start, t in self.traces if low <= start <= high]
            found = sorted(found, key=lambda t: t["scopeSpans"][0]["spans"][0]["startTimeUnixNano"], reverse=True)
            found = found[: int(query["query.num_traces"])]
            if found:
                self.reply(200, {"result": {"resourceSpans": found}})
            else:
                self.reply(404, {"error": {"httpCode": 404, "message": "No traces found"}})
        else:
            self.reply(404, {})


@pytest.fixture
def jaeger() -> Iterator[str]:
    FakeJaeger.requests = []
    server = LocalServer(FakeJaeger)
    yield server.url
    server.close()


def test_a_window_with_more_traces_than_a_page_is_halved_until_every_trace_is_read(jaeger: str) -> None:
    options = ScanOptions(jaeger=jaeger, start_ns=T0 - 10**9, end_ns=T0 + MODULES * 10**9, limit=5, service="svc")
    report, scan = races(options)
    assert report.loads == MODULES and len(report.races) == MODULES and scan.partial == []
    assert len(FakeJaeger.requests) > 4 * (MODULES // 5)  # per operation, more than one page's worth of searches


def test_a_window_that_cannot_be_split_further_is_reported_partial(jaeger: str) -> None:
    # Every trace in one instant: halving cannot separate them, so the scan says it is partial.
    FakeJaeger.traces = _traces(spacing_ns=0)
    try:
        options = ScanOptions(jaeger=jaeger, start_ns=T0 - 10**6, end_ns=T0 + 10**7, limit=5, service="svc")
        report, scan = races(options)
        assert scan.partial and "more than 5 traces" in scan.partial[0]
        assert report.loads == 5  # what one page held: a partial answer, said to be partial
    finally:
        FakeJaeger.traces = _traces()
