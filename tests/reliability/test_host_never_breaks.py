"""The package under broken exporters, raising span processors and invalid OTEL_* settings."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import moduletrace
from tests.conftest import reset_trace_globals
from tests.support.processes import python_env


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        raise RuntimeError("exporter bug")


class RaisingProcessor(SpanProcessor):
    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "start":
            raise RuntimeError("on_start bug")

    def on_end(self, span: Any) -> None:
        if self.where == "end":
            raise RuntimeError("on_end bug")


@pytest.fixture
def provider_with(request: pytest.FixtureRequest) -> Iterator[TracerProvider]:
    reset_trace_globals()
    provider = TracerProvider(shutdown_on_exit=False)
    trace.set_tracer_provider(provider)
    yield provider
    reset_trace_globals()


@moduletrace.db_commit
def commit(module_id: str) -> str:
    return f"committed {module_id}"


@moduletrace.load_db_query
def failing_read(module_id: str) -> None:
    raise KeyError(module_id)


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_raising_span_processor_never_reaches_the_service(
    provider_with: TracerProvider, where: str, lenient: None, caplog: pytest.LogCaptureFixture
) -> None:
    provider_with.add_span_processor(RaisingProcessor(where))
    for _ in range(3):
        assert commit("m-1") == "committed m-1"
        with pytest.raises(KeyError) as caught:
            failing_read("m-1")
        assert caught.value.args == ("m-1",)
        with moduletrace.load_request("m-1"):
            pass
    assert sum(f"on_{where} bug" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_a_raising_exporter_never_reaches_the_service(provider_with: TracerProvider) -> None:
    provider_with.add_span_processor(SimpleSpanProcessor(RaisingExporter()))
    assert commit("m-2") == "committed m-2"  # the SDK catches exporter errors itself


SERVICE = """
import moduletrace, sys
moduletrace.configure(service_name="svc", instrument_httpx=False, exit_timeout=2)
@moduletrace.load_db_query
def read(module_id):
    return module_id.upper()
print("result", read("m-1"), flush=True)
"""


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_HEADERS": "garbage,,=x"},
        {"OTEL_TRACES_SAMPLER": "bogus", "OTEL_TRACES_SAMPLER_ARG": "lots"},
        {"OTEL_TRACES_EXPORTER": "zipkin_v9"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
        {"OTEL_RESOURCE_ATTRIBUTES": "=,,a"},
        {"OTEL_BSP_SCHEDULE_DELAY": "soon"},
        {"OTEL_SDK_DISABLED": "maybe"},
    ],
    ids=[
        "bad-endpoint",
        "bad-headers",
        "unknown-sampler",
        "unknown-exporter",
        "unknown-protocol",
        "bad-resource",
        "bad-bsp-delay",
        "odd-disabled",
    ],
)
def test_invalid_otel_settings_leave_the_service_running(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    done = subprocess.run(
        [sys.executable, str(script)], env=python_env(env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "result M-1"
    # The SDK reports some settings itself (sometimes with a traceback in its log); moduletrace
    # adds no error of its own, and the call's result is the same.
    assert "moduletrace: internal error" not in done.stderr
