"""The two-tier layout: a front tier routes by trace id, so a late load reaches its trace's sampler."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.support.peers import start_collector, start_jaeger
from tests.support.pipeline import collector_env, shipped_config
from tests.support.processes import ROOT, python_env, wait_until

pytestmark = pytest.mark.peers

EMIT = """
import json, sys
import moduletrace
moduletrace.configure(service_name=sys.argv[1], instrument_httpx=False)
carriers_file, step = sys.argv[2], sys.argv[3]
if step == "create":
    carriers = {}
    for n in range(20):
        module_id = f"tier-{n}"
        with moduletrace.create_start(module_id):
            with moduletrace.db_commit(module_id):
                pass
            with moduletrace.cache_update(module_id):
                pass
            carriers[module_id] = moduletrace.carrier()
    json.dump(carriers, open(carriers_file, "w"))
else:
    for module_id, carrier in json.load(open(carriers_file)).items():
        with moduletrace.load_request(module_id, parent=carrier):
            with moduletrace.load_db_query(module_id):
                pass
moduletrace.shutdown(10)
"""


def archived_spans(path: Path) -> list[dict]:  # type: ignore[type-arg]
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [s for d in lines for rs in d["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def test_late_loads_reach_the_sampler_holding_their_trace_and_every_lifecycle_span_is_kept(tmp_path: Path) -> None:
    jaeger = start_jaeger(tmp_path)
    started = []
    try:
        samplers = []
        for name in ("sampler-1", "sampler-2"):
            directory = tmp_path / name
            directory.mkdir()
            samplers.append(start_collector(directory, shipped_config(), collector_env(directory, jaeger)))
        started += samplers
        front_dir = tmp_path / "front"
        front_dir.mkdir()
        hosts = "[" + ", ".join(s.otlp_grpc for s in samplers) + "]"
        front = start_collector(
            front_dir,
            (ROOT / "collector" / "otelcol-two-tier.yaml").read_text(),
            {
                "SAMPLING_TIER_HOSTS": hosts,
                "COLLECTOR_METRICS_PORT": collector_env(front_dir, None)["COLLECTOR_METRICS_PORT"],
            },
        )
        started.append(front)
        env = python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": front.otlp_http})
        carriers = tmp_path / "carriers.json"
        subprocess.run(
            [sys.executable, "-c", EMIT, "module-service", str(carriers), "create"], env=env, check=True, timeout=60
        )
        time.sleep(3)  # past the samplers' decision wait (1 s): the loads arrive late
        subprocess.run(
            [sys.executable, "-c", EMIT, "canvas-service", str(carriers), "load"], env=env, check=True, timeout=60
        )
        archives = [tmp_path / name / "archive" / "spans.jsonl" for name in ("sampler-1", "sampler-2")]
        assert wait_until(lambda: sum(len(archived_spans(a)) for a in archives) == 100, timeout=30)

        # Every trace lives on exactly one sampler, and both samplers got some.
        where: dict[str, set[int]] = defaultdict(set)
        for n, archive in enumerate(archives):
            for span in archived_spans(archive):
                where[span["traceId"]].add(n)
        assert len(where) == 20 and all(len(owners) == 1 for owners in where.values())
        assert {next(iter(owners)) for owners in where.values()} == {0, 1}

        # Jaeger has every trace whole: the late load spans were sampled with their creation.
        def whole() -> bool:
            for trace_id in where:
                response = httpx.get(f"{jaeger.query_url}/api/traces/{trace_id}")
                if response.status_code != 200 or len(response.json()["data"][0]["spans"]) != 5:
                    return False
            return True

        assert wait_until(whole, timeout=30)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "moduletrace.cli.main",
                "races",
                "--format",
                "json",
                "--file",
                str(archives[0]),
                "--file",
                str(archives[1]),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["summary"]["loads"] == 20
    finally:
        for collector in reversed(started):
            collector.process.stop()
        jaeger.process.stop()
