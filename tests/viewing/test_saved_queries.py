"""Every Jaeger search the README and the Grafana dashboard list, run against the real Jaeger.

The dashboard's Jaeger panels are run as Grafana runs them (its variables at their defaults, the
logfmt tags turned into Jaeger's `tags` JSON), and each must return exactly what its title claims
on the demo's data (two injected faults, one failed commit).
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import httpx
import pytest

from moduletrace.conventions import LIFECYCLE_SPAN_NAMES
from tests.support.processes import ROOT
from tests.viewing.conftest import Demo

pytestmark = pytest.mark.peers
DASHBOARD = json.loads((ROOT / "collector" / "grafana" / "moduletrace.json").read_text())
VARIABLES = {v["name"]: v["current"]["value"] for v in DASHBOARD["templating"]["list"]}
PANELS = {p["title"]: p["targets"][0] for p in DASHBOARD["panels"] if p.get("datasource", {}).get("type") == "jaeger"}


def search(demo: Demo, service: str, operation: str | None = None, tags: str | None = None) -> list[dict[str, Any]]:
    """Jaeger's search (what its UI and Grafana's Jaeger data source call): the traces found."""
    params = {"service": service, "limit": "100"}
    if operation:
        params["operation"] = operation
    if tags:
        params["tags"] = json.dumps(dict(pair.split("=", 1) for pair in shlex.split(tags)))  # logfmt, as Grafana
    response = httpx.get(f"{demo.jaeger.query_url}/api/traces", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["data"] or [])


def run_panel(demo: Demo, title: str, **variables: str) -> list[dict[str, Any]]:
    target = PANELS[title]
    values = {**VARIABLES, **variables}

    def fill(text: str | None) -> str | None:
        return re.sub(r"\$([a-z_]+)", lambda m: values[m.group(1)], text) if text else text

    return search(demo, fill(target["service"]) or "", fill(target.get("operation")), fill(target.get("tags")))


def modules_of(traces: list[dict[str, Any]], operation: str) -> list[str]:
    """The module.id of each trace's ``operation`` spans that match (one per trace, sorted)."""
    out: list[str] = []
    for trace in traces:
        ids = {
            t["value"]
            for s in trace["spans"]
            if s["operationName"] == operation
            for t in s["tags"]
            if t["key"] == "module.id"
        }
        assert len(ids) == 1, ids
        out += ids
    return sorted(out)


def injected(demo: Demo, fault: str) -> list[str]:
    return sorted(m for m, f in demo.injected.items() if f == fault)


def test_the_dashboard_lists_a_jaeger_search_for_each_saved_query() -> None:
    assert set(PANELS) == {
        "Lifecycle traces (Jaeger)",
        "Failed loads (Jaeger)",
        "Failed commits (Jaeger)",
        "One module (Jaeger)",
    }


def test_lifecycle_traces_are_one_trace_per_created_module(demo: Demo) -> None:
    traces = run_panel(demo, "Lifecycle traces (Jaeger)")
    assert modules_of(traces, "module_create_start") == sorted([*demo.modules, demo.failed_commit])


def test_failed_loads_by_error_type_are_exactly_the_loads_that_failed_that_way(demo: Demo) -> None:
    assert modules_of(run_panel(demo, "Failed loads (Jaeger)"), "module_load_request") == injected(demo, "race")
    expired = run_panel(demo, "Failed loads (Jaeger)", load_error_type="moduletrace.demo.tokens.TokenExpired")
    assert modules_of(expired, "module_load_request") == injected(demo, "auth")


def test_error_true_finds_no_failed_load_on_this_jaeger(demo: Demo) -> None:
    # Why the saved query searches error.type: Jaeger 2.13's memory store compares `error` as a
    # boolean but receives the tag as the string "true", so it keeps only status-OK spans
    # (internal/storage/v2/memory/tenant.go, validSpan). Lifecycle spans end ERROR or UNSET, never OK.
    found = search(demo, "canvas-service", "module_load_request", "error=true")
    failed = [
        s for t in found for s in t["spans"] if any(x["key"] == "error" and x["value"] is True for x in s["tags"])
    ]
    assert failed == []


def test_failed_commits_are_the_creations_whose_commit_failed(demo: Demo) -> None:
    traces = run_panel(demo, "Failed commits (Jaeger)")
    assert modules_of(traces, "module_create_db_commit") == [demo.failed_commit]


def test_one_module_is_one_trace_with_its_five_lifecycle_spans(demo: Demo) -> None:
    module = injected(demo, "race")[0]
    traces = run_panel(demo, "One module (Jaeger)", module_id=module)
    assert len(traces) == 1
    assert {s["operationName"] for s in traces[0]["spans"]} == LIFECYCLE_SPAN_NAMES
    # The loading service finds the same trace by the same tag (the README's search).
    assert [t["traceID"] for t in search(demo, "canvas-service", tags=f"module.id={module}")] == [traces[0]["traceID"]]
