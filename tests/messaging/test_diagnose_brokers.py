"""diagnose with the brokers' side: a real RabbitMQ node (its Prometheus plugin) and a real Redis (its
exporter), scraped by our collector while the indexers are stalled behind a backlog.

A service process (tests/messaging/backlog_service.py) stalls both indexers, piles BACKLOG events in
front of them, creates one module through each broker and loads it at once (a race), then lets them
catch up. The collector built from the manifest receives its spans (OTLP) and scrapes the queue and
the stream (collector/metrics/rabbitmq.yaml, redis.yaml) into the metrics archive; ``diagnose --file
--metrics`` then shows, near each raced load, the backlog that made the indexer late.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
import redis

from moduletrace.sources.metrics import read_metrics
from tests.messaging.backlog_service import BACKLOG, GROUP
from tests.messaging.rabbitmq import RabbitMQ
from tests.support.pipeline import diagnose_json as diagnose
from tests.support.pipeline import run_service, scraping_collector
from tests.support.processes import python_env, wait_until
from tests.support.redis_server import RedisServer, running_redis_exporter

pytestmark = pytest.mark.peers
STREAM, QUEUE = "modules-watched", "modules-watched"


@dataclass
class Incident:
    spans: Path
    metrics: Path
    service: dict[str, Any]  # what the service printed: phase times, the first loads' results
    redis_exporter: str
    rabbitmq: str  # the node's Prometheus endpoint, as scraped


@pytest.fixture(scope="module")
def incident(
    redis_server: RedisServer, rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Incident]:
    directory = tmp_path_factory.mktemp("broker-incident")
    spans, metrics = directory / "spans.jsonl", directory / "metrics.jsonl"
    # The stream, its group and the queue exist before the scrapes start, as in production.
    client = redis.Redis.from_url(redis_server.url)
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    client.close()
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url))
    connection.channel().queue_declare(QUEUE)
    connection.close()
    node = f"127.0.0.1:{rabbitmq.prometheus_port}"
    with running_redis_exporter(redis_server, directory, streams=f"{STREAM}*") as exporter:
        targets = {"RABBITMQ_PROMETHEUS_TARGETS": f"[{node}]", "REDIS_EXPORTER_TARGETS": f"[{exporter}]"}
        collector = scraping_collector(directory, spans, metrics, targets)
        try:

            def watched() -> bool:
                text = metrics.read_text() if metrics.exists() else ""
                return (
                    "rabbitmq_detailed_queue_messages_ready" in text and "redis_stream_group_last_delivered_id" in text
                )

            assert wait_until(watched, timeout=30), "the collector never scraped the queue and the stream"
            env = python_env(
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
                    "OTEL_BSP_SCHEDULE_DELAY": "100",
                    "OTEL_METRICS_EXPORTER": "none",
                    "REDIS_URL": redis_server.url,
                    "AMQP_URL": rabbitmq.url,
                    "STREAM": STREAM,
                    "QUEUE": QUEUE,
                }
            )
            printed = run_service("tests.messaging.backlog_service", env)

            def archived() -> bool:
                text = spans.read_text() if spans.exists() else ""
                return text.count("module_load_request") >= 2 and text.count("module_create_cache_update") >= 4

            assert wait_until(archived, timeout=30), "the span archive never received every load"
            resumed = printed["phases"]["resumed_ns"]
            # A scrape after the indexers caught up, so the archive shows the backlog drained too.
            assert wait_until(lambda: max(s.time_ns for s in read_metrics([str(metrics)], print)) > resumed + 2e9)
        finally:
            collector.process.stop()
    yield Incident(spans, metrics, printed, exporter, node)


def offset_ms(line: str) -> float:
    """ "..., 0.4 s before the failure: ..." -> -400.0"""
    seconds, when = line.split(" the failure")[0].rsplit(", ", 1)[1].split(" s ")
    return float(seconds) * 1000 * (-1 if when == "before" else 1)


def test_the_loads_raced_the_stalled_indexers(incident: Incident) -> None:
    assert incident.service["first"] == {"redis-late-1": False, "amqp-late-1": False}


def test_the_collector_scraped_the_queue_and_the_stream_into_the_metrics_archive(incident: Incident) -> None:
    samples = read_metrics([str(incident.metrics)], warn=lambda _: None)
    phases = incident.service["phases"]
    during = [s for s in samples if phases["stalled_ns"] + 2e9 < s.time_ns < phases["resumed_ns"]]
    ready = [
        s.value for s in during if s.name == "rabbitmq_detailed_queue_messages_ready" and s.labels.get("queue") == QUEUE
    ]
    # RabbitMQ refreshes a queue's figures every second here: every scrape past that sees the backlog.
    assert (
        ready
        and min(ready) >= BACKLOG
        and all(s.labels["service.instance.id"] == incident.rabbitmq for s in during if s.name.startswith("rabbitmq"))
    )
    delivered = [
        s for s in during if s.name == "redis_stream_group_last_delivered_id" and s.labels.get("stream") == STREAM
    ]
    newest = [s for s in during if s.name == "redis_stream_last_generated_id" and s.labels.get("stream") == STREAM]
    # redis.yaml keeps the exporter's stream series and redis_up, not the rest of its hundreds.
    text = incident.metrics.read_text()
    assert '"redis_up"' in text and '"redis_connected_clients"' not in text and '"redis_memory_used_bytes"' not in text
    # The group was given the warm-up entry, then nothing while the backlog grew behind it.
    assert delivered and len({s.value for s in delivered}) == 1
    assert newest and max(s.value for s in newest) > delivered[0].value
    assert delivered[0].value * 1e6 < phases["stalled_ns"]


def test_diagnose_shows_the_backlog_near_each_raced_load(
    incident: Incident, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = diagnose(capsys, "--file", str(incident.spans), "--metrics", str(incident.metrics))
    failed = {d["module_id"]: d for d in report["failed_loads"]}
    assert code == 1 and sorted(failed) == ["amqp-late-1", "redis-late-1"]
    phases = incident.service["phases"]
    for module_id, diagnosis in failed.items():
        assert diagnosis["cause"] == "race" and diagnosis["strength"] == "data version"
        (queue,) = [line for line in diagnosis["database"] if line.startswith(f"RabbitMQ queue '{QUEUE}'")]
        assert f" on {incident.rabbitmq}, " in queue
        ready = int(queue.split(": ")[1].split(" messages ready")[0].replace(",", ""))
        assert ready >= BACKLOG, queue
        (stream,) = [
            line for line in diagnosis["database"] if line.startswith(f"Redis stream '{STREAM}' group '{GROUP}'")
        ]
        assert f" on {incident.redis_exporter}, " in stream
        behind_ms = float(stream.split("up to ")[1].split(" ms behind")[0].replace(",", ""))
        # The last entry the group was given (the warm-up) came just before the stall began: at the
        # sample, that long ago, give or take the rounding of the sample's offset and the warm-up.
        stalled_ms = (phases["loads_ns"] - phases["stalled_ns"]) / 1e6 + offset_ms(stream)
        assert stalled_ms - 100 <= behind_ms <= stalled_ms + 1000, stream
        # The spans' own figure agrees: the consumer took the raced event about as late as the metrics say.
        assert any("took the event" in line for line in diagnosis["evidence"]), module_id
    peaks = [line for line in report["database"] if line.startswith(("RabbitMQ", "Redis"))]
    assert any(line.startswith(f"RabbitMQ queue '{QUEUE}' on {incident.rabbitmq}: at most") for line in peaks), peaks
    assert any(
        line.startswith(f"Redis stream '{STREAM}' group '{GROUP}' on {incident.redis_exporter}: at worst up to")
        for line in peaks
    ), peaks
    print("\n".join(failed["amqp-late-1"]["database"] + report["database"]))
