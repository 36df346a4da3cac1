"""diagnose with the database's side: a real primary, a replica 1.5 s behind, exporters, our collector.

A service process loads modules from the replica right after their commit (stale), after the delay
(found), and once while the primary's connection slots are all held. The collector built from the
manifest receives its spans (OTLP) and scrapes both servers' postgres_exporter (collector/metrics/
postgresql.yaml) into the metrics archive; ``diagnose --file --metrics`` then names each failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from moduletrace.causes import SERVER_FULL
from moduletrace.cli.main import main
from moduletrace.sources.metrics import read_metrics
from tests.database.conftest import APPLY_DELAY_MS
from tests.support.pipeline import diagnose_json as diagnose
from tests.support.pipeline import run_service, scraping_collector
from tests.support.postgres import PostgresServer, running_postgres_exporter
from tests.support.processes import python_env, wait_until

pytestmark = pytest.mark.peers


@dataclass
class Incident:
    spans: Path
    metrics: Path
    service: dict[str, Any]  # what the service printed: phase times, results


def dsn(server: PostgresServer) -> str:
    return f"postgresql://{server.user}:{server.password}@{server.host}:{server.port}/{server.database}"


@pytest.fixture(scope="module")
def incident(
    primary: PostgresServer, replica: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Incident]:
    directory = tmp_path_factory.mktemp("database-incident")
    spans, metrics = directory / "spans.jsonl", directory / "metrics.jsonl"
    with (
        running_postgres_exporter(primary, directory) as primary_exporter,
        running_postgres_exporter(replica, directory) as replica_exporter,
    ):
        targets = {"POSTGRES_EXPORTER_TARGETS": f"[{primary_exporter}, {replica_exporter}]"}
        collector = scraping_collector(directory, spans, metrics, targets)
        try:
            # Prometheus' scrape manager starts scraping a few seconds after the collector: the
            # incident begins once the servers are being watched, as in production.
            assert wait_until(lambda: metrics.exists() and "pg_replica_lag_seconds" in metrics.read_text(), timeout=30)
            env = python_env(
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
                    "OTEL_BSP_SCHEDULE_DELAY": "100",
                    "PRIMARY_DSN": dsn(primary),
                    "REPLICA_DSN": dsn(replica),
                    "APPLY_DELAY_S": str(APPLY_DELAY_MS / 1000),
                }
            )
            printed = run_service("tests.support.replica_service", env)

            def archived() -> bool:
                text = spans.read_text() if spans.exists() else ""
                return text.count("module_load_request") >= 6 and "starved-1" in text

            assert wait_until(archived, timeout=30), "the span archive never received every load"
            assert wait_until(lambda: metrics.exists() and metrics.stat().st_size > 0, timeout=30)
        finally:
            collector.process.stop()
    yield Incident(spans, metrics, printed)


def test_the_service_saw_what_the_servers_did(incident: Incident) -> None:
    results = incident.service["results"]
    assert results == {
        "stale-0": False,
        "stale-1": False,
        "stale-2": False,
        "late-0": True,
        "late-1": True,
        "starved-1": False,
    }
    assert incident.service["held"] >= 1


def test_the_collector_scraped_both_servers_into_the_metrics_archive(
    incident: Incident, primary: PostgresServer, replica: PostgresServer
) -> None:
    samples = read_metrics([str(incident.metrics)], warn=lambda _: None)
    servers = {s.labels.get("server") for s in samples if s.name == "pg_stat_activity_count"}
    assert {f"127.0.0.1:{primary.port}", f"127.0.0.1:{replica.port}"} <= servers
    lags = [
        s.value
        for s in samples
        if s.name == "pg_replica_lag_seconds" and s.labels.get("server").endswith(str(replica.port))
    ]
    assert lags and max(lags) >= APPLY_DELAY_MS / 1000 * 0.9  # the ticks keep it a delay behind
    replay = [s.value for s in samples if s.name == "pg_replication_client_replay_lag_seconds"]
    assert replay and max(replay) >= APPLY_DELAY_MS / 1000 * 0.9  # the primary's view agrees


def test_diagnose_names_the_stale_reads_with_the_replicas_measured_lag(
    incident: Incident, replica: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = diagnose(capsys, "--file", str(incident.spans), "--metrics", str(incident.metrics))
    by_module = {d["module_id"]: d for d in report["failed_loads"]}
    assert code == 1 and sorted(by_module) == ["stale-0", "stale-1", "stale-2", "starved-1"]
    for module_id in ("stale-0", "stale-1", "stale-2"):
        stale = by_module[module_id]
        assert (stale["cause"], stale["detail"]) == ("race", "stale read (db_commit)")
        evidence = " ".join(stale["evidence"])
        assert "the replica was up to" in evidence and "before the commit ended" in evidence
        lag_ms = float(evidence.split("the replica was up to ")[1].split(" ms behind")[0].replace(",", ""))
        assert APPLY_DELAY_MS * 0.9 <= lag_ms <= APPLY_DELAY_MS * 3
        database = " ".join(stale["database"])
        assert f"replica 127.0.0.1:{replica.port}" in database and "ms behind" in database


def test_diagnose_shows_the_full_server_behind_the_starved_load(
    incident: Incident, primary: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _, report = diagnose(capsys, "--file", str(incident.spans), "--metrics", str(incident.metrics))
    (starved,) = [d for d in report["failed_loads"] if d["module_id"] == "starved-1"]
    assert (starved["cause"], starved["detail"]) == ("pool", "max_connections")
    assert any(SERVER_FULL.search(line) for line in starved["evidence"])  # "too many clients", "slots ... reserved"
    (server,) = [
        line for line in starved["database"] if line.startswith(f"PostgreSQL primary 127.0.0.1:{primary.port}")
    ]
    held = incident.service["held"]
    assert "of max_connections 12 (3 reserved)" in server and "idle in transaction" in server
    connections = int(server.split(": ")[1].split(" connections")[0])
    assert connections >= held  # the held ones, the service's own and the exporter's
    assert any("at most" in line for line in report["database"])
    statements = [line for line in report["database"] if line.startswith("statement")]
    assert statements and all("pg_" not in line for line in statements)  # the module queries, not the exporter's
    # Which three statements were slowest depends on the machine (the replica's ticks, the schema, the
    # loads' SELECT); that the loads' SELECT was measured and scraped does not.
    samples = read_metrics([str(incident.metrics)], warn=lambda _: None)
    measured = {s.labels.get("query", "") for s in samples if s.name == "pg_stat_statements_max_seconds"}
    assert any("FROM modules WHERE id = $1" in query for query in measured), sorted(measured)


def test_without_metrics_the_stale_reads_are_still_named_from_the_spans(
    incident: Incident, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = diagnose(capsys, "--file", str(incident.spans))
    stale = [d for d in report["failed_loads"] if d["module_id"].startswith("stale-")]
    assert code == 1 and len(stale) == 3 and all(d["database"] == [] for d in stale)
    assert all(d["cause"] == "race" for d in stale) and report["database"] == []


def test_races_reports_them_as_stale_reads(incident: Incident, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["races", "--file", str(incident.spans), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and sorted(v["module_id"] for v in report["stale_reads"]) == ["stale-0", "stale-1", "stale-2"]
    assert report["races"] == []


def test_the_html_page_carries_the_database_side(
    incident: Incident, primary: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "incident.html"
    args = ["--file", str(incident.spans), "--metrics", str(incident.metrics), "--format", "html"]
    code = main(["diagnose", *args, "--output", str(page)])
    capsys.readouterr()
    text = page.read_text()
    assert code == 1 and "Databases, brokers and pools during the incident (metrics)" in text
    assert f"PostgreSQL primary 127.0.0.1:{primary.port}: at most" in text
    assert '"db":["PostgreSQL' in text.replace(" ", "")  # each failed load's lines, for its evidence cell
