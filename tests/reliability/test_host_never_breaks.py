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


# --- hostile exceptions: the work per failure is bounded, whatever the exception -----------------

import builtins  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from tests.conftest import Recorded, install_provider  # noqa: E402

#: Bounds of what a failure leaves in a span (moduletrace.instrumentation._failure); a little
#: slack for the marks that say something was cut.
MAX_MESSAGE = 1024
MAX_STACKTRACE = 8192 + 64


def exception_texts(recorded: Recorded) -> list[tuple[str, str]]:
    return [
        (span.status.description or "", str(span.events[0].attributes["exception.stacktrace"]))
        for span in recorded.all()
        if span.events
    ]


@pytest.mark.parametrize("size", [80_000, 2_000_000])
@pytest.mark.parametrize(
    "text",
    ["a", "a://b:", "x:", "eyJ-", "password=", "a@", "user:x", "'\\'"],
    ids=["letters", "url-prefixes", "colons", "jwt-prefixes", "keys", "ats", "userinfo", "escaped-quotes"],
)
def test_a_huge_exception_message_costs_the_host_milliseconds(spans: Recorded, size: int, text: str) -> None:
    # Before: an 80,000-character message took 14 s (a backtracking pattern, run over the whole
    # message and again over the whole stack trace). Now the text is cut before it is scanned.
    message = (text * (size // len(text) + 1))[:size]
    started = time.perf_counter()
    with pytest.raises(ValueError):
        with moduletrace.db_commit("m-50"):
            raise ValueError(message)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"{elapsed:.2f} s for one failure"
    ((description, stacktrace),) = exception_texts(spans)
    assert len(description) <= MAX_MESSAGE and len(stacktrace) <= MAX_STACKTRACE


def test_one_exception_re_raised_a_thousand_times_costs_the_same_each_time(spans: Recorded) -> None:
    # Before: 1000 re-raises took 67 s and 226 MB: each raise adds frames to the same traceback,
    # which was formatted and redacted whole, each time.
    stored = ValueError("module m-51 not found")

    @moduletrace.load_db_query
    def read(module_id: str) -> None:
        raise stored

    tracemalloc.start()
    try:
        started = time.perf_counter()
        for _ in range(1000):
            with pytest.raises(ValueError) as caught:
                read("m-51")
            assert caught.value is stored
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    texts = exception_texts(spans)
    assert len(texts) == 1000
    assert all(len(stacktrace) <= MAX_STACKTRACE for _, stacktrace in texts)
    assert "raise stored" in texts[-1][1]  # the innermost frame is still shown...
    assert "frames not shown" in texts[-1][1]  # ...and the middle of the traceback is not
    assert elapsed < 20, f"{elapsed:.1f} s"  # about 0.5 s on an idle laptop, under tracemalloc
    # The in-memory exporter keeps the 1000 spans (each with its bounded trace): about 15 MB.
    assert peak < 60_000_000, f"{peak / 1e6:.0f} MB"


def test_a_recursion_error_reaches_the_caller_unchanged_with_bounded_traces(spans: Recorded) -> None:
    raised: list[RecursionError] = []

    @moduletrace.db_commit
    def save(module_id: str, depth: int = 0) -> None:
        try:
            save(module_id, depth + 1)
        except RecursionError as exc:
            if not raised:
                raised.append(exc)
            raise

    with pytest.raises(RecursionError) as caught:
        save("m-52")
    # The very error Python raised, not one raised by moduletrace's bookkeeping near the limit.
    assert caught.value is raised[0]
    assert caught.value.__context__ is None
    # Every level was a decorated call; the levels with room to record it failed their span.
    texts = exception_texts(spans)
    assert texts and all(len(stacktrace) <= MAX_STACKTRACE for _, stacktrace in texts)
    assert "frames not shown" in texts[-1][1]
    assert not trace.get_current_span().is_recording()


class Hostile(Exception):
    """An exception that fights back in the ways the property test below picks."""

    def __init__(self, message: str, breaks: frozenset[str]) -> None:
        super().__init__(message)
        self.message = message
        self.breaks = breaks

    def __str__(self) -> str:
        if "str" in self.breaks:
            raise RuntimeError("no str")
        return self.message

    @property
    def __notes__(self) -> list[str]:  # type: ignore[override]
        if "notes" in self.breaks:
            raise RuntimeError("no notes")
        return [self.message] * 5


def build(message: str, depth: int, chain: int, breaks: frozenset[str], cycle: bool) -> BaseException:
    """An exception raised ``depth`` frames deep, with ``chain`` exceptions behind it."""

    def dive(level: int) -> None:
        if level:
            dive(level - 1)
        raise Hostile(message, breaks)

    made: BaseException | None = None
    for _ in range(chain + 1):
        try:
            dive(depth)
        except Hostile as exc:
            if made is not None:
                exc.__cause__ = made
            made = exc
    assert made is not None
    if cycle and made.__cause__ is not None:
        made.__cause__.__context__ = made  # a cycle: chains can loop
    if "group" in breaks:
        group = getattr(builtins, "ExceptionGroup", None)
        if group is not None:  # Python 3.11+
            made = group("several", [made, *(Hostile(message, breaks - {"group"}) for _ in range(20))])
    return made


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    piece=st.text(max_size=12),
    repeat=st.integers(min_value=0, max_value=50_000),
    depth=st.integers(min_value=0, max_value=400),
    chain=st.integers(min_value=0, max_value=6),
    breaks=st.frozensets(st.sampled_from(["str", "notes", "group"])),
    cycle=st.booleans(),
    shape=st.sampled_from(["function", "coroutine", "generator", "context manager"]),
)
def test_any_exception_reaches_the_caller_unchanged_and_fails_its_span_within_bounds(
    piece: str, repeat: int, depth: int, chain: int, breaks: frozenset[str], cycle: bool, shape: str
) -> None:
    raised = build(piece * repeat, depth, chain, breaks, cycle)
    recorded = install_provider()
    try:

        @moduletrace.load_db_query
        def function(module_id: str) -> None:
            raise raised

        @moduletrace.load_db_query
        async def coroutine(module_id: str) -> None:
            raise raised

        @moduletrace.load_db_query
        def generator(module_id: str):  # type: ignore[no-untyped-def]
            yield 1
            raise raised

        started = time.perf_counter()
        with pytest.raises(BaseException) as caught:
            if shape == "function":
                function("m-53")
            elif shape == "coroutine":
                # Driven by hand: asyncio.run would time its own repr of the huge exception.
                coroutine("m-53").send(None)
            elif shape == "generator":
                list(generator("m-53"))
            else:
                with moduletrace.load_db_query("m-53"):
                    raise raised
        elapsed = time.perf_counter() - started
        assert caught.value is raised
        span = recorded.one("module_load_db_query")
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"]
        (event,) = span.events
        assert event.name == "exception"
        assert len(span.status.description or "") <= MAX_MESSAGE
        assert len(str(event.attributes["exception.message"])) <= MAX_MESSAGE  # type: ignore[index]
        assert len(str(event.attributes["exception.stacktrace"])) <= MAX_STACKTRACE  # type: ignore[index]
        assert elapsed < 1.0, f"{elapsed:.2f} s"
        assert not trace.get_current_span().is_recording()
    finally:
        recorded.provider.shutdown()
        reset_trace_globals()
