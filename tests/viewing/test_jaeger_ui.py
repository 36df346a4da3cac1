"""The demo's races, seen in Jaeger's own UI in a real browser: the page a race's trace_url opens and
the search by module.id. Screenshots stay in the test's tmp dir (their paths are printed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from moduletrace.conventions import LIFECYCLE_SPAN_NAMES
from tests.viewing.browser import open_page
from tests.viewing.conftest import Demo, races_report

pytestmark = pytest.mark.peers


def test_a_race_opened_from_its_trace_url_shows_the_five_lifecycle_spans(demo: Demo, tmp_path: Path) -> None:
    report = races_report(demo)
    assert sorted(r["module_id"] for r in report["races"]) == sorted(m for m, f in demo.injected.items() if f == "race")
    race = report["races"][0]
    assert race["trace_url"] == f"{demo.jaeger.query_url}/trace/{race['trace_id']}"
    page = open_page(race["trace_url"], tmp_path / "race-trace.png")
    for name in LIFECYCLE_SPAN_NAMES:
        assert name in page.dom, (name, page.screenshot)
    assert "module-service" in page.dom and "canvas-service" in page.dom
    assert race["trace_id"][:7] in page.dom  # the header names the trace by its short id
    assert "ui assets not embedded" not in page.dom  # the real UI, not Jaeger's placeholder page


def test_a_module_id_search_in_the_ui_lists_that_module_s_one_trace(demo: Demo, tmp_path: Path) -> None:
    race = races_report(demo)["races"][0]
    query = {
        "service": "canvas-service",
        "tags": json.dumps({"module.id": race["module_id"]}),
        "lookback": "1h",
        "limit": "20",
    }
    page = open_page(f"{demo.jaeger.query_url}/search?{urlencode(query)}", tmp_path / "module-search.png")
    linked = set(re.findall(r'href="/trace/([0-9a-f]+)', page.dom))
    assert linked == {race["trace_id"]}, (linked, page.screenshot)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.dom))
    assert "1 Trace " in text
    # Jaeger titles a trace by its root span: the creation, in the creating service.
    titles = re.findall(r'<h3 class="ResultItemTitle--title">(.*?)</h3>', page.dom)
    assert [re.sub(r"<[^>]+>", "", t).startswith("module-service: module_create_start") for t in titles] == [True]


def test_jaeger_warns_of_clock_skew_exactly_where_its_adjuster_says(demo: Demo) -> None:
    """The UI's "clock skew adjustment disabled; not applying calculated delta" warnings, explained.

    Jaeger's query service (cmd/query/app/querysvc/internal/adjuster/clockskew.go, the /api/traces
    path the UI reads) compares every span with its parent unless both carry the same `ip` process
    tag, which OpenTelemetry SDKs never set. A child shorter than its parent that does not lie
    inside it gets a delta; with max_clock_skew_adjust 0 (the default) the delta becomes this
    warning. A load that continues the creation's trace as a child starts after the creation ended.
    """
    response = httpx.get(
        f"{demo.jaeger.query_url}/api/traces",
        params={"service": "module-service", "operation": "module_create_start", "limit": 100},
    )
    warned, expected = set(), set()
    for trace in response.json()["data"]:
        spans = {s["spanID"]: s for s in trace["spans"]}
        for span in trace["spans"]:
            key = (trace["traceID"], span["operationName"], span["spanID"])
            if any("clock skew adjustment disabled" in w for w in span.get("warnings") or []):
                warned.add(key)
            parents = [
                spans[r["spanID"]] for r in span["references"] if r["refType"] == "CHILD_OF" and r["spanID"] in spans
            ]
            if parents:
                parent = parents[0]
                inside = span["startTime"] >= parent["startTime"] and (
                    span["startTime"] + span["duration"] <= parent["startTime"] + parent["duration"]
                )
                if span["duration"] <= parent["duration"] and not inside:
                    expected.add(key)
    assert warned == expected
    # Today that is every load (and every lagging cache update) continued from the creation's carrier.
    assert {op for _, op, _ in warned} <= {"module_load_request", "module_create_cache_update"}
