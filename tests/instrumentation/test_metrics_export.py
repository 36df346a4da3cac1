"""Pool metrics for real: a PostgreSQL pool exhausted in a service, through our collector to its archive.

The service (a subprocess) configures moduletrace from the environment, holds the only connection
of a SQLAlchemy pool (pool_size=1, max_overflow=0) on a real PostgreSQL, times out on a second
checkout, flushes while the pool is exhausted, releases it, reads once more and exits. The
periodic export is set to ten minutes: the last metrics reach the collector only through the
flush at exit. The collector's file exporter writes them as OTLP JSON lines, read back here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from moduletrace import conventions as c
from tests.support.peers import Collector, start_collector
from tests.support.postgres import PostgresServer
from tests.support.processes import python_env, start_python, stop, wait_until

pytestmark = pytest.mark.peers

CONFIG = """
receivers:
  otlp:
    protocols:
      http: {endpoint: "${env:OTLP_HTTP_ENDPOINT}"}
exporters:
  file/spans: {path: ./spans.jsonl, flush_interval: 100ms}
  file/metrics: {path: ./metrics.jsonl, flush_interval: 100ms}
extensions:
  health_check: {endpoint: "${env:HEALTH_ENDPOINT}"}
service:
  extensions: [health_check]
  telemetry: {metrics: {level: none}}
  pipelines:
    traces: {receivers: [otlp], exporters: [file/spans]}
    metrics: {receivers: [otlp], exporters: [file/metrics]}
"""

POOL_TIMEOUT_S = 0.3

SERVICE = f"""
import asyncio, os, time
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
import moduletrace
from moduletrace.instrumentation.configuration import flush

moduletrace.configure(instrument_httpx=False, exit_timeout=10)
engine = create_async_engine(
    os.environ["MODULES_DATABASE_URL"], pool_size=1, max_overflow=0, pool_timeout={POOL_TIMEOUT_S}
)
moduletrace.instrument_sqlalchemy_pool(engine, name="modules-db")


async def read(module_id):
    with moduletrace.load_request(module_id), moduletrace.load_db_query(module_id):
        async with engine.connect() as connection:
            return (await connection.execute(text("SELECT 1"))).scalar()


async def main():
    report = await engine.connect()  # a slow report holds the pool's only connection
    try:
        await read("m-starved")
    except sqlalchemy.exc.TimeoutError:
        print("timed out", flush=True)
    flush(10)  # one collection while the pool is exhausted
    await report.close()
    assert await read("m-after") == 1
    # Exit now, the pool as it is: what it looks like at exit goes out with the exit flush only.


asyncio.run(main())
if os.environ.get("UNTIL_SIGTERM"):  # a server: it ends when it is told to, by SIGTERM's default action
    print("ready", flush=True)
    time.sleep(60)
"""


@dataclass
class Archive:
    """What our collector archived: its OTLP JSON lines files."""

    collector: Collector
    directory: Path

    def lines(self, name: str) -> list[dict[str, Any]]:
        path = self.directory / name
        if not path.exists():
            return []
        lines = []
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:  # the last line, still being written
                continue
        return lines

    def metric_exports(self, service: str, name: str = "metrics.jsonl") -> list[dict[str, list[dict[str, Any]]]]:
        """Each archived export of ``service``'s metrics, in order: metric name -> its data points."""
        exports = []
        for line in self.lines(name):
            for resource in line["resourceMetrics"]:
                if _attributes(resource["resource"]).get(c.SERVICE_NAME) != service:
                    continue
                exports.append(
                    {
                        metric["name"]: _data(metric)["dataPoints"]
                        for scope in resource["scopeMetrics"]
                        for metric in scope["metrics"]
                    }
                )
        return exports

    def span_names(self, service: str) -> list[str]:
        return [
            span["name"]
            for line in self.lines("spans.jsonl")
            for resource in line["resourceSpans"]
            if _attributes(resource["resource"]).get(c.SERVICE_NAME) == service
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        ]


def _attributes(node: dict[str, Any]) -> dict[str, Any]:
    """OTLP JSON attributes as a dict (the string, int, double or bool inside each value)."""
    return {a["key"]: next(iter(a["value"].values())) for a in node.get("attributes", [])}


def _data(metric: dict[str, Any]) -> dict[str, Any]:
    return next(metric[kind] for kind in ("sum", "gauge", "histogram") if kind in metric)


def _timeless(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _timeless(v) for k, v in node.items() if k not in ("timeUnixNano", "startTimeUnixNano")}
    if isinstance(node, list):
        return [_timeless(v) for v in node]
    return node


def _point(points: list[dict[str, Any]], attributes: dict[str, str]) -> dict[str, Any]:
    (found,) = [p for p in points if _attributes(p) == attributes]
    return found


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    directory = tmp_path_factory.mktemp("metrics-archive")
    collector = start_collector(directory, CONFIG)
    try:
        yield Archive(collector, directory)
    finally:
        collector.process.stop()


def service_env(archive: Archive, postgres: PostgresServer, service: str, **env: str) -> dict[str, str]:
    return python_env(
        {
            "OTEL_SERVICE_NAME": service,
            "OTEL_EXPORTER_OTLP_ENDPOINT": archive.collector.otlp_http,
            "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # never within the run: only flushes export
            "MODULES_DATABASE_URL": postgres.url("postgresql+asyncpg"),  # the password stays out of argv
            **env,
        }
    )


def run_service(archive: Archive, postgres: PostgresServer, service: str, **env: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVICE],
        env=service_env(archive, postgres, service, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["timed out"], result.stderr


POOL = {c.DB_CLIENT_CONNECTION_POOL_NAME: "modules-db"}
USED = {**POOL, c.DB_CLIENT_CONNECTION_STATE: c.CONNECTION_STATE_USED}
IDLE = {**POOL, c.DB_CLIENT_CONNECTION_STATE: c.CONNECTION_STATE_IDLE}
TIMED_OUT = {**POOL, c.ERROR_TYPE: "sqlalchemy.exc.TimeoutError"}


def test_an_exhausted_postgres_pool_reaches_the_archive_with_its_use_limit_timeouts_and_waits(
    archive: Archive, postgres: PostgresServer
) -> None:
    ours = archive.directory / "pool-service-metrics.jsonl"
    run_service(archive, postgres, "pool-service", MODULETRACE_METRICS_FILE=str(ours))
    assert wait_until(lambda: len(archive.metric_exports("pool-service")) == 2, timeout=20), archive.lines(
        "metrics.jsonl"
    )
    exhausted, at_exit = archive.metric_exports("pool-service")
    # The embedded metrics file holds what the collector archived (each reader collects at its own
    # instant: the times differ, nothing else), in the same shape: one reader reads both.
    assert _timeless(archive.metric_exports("pool-service", ours.name)) == _timeless([exhausted, at_exit])

    # While the report held the only connection: every connection used, and one checkout gave up.
    count = exhausted[c.DB_CLIENT_CONNECTION_COUNT]
    limit = _point(exhausted[c.DB_CLIENT_CONNECTION_MAX], POOL)["asInt"]
    assert _point(count, USED)["asInt"] == limit == "1"
    assert _point(count, IDLE)["asInt"] == "0"
    assert _point(exhausted[c.DB_CLIENT_CONNECTION_TIMEOUTS], POOL)["asInt"] == "1"
    assert _point(exhausted[c.DB_CLIENT_CONNECTION_PENDING_REQUESTS], POOL)["asInt"] == "0"
    waited = _point(exhausted[c.DB_CLIENT_CONNECTION_WAIT_TIME], TIMED_OUT)
    assert waited["count"] == "1" and POOL_TIMEOUT_S <= waited["sum"] < 5
    assert _point(exhausted[c.DB_CLIENT_CONNECTION_WAIT_TIME], POOL)["count"] == "1"  # the report's checkout

    # The flush at exit: the connection back in the pool, the read after it, the timeout still counted.
    assert_released(at_exit)


def assert_released(export: dict[str, list[dict[str, Any]]]) -> None:
    count = export[c.DB_CLIENT_CONNECTION_COUNT]
    assert (_point(count, USED)["asInt"], _point(count, IDLE)["asInt"]) == ("0", "1")
    assert _point(export[c.DB_CLIENT_CONNECTION_TIMEOUTS], POOL)["asInt"] == "1"
    assert _point(export[c.DB_CLIENT_CONNECTION_WAIT_TIME], POOL)["count"] == "2"
    assert _point(export[c.DB_CLIENT_CONNECTION_WAIT_TIME], TIMED_OUT)["count"] == "1"


def test_a_service_ended_by_sigterm_flushes_its_last_metrics_first(archive: Archive, postgres: PostgresServer) -> None:
    service = start_python(["-c", SERVICE], service_env(archive, postgres, "ended-service", UNTIL_SIGTERM="1"))
    stop(service)
    assert service.returncode == -signal.SIGTERM  # killed by the signal, as without moduletrace
    assert wait_until(lambda: len(archive.metric_exports("ended-service")) == 2, timeout=20)
    assert_released(archive.metric_exports("ended-service")[-1])


def test_with_otel_metrics_exporter_none_no_metric_leaves_the_service(
    archive: Archive, postgres: PostgresServer
) -> None:
    run_service(archive, postgres, "quiet-service", OTEL_METRICS_EXPORTER="none")
    # Its spans went out at exit, through the same collector, alongside where its metrics would have.
    assert wait_until(lambda: "module_load_db_query" in archive.span_names("quiet-service"), timeout=20)
    time.sleep(1)  # the metrics file is flushed every 100 ms
    assert archive.metric_exports("quiet-service") == []
