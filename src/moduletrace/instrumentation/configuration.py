"""``configure()``: tracing for a service in one call at start-up, and a bounded flush at exit.

It follows the standard ``OTEL_*`` variables (the OTLP exporter reads endpoint, headers and
timeout itself), never replaces a TracerProvider that the service already installed (it only adds
what is missing), installs the httpx instrumentation so ``traceparent`` crosses service hops,
and replaces the SDK's exit hook, which can block a process for 30 s when the collector is down,
with a flush bounded by ``exit_timeout``.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.util.types import AttributeValue

from moduletrace.instrumentation._guard import internal_error, logger, warn_once
from moduletrace.instrumentation.file_exporter import OTLPJsonFileExporter

_lock = threading.Lock()
_state: dict[str, Any] = {"provider": None, "owned": False, "processors": [], "exit_timeout": 5.0}
_TRUE = ("true", "1", "yes", "on")


def configure(
    *,
    service_name: str | None = None,
    file: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, AttributeValue] | None = None,
    instrument_httpx: bool = True,
    exit_timeout: float = 5.0,
) -> TracerProvider | None:
    """Set up tracing for this process and return the SDK TracerProvider in use.

    Args:
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``
            name one (the environment wins, so operators can rename without a code change).
        file: also write spans to this OTLP JSON lines file (the embedded default, read by
            ``moduletrace races --file``); ``MODULETRACE_FILE`` does the same. With a file and no
            OTLP endpoint configured anywhere, spans go to the file only.
        endpoint: OTLP base URL (as ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``/v1/traces`` is appended
            for HTTP). Default: the environment, else ``http://localhost:4318``.
        headers: OTLP headers (default: ``OTEL_EXPORTER_OTLP_HEADERS``); never logged.
        resource_attributes: extra resource attributes (``OTEL_RESOURCE_ATTRIBUTES`` wins).
        instrument_httpx: instrument httpx clients so ``traceparent`` crosses HTTP hops.
        exit_timeout: seconds the exit hook may spend flushing spans.

    Returns None when ``OTEL_SDK_DISABLED=true`` or another SDK (not OpenTelemetry's) is installed.
    Calling it again returns the provider of the first call.
    """
    try:
        with _lock:
            return _configure(
                service_name, file, endpoint, headers, resource_attributes, instrument_httpx, exit_timeout
            )
    except Exception as exc:  # noqa: BLE001 - a start-up helper must not stop the service
        internal_error("configure", exc)
        return None


def _configure(
    service_name: str | None,
    file: str | os.PathLike[str] | None,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    resource_attributes: Mapping[str, AttributeValue] | None,
    instrument_httpx: bool,
    exit_timeout: float,
) -> TracerProvider | None:
    if _state["provider"] is not None:
        logger.info("moduletrace: configure() was already called; keeping the first configuration")
        return _state["provider"]  # type: ignore[no-any-return]
    if instrument_httpx:
        _instrument_httpx()
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        logger.info("moduletrace: OTEL_SDK_DISABLED=true, tracing stays off")
        return None
    file = file or os.environ.get("MODULETRACE_FILE") or None
    _state["exit_timeout"] = exit_timeout
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        # The service owns its provider: add only what it lacks, touch nothing else.
        processors = []
        if file is not None:
            processors.append(BatchSpanProcessor(OTLPJsonFileExporter(file)))
        if not _has_processors(existing) and not processors:
            processors = [BatchSpanProcessor(e) for e in _exporters(None, endpoint, headers)]
        for processor in processors:
            existing.add_span_processor(processor)
        _state.update(provider=existing, owned=False, processors=processors)
        if processors:
            atexit.register(_flush_at_exit)
        return existing
    if not isinstance(existing, trace.ProxyTracerProvider):
        warn_once(
            "foreign-provider",
            "moduletrace: a non-SDK TracerProvider (%s) is installed; using it as is",
            type(existing).__name__,
        )
        return None
    provider = TracerProvider(resource=_resource(service_name, resource_attributes), shutdown_on_exit=False)
    processors = [BatchSpanProcessor(exporter) for exporter in _exporters(file, endpoint, headers)]
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _state.update(provider=provider, owned=True, processors=processors)
    atexit.register(_flush_at_exit)
    return provider


def shutdown(timeout: float = 5.0) -> bool:
    """Flush and stop what ``configure()`` installed, waiting at most ``timeout`` seconds.

    Returns True when everything was flushed in time. The SDK's own ``force_flush`` ignores its
    timeout (opentelemetry-python #4568), so the flush runs in a daemon thread that is abandoned,
    not waited for, when the time is up: the process can always exit.
    """
    provider = _state["provider"]
    if provider is None:
        return True
    targets: list[Any] = [provider] if _state["owned"] else list(_state["processors"])
    _state.update(provider=None, processors=[])

    def run() -> None:
        for target in targets:
            try:
                target.force_flush()
                target.shutdown()
            except Exception as exc:  # noqa: BLE001
                logger.warning("moduletrace: flushing spans failed: %s", exc)

    worker = threading.Thread(target=run, name="moduletrace-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        logger.warning("moduletrace: spans not flushed within %.1f s (is the collector down?); exiting anyway", timeout)
        return False
    return True


def _flush_at_exit() -> None:
    shutdown(_state["exit_timeout"])


def _has_processors(provider: TracerProvider) -> bool:
    multi = getattr(provider, "_active_span_processor", None)
    return bool(getattr(multi, "_span_processors", True))


def _resource(service_name: str | None, extra: Mapping[str, AttributeValue] | None) -> Resource:
    # The environment wins over the code, so operators can rename without a code change.
    attributes: dict[str, AttributeValue] = dict(extra or {})
    if service_name:
        attributes["service.name"] = service_name
    attributes.update(OTELResourceDetector().detect().attributes)
    # The race rule compares timestamps exactly only when two spans share a clock: the same
    # process (service.instance.id) or the same host (host.name). Make sure both are present.
    attributes.setdefault("service.instance.id", str(uuid.uuid4()))
    attributes.setdefault("host.name", socket.gethostname())
    return Resource.create(attributes)


def _exporters(
    file: str | os.PathLike[str] | None, endpoint: str | None, headers: Mapping[str, str] | None
) -> list[SpanExporter]:
    names_env = os.environ.get("OTEL_TRACES_EXPORTER")
    otlp_configured = bool(
        endpoint
        or names_env
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    names = [n.strip().lower() for n in (names_env or "otlp").split(",") if n.strip()]
    if file is not None and not otlp_configured:
        names = []  # the embedded default: a file, and no retry noise towards a collector that is not there
    exporters: list[SpanExporter] = []
    if file is not None:
        exporters.append(OTLPJsonFileExporter(file))
    for name in names:
        if name == "otlp":
            exporter = _otlp_exporter(endpoint, headers)
            if exporter is not None:
                exporters.append(exporter)
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            warn_once(f"exporter:{name}", "moduletrace: OTEL_TRACES_EXPORTER=%s is not supported; ignored", name)
    return exporters


def _otlp_exporter(endpoint: str | None, headers: Mapping[str, str] | None) -> SpanExporter | None:
    protocol = (
        (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        .strip()
        .lower()
    )
    kwargs: dict[str, Any] = {}
    if headers is not None:
        kwargs["headers"] = dict(headers)
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            warn_once(
                "grpc", "moduletrace: OTLP protocol grpc needs `pip install moduletrace[grpc]`; spans are not exported"
            )
            return None
        if endpoint:
            kwargs["endpoint"] = endpoint
        return GrpcExporter(**kwargs)  # type: ignore[no-any-return]
    if protocol != "http/protobuf":
        warn_once(
            f"protocol:{protocol}", "moduletrace: OTLP protocol %r is not supported; using http/protobuf", protocol
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint:
        kwargs["endpoint"] = (
            endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
        )
    return OTLPSpanExporter(**kwargs)


def _instrument_httpx() -> None:
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    except ImportError:  # pragma: no cover - a declared dependency
        return
    from moduletrace.instrumentation.evidence import httpx_response_hook

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        # No tracer_provider: it resolves the global one per span, so it follows a later setup.
        # The hook records a 401/403's WWW-Authenticate error code (evidence for `diagnose`).
        instrumentor.instrument(response_hook=httpx_response_hook, async_response_hook=_async_hook)


async def _async_hook(span: Any, request: Any, response: Any) -> None:
    from moduletrace.instrumentation.evidence import httpx_response_hook

    httpx_response_hook(span, request, response)


def _reset_for_tests() -> None:
    """Forget the configuration (tests only; the OpenTelemetry global is reset separately)."""
    for processor in _state["processors"]:
        processor.shutdown()
    _state.update(provider=None, owned=False, processors=[])
    atexit.unregister(_flush_at_exit)
