"""The Jaeger source against a real Jaeger v2: empty answers, and creations found by module id."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.peers import Jaeger, start_jaeger
from tests.support.processes import python_env, wait_until

pytestmark = pytest.mark.peers

# Creations that began two hours ago and whose (write-behind) commit begins five minutes from now
# (explicit timestamps), and loads now, reading before it: one linked to its creation (link mode),
# one with no context at all (module.id only).
EMIT = """
import sys, time
import moduletrace
from opentelemetry import trace
from opentelemetry.trace import Link
moduletrace.configure(service_name=sys.argv[1], instrument_httpx=False)
tracer = trace.get_tracer("backfill")
now = time.time_ns()
old = now - 2 * 3600 * 10**9
links = {}
for module_id in ("linked-1", "lost-1"):
    attrs = {"module.id": module_id}
    create = tracer.start_span("module_create_start", attributes={**attrs, "module.stage": "create_start"},
                               start_time=old)
    ctx = trace.set_span_in_context(create)
    commit = tracer.start_span("module_create_db_commit", context=ctx,
                               attributes={**attrs, "module.stage": "db_commit"}, start_time=now + 300 * 10**9)
    commit.end(end_time=now + 600 * 10**9)
    create.end(end_time=now + 601 * 10**9)
    links[module_id] = create.get_span_context()
with moduletrace.load_request("linked-1", parent=links["linked-1"], as_link=True):
    with moduletrace.load_db_query("linked-1"):
        pass
with moduletrace.load_request("lost-1"):
    with moduletrace.load_db_query("lost-1"):
        pass
moduletrace.shutdown(10)
"""


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    server = start_jaeger(Path(tmp_path_factory.mktemp("jaeger")))
    yield server
    server.process.stop()


def races(*args: str) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, "-m", "moduletrace.cli.main", "races", "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, json.loads(result.stdout) if result.stdout else {}, result.stderr


def test_an_empty_jaeger_is_nothing_judged_not_no_race(jaeger: Jaeger) -> None:
    code, report, err = races("--jaeger", jaeger.query_url, "--since", "1h")
    assert code == 3 and report == {}
    assert err.count("\n") == 1 and f"no lifecycle span found in Jaeger at {jaeger.query_url}" in err


def test_creations_outside_the_window_are_found_by_module_id(jaeger: Jaeger) -> None:
    env = python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http, "OTEL_BSP_SCHEDULE_DELAY": "50"})
    subprocess.run([sys.executable, "-c", EMIT, "backfill-service"], env=env, check=True, timeout=60)

    def loads_visible() -> bool:
        response = httpx.get(
            f"{jaeger.query_url}/api/traces",
            params={"service": "backfill-service", "limit": 10, "start": (time.time_ns() - 3 * 3600 * 10**9) // 1000},
        )
        return len(response.json().get("data") or []) >= 4

    assert wait_until(loads_visible, timeout=30)
    code, report, err = races("--jaeger", jaeger.query_url, "--since", "30m")
    assert code == 1, err
    assert report["summary"]["loads"] == 2 and report["summary"]["unmatched"] == 0
    matched = {r["module_id"]: (r["matched_by"], r["same_trace"]) for r in report["races"]}
    assert matched == {"linked-1": ("link", False), "lost-1": ("module.id", False)}
    for race in report["races"]:  # the creation's own trace is a link away too
        assert race["creation_trace_url"] == f"{jaeger.query_url}/trace/{race['creation_trace_id']}"
        assert race["creation_trace_id"] != race["trace_id"]
    # Without the second lookup (lookback shorter than the creations' age) they stay unmatched.
    _, narrow, _ = races("--jaeger", jaeger.query_url, "--since", "30m", "--lookback", "1m")
    assert sorted(u["module_id"] for u in narrow["unmatched"]) == ["linked-1", "lost-1"]
