"""The demo, sent through the real collector (shipped config, Jaeger only) to the real Jaeger with its UI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from moduletrace.conventions import LIFECYCLE_SPAN_NAMES
from tests.support.peers import Collector, Jaeger, start_collector, start_jaeger
from tests.support.pipeline import collector_env, shipped_config
from tests.support.processes import python_env, wait_until

SEED = 5


@dataclass
class Demo:
    jaeger: Jaeger
    collector: Collector
    injected: dict[str, str]  # module id -> "race" | "auth"
    modules: list[str]
    failed_commit: str  # a module whose commit failed (the demo has none)
    commit_error_type: str
    directory: Path


def _fail_one_commit(endpoint: str, module_id: str) -> None:
    emit = (
        "import moduletrace\n"
        "moduletrace.configure(service_name='module-service', instrument_httpx=False)\n"
        f"with moduletrace.create_start({module_id!r}):\n"
        "    try:\n"
        f"        with moduletrace.db_commit({module_id!r}):\n"
        "            raise ConnectionResetError('the database went away')\n"
        "    except ConnectionResetError:\n"
        "        pass\n"
        "moduletrace.shutdown(10)\n"
    )
    subprocess.run([sys.executable, "-c", emit], env=python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}), check=True)


@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    from moduletrace.demo.runner import DemoOptions, run

    directory = Path(tmp_path_factory.mktemp("viewing"))
    jaeger = start_jaeger(directory, ui=True)
    collector = None
    try:
        env = {**collector_env(directory, jaeger)}
        del env["TEMPO_OTLP_ENDPOINT"]  # no Tempo here: its exporter is simply not configured
        collector = start_collector(directory, shipped_config(), env)
        result = run(
            DemoOptions(
                seed=SEED,
                modules=20,
                concurrency=4,
                race_rate=0.1,
                auth_rate=0.1,
                pool_rate=0.0,
                otlp=collector.otlp_http,
                directory=str(directory / "demo"),
            )
        )
        assert result.matches
        failed_commit = f"mod-{SEED}-bad-commit"
        _fail_one_commit(collector.otlp_http, failed_commit)
        modules = sorted(result.statuses)

        def every_module_in_jaeger() -> bool:
            response = httpx.get(
                f"{jaeger.query_url}/api/traces",
                params={"service": "module-service", "operation": "module_create_start", "limit": 100},
            )
            names = {s["operationName"] for t in response.json().get("data") or [] for s in t["spans"]}
            return len(response.json().get("data") or []) == len(modules) + 1 and LIFECYCLE_SPAN_NAMES <= names

        assert wait_until(every_module_in_jaeger, timeout=30), "Jaeger never received every module's trace"
        yield Demo(
            jaeger,
            collector,
            result.injected,
            modules,
            failed_commit,
            "ConnectionResetError",
            directory,
        )
    finally:
        if collector is not None:
            collector.process.stop()
        jaeger.process.stop()


def races_report(demo: Demo) -> dict:  # type: ignore[type-arg]
    result = subprocess.run(
        [sys.executable, "-m", "moduletrace.cli.main", "races", "--format", "json"]
        + ["--jaeger", demo.jaeger.query_url, "--since", "15m", "--service", "canvas-service"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    report: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return report
