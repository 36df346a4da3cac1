"""The metrics archive as diagnose reads it: which samples count, which moment they describe, bad lines.

The lines are built in the shape the collector's file exporter writes (checked against our collector
in test_diagnose_database.py); the contrib postgresql receiver's names follow its documentation
(metadata.yaml: postgresql.backends, postgresql.wal.lag with operation/replication_client).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from moduletrace.analysis.database import MAX_AGE_NS, DatabaseMetrics
from moduletrace.cli.main import main
from moduletrace.samples import Sample
from moduletrace.sources.metrics import decode_metrics, read_metrics

T0 = 1_796_000_000 * 10**9
S = 10**9


def attrs(**values: Any) -> list[dict[str, Any]]:
    return [{"key": k.replace("__", "."), "value": {"stringValue": str(v)}} for k, v in values.items()]


def gauge(name: str, points: list[tuple[int, float, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "name": name,
        "gauge": {
            "dataPoints": [{"timeUnixNano": str(t), "asDouble": v, "attributes": attrs(**a)} for t, v, a in points]
        },
    }


def line(*metrics: dict[str, Any], service: str = "postgresql", instance: str = "127.0.0.1:9187") -> str:
    resource = {"attributes": attrs(service__name=service, service__instance__id=instance)}
    return json.dumps({"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": list(metrics)}]}]})


def activity(t: int, server: str, **states: float) -> dict[str, Any]:
    return gauge(
        "pg_stat_activity_count",
        [
            (t, n, {"datname": db, "server": server, "state": s.replace("_", " ")})
            for s, n in states.items()
            for db in ("app",)
        ],
    )


def test_gauges_sums_and_histograms_become_samples_and_other_metrics_are_passed_over() -> None:
    payload = json.loads(
        line(
            gauge("pg_up", [(T0, 1, {})]),
            gauge("process_cpu_seconds_total", [(T0, 3, {})]),
            {
                "name": "db.client.connection.timeouts",
                "sum": {"dataPoints": [{"timeUnixNano": str(T0), "asInt": "4"}], "isMonotonic": True},
            },
            {
                "name": "db.client.connection.wait_time",
                "histogram": {"dataPoints": [{"timeUnixNano": str(T0), "count": "3", "sum": 1.5, "max": 1.0}]},
            },
            service="module-service",
        )
    )
    samples = {s.name: s for s in decode_metrics(payload)}
    assert sorted(samples) == [
        "db.client.connection.timeouts",
        "db.client.connection.wait_time.count",
        "db.client.connection.wait_time.max",
        "db.client.connection.wait_time.sum",
        "pg_up",
    ]
    assert samples["db.client.connection.timeouts"].value == 4.0
    assert samples["pg_up"].labels == {"service.name": "module-service", "service.instance.id": "127.0.0.1:9187"}


def test_a_bad_line_is_skipped_with_a_warning_and_the_rest_is_read(tmp_path: Path) -> None:
    archive = tmp_path / "metrics.jsonl"
    good = line(gauge("pg_up", [(T0, 1, {})]))
    archive.write_text("\n".join([good, '{"resourceMetrics": [{"scopeMetrics": [{"metrics": [', good]) + "\n")
    warnings: list[str] = []
    samples = read_metrics([str(archive)], warnings.append)
    assert len(samples) == 2 and len(warnings) == 1 and "record 2 skipped" in warnings[0]


def test_nan_and_missing_values_are_no_samples() -> None:
    payload = json.loads(line(gauge("pg_up", [(T0, 1, {})])).replace('"asDouble": 1', '"asDouble": "NaN"'))
    assert list(decode_metrics(payload)) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is not json\n", "not OTLP JSON metrics lines"),
        (None, "no such file"),
    ],
)
def test_an_unreadable_metrics_archive_is_a_one_line_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    spans = tmp_path / "spans.jsonl"
    spans.write_text("")
    archive = tmp_path / "metrics.jsonl"
    if content is not None:
        archive.write_text(content)
    code = main(["diagnose", "--file", str(spans), "--metrics", str(archive)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and "--metrics" in err


def metrics(*lines: str) -> DatabaseMetrics:
    return DatabaseMetrics(s for text in lines for s in decode_metrics(json.loads(text)))


def test_connections_are_summed_by_state_at_the_sample_nearest_the_failure() -> None:
    db = metrics(
        line(activity(T0, "db:5432", active=2, idle=1)),
        line(activity(T0 + 10 * S, "db:5432", active=9, idle_in_transaction=3)),
        line(gauge("pg_settings_max_connections", [(T0 + 10 * S, 12, {"server": "db:5432"})])),
        line(gauge("pg_settings_superuser_reserved_connections", [(T0 + 10 * S, 3, {"server": "db:5432"})])),
    )
    (near_late,) = db.at(T0 + 9 * S)
    assert near_late == (
        "PostgreSQL db:5432, 1.0 s after the failure: "
        "12 connections of max_connections 12 (3 reserved) (9 active, 3 idle in transaction)"
    )
    (near_early,) = db.at(T0 + 4 * S)
    assert near_early == (  # the limit from its own nearest sample: it seldom changes
        "PostgreSQL db:5432, 4.0 s before the failure: "
        "3 connections of max_connections 12 (3 reserved) (2 active, 1 idle)"
    )


def test_a_sample_further_than_the_limit_from_the_failure_says_nothing() -> None:
    db = metrics(line(activity(T0, "db:5432", active=2)))
    assert db.at(T0 + MAX_AGE_NS) != [] and db.at(T0 + MAX_AGE_NS + 1) == []
    assert db.at(T0 - MAX_AGE_NS - 1) == []


def test_a_replica_line_says_how_far_behind_and_a_primary_has_none() -> None:
    db = metrics(
        line(
            gauge("pg_replica_lag_seconds", [(T0, 1.5, {"server": "replica:5432"}), (T0, 0, {"server": "db:5432"})]),
            gauge("pg_replica_in_recovery", [(T0, 1, {"server": "replica:5432"}), (T0, 0, {"server": "db:5432"})]),
            gauge("pg_replica_pending_bytes", [(T0, 4096, {"server": "replica:5432"})]),
        )
    )
    assert db.at(T0) == [
        "replica replica:5432, 0.0 s after the failure: up to 1,500 ms behind, 4,096 bytes of WAL not applied yet"
    ]


def test_the_contrib_postgresql_receivers_names_are_read_too() -> None:
    db = metrics(
        line(
            gauge("postgresql.backends", [(T0, 7, {"postgresql.database.name": "app"})]),
            gauge(
                "postgresql.wal.lag",
                [
                    (T0, 2.0, {"operation": "replay", "replication_client": "standby-1"}),
                    (T0, 0.1, {"operation": "flush", "replication_client": "standby-1"}),
                ],
            ),
            service="postgresql",
            instance="db:5432",
        )
    )
    assert db.at(T0) == [
        "PostgreSQL db:5432, 0.0 s after the failure: 7 connections (7 connected)",
        "standby standby-1 of db:5432, 0.0 s after the failure: 2,000 ms behind",
    ]


def test_the_pool_line_gives_use_limit_timeouts_and_mean_wait() -> None:
    pool = {"db.client.connection.pool.name": "modules-db"}
    db = metrics(
        line(
            gauge("db.client.connection.count", [(T0, 1, {**pool, "db.client.connection.state": "used"})]),
            gauge("db.client.connection.count", [(T0, 0, {**pool, "db.client.connection.state": "idle"})]),
            gauge("db.client.connection.max", [(T0, 1, pool)]),
            gauge("db.client.connection.timeouts", [(T0 - 5 * S, 1, pool), (T0, 4, pool)]),
            {
                "name": "db.client.connection.wait_time",
                "histogram": {
                    "dataPoints": [
                        {"timeUnixNano": str(T0), "count": "1", "sum": 0.5, "attributes": attrs(**pool)},
                        {
                            "timeUnixNano": str(T0),
                            "count": "3",
                            "sum": 7.5,
                            "attributes": attrs(**pool, error__type="sqlalchemy.exc.TimeoutError"),
                        },
                    ]
                },
            },
            service="module-service",
        )
    )
    assert db.at(T0) == [
        "pool modules-db (module-service), 0.0 s after the failure: "
        "1 of 1 connections in use (0 idle), 4 waits timed out so far, mean wait 2,000.0 ms"
    ]
    assert "pool modules-db (module-service): 3 waits for a connection timed out" in db.summary(T0 - 4 * S, T0)


def test_the_summary_lists_module_statements_not_the_monitors_own() -> None:
    server = {"server": "db:5432"}
    ours = {**server, "queryid": "1", "query": "SELECT body FROM modules WHERE id = $1"}
    monitor = {**server, "queryid": "2", "query": "SELECT * FROM pg_stat_activity"}
    db = metrics(
        line(
            gauge("pg_stat_statements_max_seconds", [(T0, 0.25, ours), (T0, 9.0, monitor)]),
            gauge("pg_stat_statements_mean_seconds", [(T0, 0.002, ours)]),
            gauge("pg_stat_statements_calls", [(T0, 1200, ours)]),
        )
    )
    assert db.summary(T0 - S, T0 + S) == [
        "statement on db:5432: SELECT body FROM modules WHERE id = $1: 1,200 calls, mean 2.0 ms, max 250.0 ms"
    ]


def test_samples_carry_whose_they_are() -> None:
    (sample,) = decode_metrics(json.loads(line(gauge("pg_up", [(T0, 1, {"server": "db:5432"})]))))
    assert sample == Sample(
        "pg_up", T0, 1.0, {"service.name": "postgresql", "service.instance.id": "127.0.0.1:9187", "server": "db:5432"}
    )
