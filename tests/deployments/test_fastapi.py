"""FastAPI: the lifespan flush, a second exporter detected, misplaced decorators detected, the carrier header."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import moduletrace
from moduletrace.instrumentation import configuration
from moduletrace.instrumentation.integrations.fastapi import instrument_app
from tests.conftest import Recorded, reset_trace_globals
from tests.deployments.hosts import lifecycle_spans
from tests.support.otlp_receiver import OTLPReceiver

with warnings.catch_warnings():  # starlette asks for its httpx fork; the httpx we have works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.filterwarnings("ignore::Warning")]


@pytest.fixture(autouse=True)
def clean_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # only a flush exports
    reset_trace_globals()
    yield
    configuration._reset_for_tests()
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    reset_trace_globals()


def _create_app(tracing: bool = False) -> FastAPI:
    app = FastAPI(telemetry={"tracing": tracing})

    @app.post("/modules/{module_id}")
    async def create(module_id: str) -> dict[str, str]:
        with moduletrace.create_start(module_id):
            return moduletrace.carrier()

    return app


def test_lifespan_shutdown_flushes_the_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    with OTLPReceiver() as receiver:
        moduletrace.configure(endpoint=receiver.endpoint, instrument_httpx=False)
        app = instrument_app(_create_app())
        with TestClient(app) as client:
            for n in range(5):
                assert client.post(f"/modules/m-{n}").status_code == 200
            assert lifecycle_spans(receiver) == []  # still queued
        assert len(lifecycle_spans(receiver)) == 5  # flushed by the lifespan shutdown, process still running


def test_fastapi_auto_configure_adding_a_second_exporter_is_warned_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with OTLPReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")  # FastAPI would set up metrics and logs too
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
        moduletrace.configure(instrument_httpx=False)
        with caplog.at_level(logging.WARNING, logger="moduletrace"):
            with TestClient(_create_app(tracing=True)) as client:  # FastAPI adds its exporter at lifespan start-up
                assert client.post("/modules/m-1").status_code == 200
            with TestClient(_create_app(tracing=True)):
                pass
        assert moduletrace.shutdown(timeout=5)
        exported = lifecycle_spans(receiver)
    warnings = [r.getMessage() for r in caplog.records if "second exporter" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"{receiver.endpoint}/v1/traces" in warnings[0]
    assert "fastapi.telemetry" in warnings[0] and "FASTAPI_OTEL_AUTO_CONFIGURE=false" in warnings[0]
    assert len(exported) == 2  # what the warning is about: one span, exported twice


def test_a_stage_decorator_above_the_route_decorator_is_reported_and_the_right_order_works(
    spans: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.deployments.apps import routes

    with caplog.at_level(logging.WARNING, logger="moduletrace"):
        instrument_app(routes.app)
    messages = [r.getMessage() for r in caplog.records]
    assert any("tests.deployments.apps.routes.misplaced" in m and "/misplaced/{module_id}" in m for m in messages)
    assert not any("routes.load " in m for m in messages)

    creation = TracerProvider().get_tracer("test").start_span("module_create_start")
    carrier = moduletrace.carrier(trace.set_span_in_context(creation))
    with TestClient(routes.app) as client:
        assert client.get("/misplaced/m-1").status_code == 200
        headers = {"x-module-traceparent": carrier["traceparent"]}
        assert client.get("/modules/m-2", headers=headers).status_code == 200
    (load,) = spans.named("module_load_request")  # none from the misplaced route
    assert load.attributes["module.id"] == "m-2"
    assert load.context.trace_id == creation.get_span_context().trace_id  # the carrier from the header
