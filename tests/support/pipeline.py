"""The whole path, for real: two instrumented services -> our collector (shipped config) -> Jaeger + archive."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.peers import Collector, Jaeger, start_collector, start_jaeger
from tests.support.processes import ROOT, free_port, python_env, start_python, stop, wait_until

RACING = ["race-1", "race-2", "race-3"]
CLEAN = ["ok-1", "ok-2", "ok-3"]


@dataclass
class Pipeline:
    jaeger: Jaeger
    collector: Collector
    archive: Path
    directory: Path


def collector_env(directory: Path, jaeger: Jaeger | None) -> dict[str, int | str]:
    return {
        "JAEGER_OTLP_ENDPOINT": jaeger.otlp_grpc if jaeger else f"127.0.0.1:{free_port()}",
        # No Tempo runs here (see README): its exporter points at a closed port and just retries.
        "TEMPO_OTLP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "COLLECTOR_METRICS_PORT": free_port(),
        "MODULETRACE_ARCHIVE": str(directory / "archive" / "spans.jsonl"),
        "COLLECTOR_QUEUE_DIR": str(directory / "queue"),
        "TAIL_DECISION_WAIT": "1s",
        "BATCH_TIMEOUT": "50ms",
        "ARCHIVE_FLUSH_INTERVAL": "100ms",
        "BASELINE_SAMPLING_PERCENT": "0",
    }


def shipped_config() -> str:
    return (ROOT / "collector" / "otelcol.yaml").read_text()


def scraping_collector(directory: Path, spans: Path, metrics: Path, targets: Mapping[str, str]) -> Collector:
    """Our collector on the shipped config plus the scrape files whose targets ``targets`` gives (by
    their variables, as collector/otelcol.sh), scraping every second into ``metrics``, spans into ``spans``."""
    env: dict[str, int | str] = {
        **targets,
        "METRICS_SCRAPE_INTERVAL": "1s",
        "MODULETRACE_ARCHIVE": str(spans),
        "MODULETRACE_METRICS_ARCHIVE": str(metrics),
        "COLLECTOR_METRICS_PORT": free_port(),
        "BATCH_TIMEOUT": "50ms",
        "ARCHIVE_FLUSH_INTERVAL": "100ms",
    }
    return start_collector(directory, shipped_config(), env)


def run_service(module: str, env: Mapping[str, str]) -> dict[str, Any]:
    """``python -m module`` to its end (it must exit 0); the JSON object its last line printed."""
    done = subprocess.run(
        [sys.executable, "-m", module], env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def diagnose_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """``moduletrace diagnose ARGV --format json``: its exit status and document (never a traceback)."""
    from moduletrace.cli.main import main

    code = main(["diagnose", *argv, "--format", "json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, json.loads(out)  # type: ignore[no-any-return]


def run_pipeline(directory: Path) -> Iterator[Pipeline]:
    jaeger = start_jaeger(directory)
    collector = None
    try:
        collector = start_collector(directory, shipped_config(), collector_env(directory, jaeger))
        env = python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http, "OTEL_BSP_SCHEDULE_DELAY": "100"})
        db = str(directory / "modules.db")
        load_port, create_port = free_port(), free_port()
        services = [start_python(["-m", "tests.support.lifecycle_service", "load", str(load_port), db], env)]
        services.append(
            start_python(
                [
                    "-m",
                    "tests.support.lifecycle_service",
                    "create",
                    str(create_port),
                    db,
                    f"http://127.0.0.1:{load_port}",
                ],
                env,
            )
        )
        try:
            for module_id in RACING + CLEAN:
                httpx.post(f"http://127.0.0.1:{create_port}/modules/{module_id}", timeout=10).raise_for_status()
            httpx.get(f"http://127.0.0.1:{load_port}/modules/ok-1", timeout=10).raise_for_status()
        finally:
            for service in services:
                stop(service)
        archive = directory / "archive" / "spans.jsonl"
        expected_spans = len(RACING + CLEAN) * 5 + 2  # 5 lifecycle spans per module, one more load

        def archived() -> bool:
            if not archive.exists():
                return False
            lines = [json.loads(line) for line in archive.read_text().splitlines() if line.strip()]
            names = [
                s["name"] for d in lines for r in d["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]
            ]
            return sum(n.startswith("module_") for n in names) >= expected_spans

        assert wait_until(archived, timeout=30), "the archive never received every lifecycle span"

        def in_jaeger() -> bool:
            response = httpx.get(f"{jaeger.query_url}/api/traces", params={"service": "load-service", "limit": 100})
            return len(response.json().get("data") or []) >= len(RACING + CLEAN)  # loads continue creation traces

        assert wait_until(in_jaeger, timeout=30), "Jaeger never received the load traces"
        yield Pipeline(jaeger, collector, archive, directory)
    finally:
        if collector is not None:
            collector.process.stop()
        jaeger.process.stop()
