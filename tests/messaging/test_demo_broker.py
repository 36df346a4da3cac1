"""``moduletrace demo --broker``: the indexer consumes the creation events from a real Redis stream or
RabbitMQ queue; every injected race is found, and explained by the consumer's measured lag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pika
import pytest
import redis

from moduletrace.cli.main import main
from moduletrace.conventions import (
    CACHE_UPDATE,
    DB_COMMIT,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_LAG_CLOCK,
    MESSAGING_LAG_MS,
    MESSAGING_QUEUE_DEPTH,
    MESSAGING_SYSTEM,
    MODULE_ID,
    SPAN_NAMES,
)
from moduletrace.demo.runner import DemoOptions, run
from moduletrace.sources.file import read_spans
from tests.messaging.rabbitmq import RabbitMQ
from tests.support.processes import ROOT, python_env
from tests.support.redis_server import RedisServer


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    rabbitmq: RabbitMQ = request.getfixturevalue("rabbitmq")
    return rabbitmq.url


def test_every_injected_race_is_found_and_explained_by_the_consumers_lag(tmp_path: Path, broker_url: str) -> None:
    options = DemoOptions(
        seed=3, modules=60, concurrency=6, race_rate=0.1, auth_rate=0.05, pool_rate=0.05, directory=str(tmp_path)
    )
    result = run(DemoOptions(**{**vars(options), "broker": broker_url}))
    system = "redis" if broker_url.startswith("redis") else "rabbitmq"
    assert result.broker is not None and result.broker.system == system
    # The verdicts still match what was injected, and each fault fails its load the way it should.
    assert result.matches, (result.missed, result.false_positives, result.misdiagnosed)
    assert len(result.injected_races) == 6 and result.report.ambiguous == [] and result.report.unmatched == []
    expected = {m: {"race": 404, "auth": 401, "pool": 503}[f] for m, f in result.injected.items()}
    assert {m: s for m, s in result.statuses.items() if s != 200} == expected

    # Every cache update is the indexer's, in its own process, in the module's trace, with the lag recorded.
    spans = read_spans([result.spans_glob])
    updates = {s.attributes[MODULE_ID]: s for s in spans if s.name == SPAN_NAMES[CACHE_UPDATE]}
    commits = {s.attributes[MODULE_ID]: s for s in spans if s.name == SPAN_NAMES[DB_COMMIT]}
    assert sorted(updates) == sorted(result.statuses)
    for module_id, update in updates.items():
        assert update.resource.service_name == "indexer-service"
        assert update.trace_id == commits[module_id].trace_id
        assert update.attributes[MESSAGING_SYSTEM] == system
        assert update.attributes[MESSAGING_DESTINATION_NAME] == result.broker.destination
        assert update.attributes[MESSAGING_LAG_CLOCK] == "publisher"
        # Published after the commit ended, received before the cache update began.
        assert 0 < update.attributes[MESSAGING_LAG_MS] <= (update.start_ns - commits[module_id].end_ns) / 1e6

    for race in result.report.races:
        assert race.preceded == ["cache_update"] and race.load_failed and race.decided_by == "data"
        (lag,) = race.consumer_lag
        recorded = updates[race.module_id].attributes
        assert (lag.system, lag.destination, lag.lag_ms) == (
            system,
            result.broker.destination,
            recorded[MESSAGING_LAG_MS],
        )
        assert lag.queue_depth == recorded[MESSAGING_QUEUE_DEPTH]
        # The event waited in the broker while the load ran: received after the read ended.
        assert updates[race.module_id].start_ns > race.read_end_ns
        check = next(c for c in race.checks if c.stage == "cache_update")
        assert f"took the event {lag.lag_ms:,.1f} ms after it was published" in check.explanation
    for diagnosis in result.diagnosis.diagnoses:
        if diagnosis.cause == "race":
            assert any("took the event" in line for line in diagnosis.evidence)
    assert_removed(broker_url, result.broker.destination)


def assert_removed(url: str, destination: str) -> None:
    """The run's stream or queue is gone from the broker."""
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        try:
            assert client.exists(destination) == 0
        finally:
            client.close()
        return
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
            connection.channel().queue_declare(destination, passive=True)
    finally:
        connection.close()


def test_the_command_prints_the_consumers_lag_on_each_race_and_says_which_broker(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "moduletrace", "demo", "--modules", "40", "--race-rate", "0.1", "--auth-rate", "0"]
        + ["--pool-rate", "0", "--broker", redis_server.url, "--dir", str(tmp_path), "--format", "table"],
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    race_rows = [line for line in done.stdout.splitlines() if "cache_update by" in line]
    assert len(race_rows) == 4 and all("[cache_update: consumer lag " in row for row in race_rows)
    assert "Indexer: a consumer of the redis stream 'moduletrace-demo-" in done.stdout
    assert sorted(p.name for p in (tmp_path / "spans").glob("*.jsonl")) == [
        "canvas-service.jsonl",
        "indexer-service.jsonl",
        "module-service.jsonl",
    ]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://:hunter2@127.0.0.1:1/0", "--broker redis://127.0.0.1:1/0: cannot reach redis (Error 111"),
        ("amqp://guest:hunter2@127.0.0.1:1/", "--broker amqp://127.0.0.1:1/: cannot reach rabbitmq ("),
        ("kafka://127.0.0.1:9092", "--broker kafka://127.0.0.1:9092: expected redis://host:port/db or amqp://"),
        ("redis://127.0.0.1:port/0", "--broker redis://127.0.0.1:port/0: not a URL"),
    ],
    ids=["redis-refused", "amqp-refused", "other-scheme", "bad-port"],
)
def test_a_broker_that_cannot_be_used_is_one_line_and_exit_2(
    url: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--broker", url, "--dir", str(tmp_path / "demo")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"moduletrace: error: {said}"), err
    assert "hunter2" not in err
    assert not (tmp_path / "demo").exists()  # nothing was started


def test_without_the_broker_s_client_the_demo_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pika", None)  # as if pika were not installed: its import fails
    assert main(["demo", "--broker", "amqp://guest:guest@127.0.0.1:5672/", "--dir", str(tmp_path / "demo")]) == 2
    assert capsys.readouterr().err == (
        "moduletrace: error: --broker amqp://127.0.0.1:5672/: the pika package is needed "
        "(pip install 'moduletrace[demo-broker]')\n"
    )
