"""Shared fixtures: a fresh in-memory SDK per test, and internal errors that fail tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.util._once import Once

from moduletrace.instrumentation import _guard


def reset_trace_globals() -> None:
    """Let a test install its own global TracerProvider (OpenTelemetry's test utilities do the same)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def strict_internal_errors() -> Iterator[None]:
    """A moduletrace bug raises in our own tests instead of being logged and hidden."""
    _guard.STRICT = True
    _guard.reset_for_tests()
    yield
    _guard.STRICT = False


@pytest.fixture
def lenient() -> None:
    """For tests of the never-raise guarantee: internal errors are logged, as in production."""
    _guard.STRICT = False


class Recorded:
    """The spans a test produced, with look-ups by name."""

    def __init__(self, exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
        self.exporter = exporter
        self.provider = provider

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one {name}, got {[s.name for s in self.all()]}"
        return found[0]


def install_provider(sampler: Sampler | None = None) -> Recorded:
    reset_trace_globals()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return Recorded(exporter, provider)


@pytest.fixture
def spans() -> Iterator[Recorded]:
    recorded = install_provider()
    yield recorded
    recorded.provider.shutdown()
    reset_trace_globals()
