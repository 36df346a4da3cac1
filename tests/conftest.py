"""Shared fixtures: a fresh in-memory SDK per test, and internal errors that fail tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.util._once import Once

from moduletrace.instrumentation import _guard, pool_metrics
from tests.support.postgres import PostgresServer, running_postgres


def reset_trace_globals() -> None:
    """Let a test install its own global TracerProvider (OpenTelemetry's test utilities do the same)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--generic-decoder",
        action="store_true",
        help="read files with the generic OTLP JSON decoder only, as where msgspec is not installed",
    )


@pytest.fixture(autouse=True)
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which decoder reads OTLP JSON files in this run: "typed" (msgspec), or "generic" (--generic-decoder)."""
    if request.config.getoption("--generic-decoder"):
        from moduletrace.sources import file as file_source

        monkeypatch.setattr(file_source, "_LineDecoder", None)
        return "generic"
    return "typed"


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session, started on first use."""
    with running_postgres() as server:
        yield server


def reset_metrics_globals() -> None:
    """Let a test install its own global MeterProvider (as reset_trace_globals does for tracing)."""
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


class Measured:
    """The metrics a test produced, collected on demand (cumulative: each read sees all so far)."""

    def __init__(self, reader: InMemoryMetricReader, provider: MeterProvider) -> None:
        self.reader = reader
        self.provider = provider

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` now (``[]`` when it has none)."""
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def point(self, name: str, attributes: dict[str, Any]) -> Any:
        """The one data point of ``name`` whose attributes are exactly ``attributes``."""
        found = [p for p in self.points(name) if dict(p.attributes) == attributes]
        assert len(found) == 1, f"expected one {name} point with {attributes}, got {self.points(name)}"
        return found[0]


def install_meter_provider(**options: Any) -> Measured:
    reset_metrics_globals()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], **options)
    metrics_internal.set_meter_provider(provider)
    return Measured(reader, provider)


@pytest.fixture
def measured() -> Iterator[Measured]:
    pool_metrics._reset_for_tests()
    installed = install_meter_provider(shutdown_on_exit=False)
    yield installed
    installed.provider.shutdown()
    reset_metrics_globals()
    pool_metrics._reset_for_tests()


# --- no secret in any exported span, in the whole suite ---------------------------------

import json as _json  # noqa: E402
import re as _re  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

from moduletrace.instrumentation.file_exporter import OTLPJsonFileExporter, encode_spans  # noqa: E402

#: What a leaked secret looks like in a span: the test suite's own secrets, credentials in URLs
#: (also with an `@` or `/` in the password), bearer/basic/token credentials and Authorization
#: headers, password=... and 'password': '...', AWS access key ids and secret keys, GitHub tokens,
#: JSON Web Tokens, cookies. Each pattern can only start at the beginning of a run of its
#: characters and has bounded repetitions, so the scan stays linear on huge spans.
SECRET_PATTERNS = [
    _re.compile(r"hunter2|s3cr3t"),
    _re.compile(r"(?<![\w+.-])[a-z][\w+.-]{0,31}://[^/\s:@\"]{0,128}:(?!\*\*\*@)[^\s\"'<>]{1,256}@", _re.IGNORECASE),
    _re.compile(r"(?<![\w-])(?:bearer|basic)\s+(?!\*\*\*)[A-Za-z0-9._~+/=-]{6,}", _re.IGNORECASE),
    _re.compile(
        r"(?<![\w.-])authorization(?:\\?['\"])?\s{0,8}[=:]\s{0,8}(?:\\?['\"])?(?:(?:bearer|basic|token)\s{1,8})?"
        r"(?!\*\*\*|(?:bearer|basic|token)\s)[^\s'\",;\\]{3,}",
        _re.IGNORECASE,
    ),
    _re.compile(
        r"(?:password|passwd|pwd)(?:\\?['\"])?\s{0,8}[=:]\s{0,8}(?:\\?['\"])?(?!\*\*\*)[^\s,;&\"'\\]+", _re.IGNORECASE
    ),
    _re.compile(
        r"secret_?access_?key(?:\\?['\"])?\s{0,8}[=:]\s{0,8}(?:\\?['\"])?(?!\*\*\*)[A-Za-z0-9/+=]{8,}", _re.IGNORECASE
    ),
    _re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    _re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,})"),
    _re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    _re.compile(r"(?<!\w)cookie\s{0,8}[=:]\s{0,8}(?!\*\*\*)\S+", _re.IGNORECASE),
]


def find_secrets(text: str) -> list[str]:
    return [m.group(0) for pattern in SECRET_PATTERNS for m in pattern.finditer(text)]


_exported: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _record_exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every span any exporter in this process exports is kept (as OTLP JSON) for the secret scan."""
    originals = (InMemorySpanExporter.export, OTLPJsonFileExporter.export)

    def in_memory(self, spans):  # type: ignore[no-untyped-def]
        _exported.append(_json.dumps(encode_spans(spans)))
        return originals[0](self, spans)

    def to_file(self, spans):  # type: ignore[no-untyped-def]
        _exported.append(_json.dumps(encode_spans(spans)))
        return originals[1](self, spans)

    InMemorySpanExporter.export = in_memory  # type: ignore[method-assign]
    OTLPJsonFileExporter.export = to_file  # type: ignore[method-assign]
    yield
    InMemorySpanExporter.export, OTLPJsonFileExporter.export = originals  # type: ignore[method-assign]
    # Span files written by every process of the run (services, collectors, demos), wherever they are.
    files = [p for p in tmp_path_factory.getbasetemp().rglob("*.jsonl") if p.is_file()]
    leaks = sorted({leak for p in files for leak in find_secrets(p.read_text(errors="replace"))})
    assert not leaks, f"secrets in span files of this run: {leaks}"


@pytest.fixture(autouse=True)
def no_secret_in_exported_spans(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test whose spans (in this process, or in span files its processes wrote) carry a secret."""
    start = len(_exported)
    directory: _Path | None = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    texts = _exported[start:]
    if directory is not None:
        texts += [p.read_text(errors="replace") for p in directory.rglob("*.jsonl") if p.is_file()]
    leaks = sorted({leak for text in texts for leak in find_secrets(text)})
    assert not leaks, f"secrets in exported spans: {leaks}"
