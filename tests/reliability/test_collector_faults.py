"""A collector that is down, killed and restarted: the service keeps running and spans flow again.

With the shipped persistent sending queue, a collector killed with SIGKILL loses none of the spans
it had queued for a backend: they reach Jaeger once both are back.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.peers import Process, binary, start_collector
from tests.support.pipeline import collector_env, shipped_config
from tests.support.processes import ROOT, free_port, python_env, wait_until

pytestmark = pytest.mark.peers

SERVICE = """
import sys, time
import moduletrace
moduletrace.configure(service_name="steady-service", instrument_httpx=False, exit_timeout=5)
deadline = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < deadline:
    with moduletrace.load_request(f"m-{n}"):
        pass
    n += 1
    time.sleep(0.01)
print("calls", n, flush=True)
"""


def archived(path: Path) -> list[dict]:  # type: ignore[type-arg]
    if not path.exists():
        return []
    spans = []
    for line in path.read_text().splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        spans += [s for r in document["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]]
    return spans


def test_a_service_started_before_its_collector_keeps_running_and_its_spans_flow_once_it_is_up(tmp_path: Path) -> None:
    http_port = free_port()
    env = python_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{http_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        }
    )
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE, "8"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(2.5)  # the collector is down: exports fail, calls go on
    collector = start_collector(
        tmp_path, shipped_config(), {**collector_env(tmp_path, None), "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}"}
    )
    try:
        out, err = service.communicate(timeout=60)
    finally:
        collector.process.stop()
    assert service.returncode == 0
    calls = int(out.split()[-1])
    assert calls > 300  # about 8 s of 10 ms calls: the service was not held up by the missing collector
    assert "Failed to export" in err or "Transient error" in err  # the drops are visible in the log
    spans = archived(tmp_path / "archive" / "spans.jsonl")
    ids = sorted(
        int(a["value"]["stringValue"].split("-")[1])
        for s in spans
        for a in s.get("attributes", [])
        if a["key"] == "module.id"
    )
    assert ids and ids[-1] >= calls - 5  # spans flow again after the collector came up (early ones may be lost)


def test_spans_queued_for_a_backend_survive_a_sigkilled_collector(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(5)]
    jaeger_env = {
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{ports[0]}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports[1]}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{ports[2]}",
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports[3]}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports[4]}",
    }
    env = {**collector_env(tmp_path, None), "JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{ports[3]}"}
    collector = start_collector(tmp_path, shipped_config(), env)
    emit = (
        "import moduletrace\n"
        "moduletrace.configure(service_name='queued-service', instrument_httpx=False)\n"
        "for n in range(40):\n"
        "    with moduletrace.create_start(f'q-{n}'):\n"
        "        with moduletrace.db_commit(f'q-{n}'):\n"
        "            pass\n"
        "moduletrace.shutdown(10)\n"
    )
    subprocess.run(
        [sys.executable, "-c", emit],
        env=python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http}),
        check=True,
        timeout=60,
    )
    assert wait_until(lambda: len(archived(tmp_path / "archive" / "spans.jsonl")) == 80, timeout=30)
    time.sleep(3)  # past the tail-sampling decision (1 s): the spans now sit in the exporter's disk queue
    collector.process.stop(signal.SIGKILL)

    restarted = start_collector(tmp_path, shipped_config(), env)
    jaeger = Process(
        [binary("jaeger"), "--config", str(ROOT / "collector" / "jaeger.yaml")],
        tmp_path / "jaeger.log",
        f"http://127.0.0.1:{ports[2]}/status",
        env={**python_env(), **jaeger_env},
    )
    try:

        def delivered() -> int:
            response = httpx.get(
                f"http://127.0.0.1:{ports[0]}/api/traces", params={"service": "queued-service", "limit": 100}
            )
            return len(response.json().get("data") or []) if response.status_code == 200 else 0

        assert wait_until(lambda: delivered() == 40, timeout=90, interval=1), delivered()
    finally:
        restarted.process.stop()
        jaeger.stop()
