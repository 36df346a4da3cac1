"""configure(): the OTEL_* environment, the embedded file default, existing providers, bounded exit."""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import moduletrace
from moduletrace import conventions as c
from moduletrace.instrumentation import configuration as configure_module
from moduletrace.instrumentation import pool_metrics
from tests.conftest import install_meter_provider, install_provider, reset_metrics_globals, reset_trace_globals
from tests.support.processes import free_port, python_env, start_python

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def clean_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SDK_DISABLED",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "MODULETRACE_FILE",
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_METRIC_EXPORT_INTERVAL",
        "MODULETRACE_METRICS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    reset_trace_globals()
    reset_metrics_globals()
    yield
    configure_module._reset_for_tests()
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    reset_trace_globals()
    reset_metrics_globals()
    if HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:
        HTTPXClientInstrumentor().uninstrument()


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in ("traceId", "spanId", "parentSpanId")
            else _hex_ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def _read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_default_writes_otlp_json_lines_that_decode_as_export_requests(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    provider = moduletrace.configure(service_name="module-service", file=path, instrument_httpx=False)
    assert provider is trace.get_tracer_provider()
    with moduletrace.create_start(17):
        with pytest.raises(ValueError):
            with moduletrace.db_commit(17):
                raise ValueError("duplicate key")
    assert moduletrace.shutdown(timeout=5)

    (line,) = _read_lines(path)
    request = json_format.ParseDict(_hex_ids_to_base64(line), ExportTraceServiceRequest())
    (resource_spans,) = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "module-service"
    assert resource["service.instance.id"] and resource["host.name"]
    spans = {s.name: s for s in resource_spans.scope_spans[0].spans}
    assert resource_spans.scope_spans[0].scope.name == "moduletrace"
    commit = spans["module_create_db_commit"]
    assert commit.parent_span_id == spans["module_create_start"].span_id
    assert commit.status.code == 2 and commit.kind == 1
    assert commit.events[0].name == "exception"
    raw = line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(raw["traceId"]) == 32 and raw["traceId"] == raw["traceId"].lower()
    assert isinstance(raw["startTimeUnixNano"], str) and isinstance(raw["kind"], int)


def test_file_default_sends_nothing_over_otlp_unless_an_endpoint_is_configured(tmp_path: Path) -> None:
    moduletrace.configure(file=tmp_path / "spans.jsonl", instrument_httpx=False)
    exporters = [p.span_exporter for p in configure_module._state.processors]
    assert [type(e).__name__ for e in exporters] == ["OTLPJsonFileExporter"]


def test_a_file_that_cannot_be_opened_is_one_warning_and_the_service_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    path = blocker / "spans.jsonl"  # its folder is a file: it cannot be created
    with caplog.at_level(logging.WARNING, logger="moduletrace"):
        moduletrace.configure(file=path, instrument_httpx=False)
        with moduletrace.create_start("m-1"):
            pass
        assert moduletrace.shutdown(timeout=5)
    warnings = [r.getMessage() for r in caplog.records]
    said = [m for m in warnings if m.startswith(f"moduletrace: cannot open {path} for writing")]
    assert len(said) == 1, warnings  # once, though spans and metrics both write there
    assert not any("internal error" in m for m in warnings) and not any(r.exc_info for r in caplog.records)


def test_file_and_endpoint_export_to_both(tmp_path: Path) -> None:
    moduletrace.configure(file=tmp_path / "spans.jsonl", endpoint="http://127.0.0.1:1", instrument_httpx=False)
    exporters = [p.span_exporter for p in configure_module._state.processors]
    assert [type(e).__name__ for e in exporters] == ["OTLPJsonFileExporter", "OTLPSpanExporter"]
    assert exporters[1]._endpoint == "http://127.0.0.1:1/v1/traces"  # type: ignore[attr-defined]


def test_environment_names_the_service_and_resource_over_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,service.instance.id=pod-7")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    provider = moduletrace.configure(service_name="from-code", instrument_httpx=False)
    assert provider is not None
    attributes = provider.resource.attributes
    assert attributes["service.name"] == "from-env"
    assert attributes["deployment.environment.name"] == "prod"
    assert attributes["service.instance.id"] == "pod-7"
    assert configure_module._state.processors == []


def test_sdk_disabled_leaves_tracing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert moduletrace.configure(instrument_httpx=False) is None
    with moduletrace.load_request("m") as span:
        assert not span.is_recording()


def test_an_installed_provider_is_kept_and_only_gets_what_it_lacks(tmp_path: Path) -> None:
    recorded = install_provider()
    path = tmp_path / "spans.jsonl"
    assert moduletrace.configure(file=path, instrument_httpx=False) is recorded.provider
    assert trace.get_tracer_provider() is recorded.provider
    with moduletrace.cache_update("m-9"):
        pass
    assert moduletrace.shutdown(timeout=5)
    assert [s.name for s in recorded.all()] == ["module_create_cache_update"]
    assert len(_read_lines(path)) == 1


def test_second_call_keeps_the_first_configuration(tmp_path: Path) -> None:
    first = moduletrace.configure(file=tmp_path / "a.jsonl", instrument_httpx=False)
    assert moduletrace.configure(file=tmp_path / "b.jsonl", instrument_httpx=False) is first


def test_httpx_is_instrumented_so_traceparent_crosses_hops(tmp_path: Path) -> None:
    moduletrace.configure(file=tmp_path / "spans.jsonl")
    assert HTTPXClientInstrumentor().is_instrumented_by_opentelemetry


EXIT_SCRIPT = """
import moduletrace, sys
moduletrace.configure(service_name="exit-test", exit_timeout=float(sys.argv[1]), instrument_httpx=False)
for n in range(200):
    with moduletrace.load_request(f"m-{n}"):
        pass
print("ready", flush=True)
"""


def test_exit_is_bounded_when_the_collector_is_down(tmp_path: Path) -> None:
    # Nothing listens on the port: the SDK's own exit hook would retry for up to 30 s.
    script = tmp_path / "exit_test.py"
    script.write_text(EXIT_SCRIPT)
    env = python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    process = start_python([str(script), "1.0"], env)
    _, err = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert process.returncode == 0
    assert elapsed < 8, f"exit took {elapsed:.1f}s"
    assert "not flushed within 1.0 s" in err


SERVICE_PROVIDER_SCRIPT = """
import sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
import moduletrace
trace.set_tracer_provider(TracerProvider())  # the service's own, with the SDK's exit hook
moduletrace.configure(endpoint=sys.argv[1], exit_timeout=1.0, instrument_httpx=False)
for n in range(200):
    with moduletrace.load_request(f"m-{n}"):
        pass
"""


def test_exit_is_bounded_with_a_service_provider_and_a_collector_that_never_answers(tmp_path: Path) -> None:
    # A socket that accepts connections and never answers: each export waits its full timeout (10 s).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        script = tmp_path / "service_provider.py"
        script.write_text(SERVICE_PROVIDER_SCRIPT)
        started = time.monotonic()
        process = subprocess.run(
            [sys.executable, str(script), f"http://127.0.0.1:{silent.getsockname()[1]}"],
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    assert process.returncode == 0, process.stderr
    assert elapsed < 6, f"exit took {elapsed:.1f}s"
    assert "not flushed within 1.0 s" in process.stderr


def test_shutdown_flushes_a_provider_configure_did_not_install() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=600_000))
    trace.set_tracer_provider(provider)
    assert moduletrace.configure(instrument_httpx=False) is provider
    assert configure_module._state.processors == []  # it exports already: nothing added
    with moduletrace.load_request("m-1"):
        pass
    assert exporter.get_finished_spans() == ()
    assert moduletrace.shutdown(timeout=5)
    assert [s.name for s in exporter.get_finished_spans()] == ["module_load_request"]


def test_what_a_foreign_provider_keeps_is_named_once_with_the_variable_that_sets_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorded = install_provider()
    with caplog.at_level(logging.WARNING, logger="moduletrace"):
        moduletrace.configure(
            service_name="module-service",
            resource_attributes={"deployment.environment.name": "prod"},
            endpoint="http://127.0.0.1:1",
            instrument_httpx=False,
        )
        moduletrace.configure(service_name="module-service", instrument_httpx=False)
    (ignored,) = [r.getMessage() for r in caplog.records if "ignored:" in r.getMessage()]
    assert "service_name='module-service' (the provider's service.name is " in ignored
    assert "it comes from OTEL_SERVICE_NAME)" in ignored
    assert "deployment.environment.name (set OTEL_RESOURCE_ATTRIBUTES)" in ignored
    assert "endpoint='http://127.0.0.1:1' (set OTEL_EXPORTER_OTLP_ENDPOINT)" in ignored
    # host and process added where they were missing, so the race rule can tell clocks apart
    attributes = recorded.provider.resource.attributes
    assert attributes["host.name"] and attributes["process.pid"] == os.getpid()


def test_sigterm_goes_to_the_host_handler_whose_exception_is_not_swallowed(tmp_path: Path) -> None:
    calls: list[int] = []

    def host_handler(signum: int, frame: object) -> None:
        calls.append(signum)
        raise SystemExit(3)

    previous = signal.signal(signal.SIGTERM, host_handler)
    try:
        moduletrace.configure(file=tmp_path / "spans.jsonl", instrument_httpx=False)
        assert signal.getsignal(signal.SIGTERM) is not host_handler  # chained in front
        with pytest.raises(SystemExit) as raised:
            signal.raise_signal(signal.SIGTERM)
        assert raised.value.code == 3 and calls == [signal.SIGTERM]
        configure_module._reset_for_tests()
        assert signal.getsignal(signal.SIGTERM) is host_handler  # put back as found
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_sigterm_stays_ignored(tmp_path: Path) -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        moduletrace.configure(file=tmp_path / "spans.jsonl", instrument_httpx=False)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_configure_from_another_thread_leaves_signals_alone_and_still_flushes(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    path = tmp_path / "spans.jsonl"
    worker = threading.Thread(target=lambda: moduletrace.configure(file=path, instrument_httpx=False))
    worker.start()
    worker.join()
    assert signal.getsignal(signal.SIGTERM) == before  # signals can only be set from the main thread
    with moduletrace.load_request("m-1"):
        pass
    assert moduletrace.shutdown(timeout=5)
    assert len(_read_lines(path)) == 1


# --- the metrics side --------------------------------------------------------------------------


def test_metrics_go_over_otlp_where_spans_go_with_the_same_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "250")
    tracer_provider = moduletrace.configure(
        service_name="module-service", endpoint="http://127.0.0.1:1", instrument_httpx=False
    )
    meter_provider = metrics.get_meter_provider()
    assert isinstance(meter_provider, MeterProvider) and tracer_provider is not None
    assert meter_provider._sdk_config.resource is tracer_provider.resource
    (reader,) = meter_provider._metric_readers
    assert reader._export_interval_millis == 250  # type: ignore[attr-defined]
    assert type(reader._exporter).__name__ == "OTLPMetricExporter"  # type: ignore[attr-defined]
    assert reader._exporter._endpoint == "http://127.0.0.1:1/v1/metrics"  # type: ignore[attr-defined]
    assert pool_metrics.current() is not None


def test_otel_metrics_exporter_none_installs_no_meter_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert moduletrace.configure(endpoint="http://127.0.0.1:1", instrument_httpx=False) is not None
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)
    assert pool_metrics.current() is None  # the pool helpers stay at their no-SDK cost


def test_the_embedded_file_default_sends_no_metric_to_a_collector_that_is_not_there(tmp_path: Path) -> None:
    moduletrace.configure(file=tmp_path / "spans.jsonl", instrument_httpx=False)
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)


def test_a_metrics_file_gets_otlp_json_lines_that_decode_as_export_requests(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    moduletrace.configure(service_name="module-service", metrics_file=path, instrument_httpx=False)
    with moduletrace.load_db_query("m-1"), pytest.raises(TimeoutError):
        with moduletrace.pool_wait("modules-db", size=2, in_use=2):
            raise TimeoutError("pool exhausted")
    assert moduletrace.shutdown(timeout=5)

    (line,) = _read_lines(path)
    request = json_format.ParseDict(_hex_ids_to_base64(line), ExportMetricsServiceRequest())
    (resource_metrics,) = request.resource_metrics
    resource = {a.key: a.value.string_value for a in resource_metrics.resource.attributes}
    assert resource["service.name"] == "module-service" and resource["service.instance.id"]
    (scope,) = resource_metrics.scope_metrics
    assert scope.scope.name == "moduletrace"
    by_name = {m.name: m for m in scope.metrics}
    assert by_name[c.DB_CLIENT_CONNECTION_TIMEOUTS].sum.data_points[0].as_int == 1
    (waited,) = by_name[c.DB_CLIENT_CONNECTION_WAIT_TIME].histogram.data_points
    # The exemplar names the span that waited, in hex as OTLP JSON has it.
    raw = next(
        m
        for m in line["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        if m["name"] == c.DB_CLIENT_CONNECTION_WAIT_TIME
    )
    exemplar = raw["histogram"]["dataPoints"][0]["exemplars"][0]
    assert len(exemplar["spanId"]) == 16 and int(exemplar["spanId"], 16) == int.from_bytes(
        waited.exemplars[0].span_id, "big"
    )


def test_a_meter_provider_the_service_installed_is_used_as_it_is(tmp_path: Path) -> None:
    installed = install_meter_provider()  # shutdown_on_exit=True, as the agent's: an unbounded exit hook
    path = tmp_path / "metrics.jsonl"
    moduletrace.configure(endpoint="http://127.0.0.1:1", metrics_file=path, instrument_httpx=False)
    assert metrics.get_meter_provider() is installed.provider
    assert installed.provider._atexit_handler is None  # replaced by configure()'s bounded one
    with moduletrace.pool_wait("modules-db", size=4, in_use=3):
        pass
    used = {c.DB_CLIENT_CONNECTION_POOL_NAME: "modules-db", c.DB_CLIENT_CONNECTION_STATE: c.CONNECTION_STATE_USED}
    assert installed.point(c.DB_CLIENT_CONNECTION_COUNT, used).value == 3  # the service's own reader
    assert moduletrace.shutdown(timeout=5)
    (line,) = _read_lines(path)  # the file asked for in code, added to the service's provider
    names = [m["name"] for m in line["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]]
    assert c.DB_CLIENT_CONNECTION_COUNT in names


def test_metrics_over_grpc_without_the_extra_are_named_as_not_exported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None:
        pytest.skip("the grpc extra is installed here")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    with caplog.at_level(logging.WARNING, logger="moduletrace"):
        moduletrace.configure(instrument_httpx=False)
    assert (
        "metrics are not sent over OTLP" in caplog.text and "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in caplog.text
    )
