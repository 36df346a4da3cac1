"""The shipped sampling never loses a lifecycle span, however late, and still samples the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.peers import start_collector, start_jaeger
from tests.support.pipeline import collector_env, shipped_config
from tests.support.processes import python_env, wait_until

pytestmark = pytest.mark.peers

EMIT = """
import json, sys
import moduletrace
from opentelemetry import trace
moduletrace.configure(service_name="late-test", instrument_httpx=False)
app = trace.get_tracer("app")
step, carrier_file = sys.argv[1], sys.argv[2]
if step == "create":
    with moduletrace.create_start("late-1"):
        with moduletrace.db_commit("late-1"):
            pass
        open(carrier_file, "w").write(json.dumps(moduletrace.carrier()))
    with app.start_as_current_span("GET /health"):  # unrelated: not a lifecycle trace
        pass
else:
    with moduletrace.load_request("late-1", parent=json.load(open(carrier_file))):
        with app.start_as_current_span("SELECT modules"):  # no module.stage: kept by the decision cache
            pass
moduletrace.shutdown(10)
print("ready", flush=True)
"""


def test_a_load_arriving_long_after_the_decision_is_kept_with_its_trace(tmp_path: Path) -> None:
    jaeger = start_jaeger(tmp_path)
    collector = start_collector(tmp_path, shipped_config(), collector_env(tmp_path, jaeger))
    try:
        script, carrier_file = tmp_path / "emit.py", tmp_path / "carrier.json"
        script.write_text(EMIT)
        env = python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http})
        subprocess.run([sys.executable, str(script), "create", str(carrier_file)], env=env, check=True, timeout=60)
        trace_id = json.loads(carrier_file.read_text())["traceparent"].split("-")[1]

        def names() -> list[str]:
            response = httpx.get(f"{jaeger.query_url}/api/traces/{trace_id}")
            if response.status_code != 200:
                return []
            return sorted(s["operationName"] for t in response.json().get("data") or [] for s in t["spans"])

        assert wait_until(lambda: names() == ["module_create_db_commit", "module_create_start"], timeout=30), names()
        time.sleep(3)  # well past TAIL_DECISION_WAIT=1s: the creation's decision is long made
        subprocess.run([sys.executable, str(script), "load", str(carrier_file)], env=env, check=True, timeout=60)
        expected = ["SELECT modules", "module_create_db_commit", "module_create_start", "module_load_request"]
        assert wait_until(lambda: names() == expected, timeout=30), names()
        # The unrelated trace was sampled out of the backends (BASELINE_SAMPLING_PERCENT=0)...
        health = httpx.get(
            f"{jaeger.query_url}/api/traces", params={"service": "late-test", "operation": "GET /health"}
        )
        assert health.json().get("data") == []
        # ...but the archive keeps everything, unsampled.
        archive = tmp_path / "archive" / "spans.jsonl"
        assert wait_until(lambda: archive.exists() and "GET /health" in archive.read_text(), timeout=30)
    finally:
        collector.process.stop()
        jaeger.process.stop()
