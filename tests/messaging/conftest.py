"""Tracing to an OTLP JSON lines file (what ``moduletrace races --file`` reads), and the real brokers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from moduletrace.cli.main import main
from moduletrace.instrumentation.file_exporter import OTLPJsonFileExporter
from tests.conftest import Recorded, reset_trace_globals
from tests.messaging.rabbitmq import RabbitMQ, running_rabbitmq
from tests.support.redis_server import RedisServer, running_redis


class Traced(Recorded):
    """The spans of a test, in memory and in an OTLP JSON lines file, and the CLI run over that file."""

    def __init__(self, exporter: InMemorySpanExporter, provider: TracerProvider, path: Path) -> None:
        super().__init__(exporter, provider)
        self.path = path

    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
        self.provider.force_flush()
        capsys.readouterr()
        status = main([*argv, "--file", str(self.path)])
        return status, capsys.readouterr().out

    def json(self, capsys: pytest.CaptureFixture[str], command: str) -> tuple[int, dict[str, Any]]:
        status, out = self.run(capsys, command, "--format", "json")
        return status, json.loads(out)


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Traced]:
    reset_trace_globals()
    resource = Resource.create({"service.name": "modules", "service.instance.id": "modules-1"})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    path = tmp_path / "spans.jsonl"
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileExporter(path)))
    trace.set_tracer_provider(provider)
    recorded = Traced(memory, provider, path)
    yield recorded
    provider.shutdown()
    reset_trace_globals()


# One server of each for the whole folder (a RabbitMQ node takes seconds to start): every test
# uses streams and queues of its own names.
@pytest.fixture(scope="package")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="package")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """With its Prometheus endpoint, which tests/messaging/test_diagnose_brokers.py scrapes."""
    with running_rabbitmq(tmp_path_factory.mktemp("rabbitmq"), prometheus=True) as broker:
        yield broker
