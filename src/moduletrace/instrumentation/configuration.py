"""``configure()``: tracing and metrics for a service in one call at start-up, and a bounded flush at exit.

It follows the standard ``OTEL_*`` variables (the OTLP exporters read endpoint, headers and
timeout themselves), never replaces a TracerProvider or MeterProvider that the service already
installed (it only adds what is missing to the first, and uses the second as it is), installs the
httpx instrumentation so ``traceparent`` crosses service hops, and replaces the SDK's exit hooks,
which can block a process for 30 s when the collector is down, with a flush bounded by
``exit_timeout``.

That flush also runs where ``atexit`` never does: on SIGTERM (a chained handler that always
hands the signal on to the host's own handler, see :mod:`~moduletrace.instrumentation.exit_hooks`)
and in the hosts' own shutdown hooks (uvicorn's server shutdown, Celery's worker-process shutdown,
:mod:`~moduletrace.instrumentation.integrations`). It flushes the provider in use, also when the
service or the ``opentelemetry-instrument`` agent installed it. The MeterProvider in use is flushed
in the same bound, beside the spans, so the last metrics before a process ends reach the collector.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.util.types import AttributeValue

from moduletrace.instrumentation import _exporters, exit_hooks
from moduletrace.instrumentation._exporters import METRICS, TRACES
from moduletrace.instrumentation._guard import internal_error, logger, warn_once
from moduletrace.instrumentation.file_exporter import OTLPJsonFileExporter, OTLPJsonMetricFileExporter

# Re-entrant: the SIGTERM handler may run shutdown() in the main thread while it is inside configure().
_lock = threading.RLock()


@dataclass
class _Configured:
    """What configure() set up, for shutdown(), flush() and the exit hooks."""

    provider: TracerProvider | None = None  # the SDK TracerProvider in use (ours or the service's / the agent's)
    owned: bool = False  # configure() installed it
    processors: list[SpanProcessor] = field(default_factory=list)  # what configure() added to it
    exit_timeout: float = 5.0
    stops_provider: bool = False  # we took over the provider's own exit hook, so we stop it at exit
    meter_provider: MeterProvider | None = None  # the SDK MeterProvider in use (ours or the service's)
    readers: list[MetricReader] = field(default_factory=list)  # what configure() added to the service's
    stops_meter_provider: bool = False  # configure() installed it, or took over its exit hook

    def update(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    def forget_pipelines(self) -> None:
        """Forget the providers and what configure() added to them (exit_timeout stays)."""
        self.update(provider=None, owned=False, processors=[], stops_provider=False)
        self.update(meter_provider=None, readers=[], stops_meter_provider=False)


_state = _Configured()
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
    metrics_file: str | os.PathLike[str] | None = None,
) -> TracerProvider | None:
    """Set up tracing and metrics for this process and return the SDK TracerProvider in use.

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
        exit_timeout: seconds any exit flush may take: at exit, on SIGTERM (the handler chained in
            front of the host's own), at the end of a uvicorn server's shutdown, in Celery's
            worker shutdown signals; also when the service or an agent installed the provider.
        metrics_file: also write metrics to this OTLP JSON lines file (one ``{"resourceMetrics":
            [...]}`` line per export, as the collector archives them); ``MODULETRACE_METRICS_FILE``
            does the same. A file of its own: ``races --file`` reads spans only.

    Metrics (the pool helpers' ``db.client.connection.*``) follow ``OTEL_METRICS_EXPORTER``
    (``otlp``, ``console``, ``none``) and ``OTEL_METRIC_EXPORT_INTERVAL`` (60 s by default), with
    the tracer provider's resource. A MeterProvider the service (or the agent) installed is used as
    it is; with none, and nothing to export metrics to, none is installed.

    Returns None when ``OTEL_SDK_DISABLED=true`` or another SDK (not OpenTelemetry's) is installed.
    Calling it again returns the provider of the first call.
    """
    try:
        with _lock:
            return _configure(
                service_name, file, endpoint, headers, resource_attributes, instrument_httpx, exit_timeout, metrics_file
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
    metrics_file: str | os.PathLike[str] | None,
) -> TracerProvider | None:
    if _state.provider is not None:
        logger.info("moduletrace: configure() was already called; keeping the first configuration")
        return _state.provider
    if instrument_httpx:
        _instrument_httpx()
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        logger.info("moduletrace: OTEL_SDK_DISABLED=true, tracing stays off")
        return None
    file = file or os.environ.get("MODULETRACE_FILE") or None
    metrics_file = metrics_file or os.environ.get("MODULETRACE_METRICS_FILE") or None
    has_file = file is not None or metrics_file is not None
    _state.exit_timeout = exit_timeout
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        # The service (or the opentelemetry-instrument agent) owns its provider: add only what it
        # lacks, touch nothing else, and say what of this call could not be applied.
        processors = []
        if file is not None:
            processors.append(BatchSpanProcessor(OTLPJsonFileExporter(file)))
        lacks_exporter = not _has_processors(existing)
        if lacks_exporter and not processors:
            processors = [BatchSpanProcessor(e) for e in _span_exporters(None, False, endpoint, headers)]
        used_endpoint = lacks_exporter and file is None
        _warn_ignored(existing, service_name, resource_attributes, endpoint, headers, used_endpoint=used_endpoint)
        _complete_resource(existing)
        _watch_exporters(existing)
        for processor in processors:
            existing.add_span_processor(processor)
        # The provider's own exit hook (shutdown_on_exit=True) waits as long as its exporters
        # retry; ours does the same work bounded by exit_timeout.
        stops_provider = _take_over_exit_hook(existing)
        _state.update(provider=existing, owned=False, processors=processors, stops_provider=stops_provider)
        _configure_metrics(existing, metrics_file, has_file, endpoint, headers)
        exit_hooks.install(_flush_at_exit, _flush_on_signal)
        return existing
    if not isinstance(existing, trace.ProxyTracerProvider):
        warn_once(
            "foreign-provider",
            "moduletrace: a non-SDK TracerProvider (%s) is installed; using it as is",
            type(existing).__name__,
        )
        return None
    provider = TracerProvider(resource=_resource(service_name, resource_attributes), shutdown_on_exit=False)
    _refresh_pid_after_fork(provider)
    _watch_exporters(provider)
    processors = [BatchSpanProcessor(e) for e in _span_exporters(file, has_file, endpoint, headers)]
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _state.update(provider=provider, owned=True, processors=processors, stops_provider=True)
    _configure_metrics(provider, metrics_file, has_file, endpoint, headers)
    exit_hooks.install(_flush_at_exit, _flush_on_signal)
    return provider


def _configure_metrics(
    tracer_provider: TracerProvider,
    file: str | os.PathLike[str] | None,
    has_file: bool,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
) -> None:
    """Use the service's MeterProvider, or install one exporting like the tracer provider does."""
    existing = metrics.get_meter_provider()
    if isinstance(existing, MeterProvider):
        # The service's (or the agent's): used as it is; only a file asked for in code is added.
        readers: list[MetricReader] = []
        if file is not None:
            if callable(getattr(existing, "add_metric_reader", None)):
                readers.append(PeriodicExportingMetricReader(OTLPJsonMetricFileExporter(file)))
                existing.add_metric_reader(readers[0])
            else:
                warn_once(
                    "metrics-file",
                    "moduletrace: this SDK cannot add a reader to the MeterProvider in use; metrics_file=%r ignored",
                    os.fspath(file),
                )
        stops = _take_over_exit_hook(existing)
        _state.update(meter_provider=existing, readers=readers, stops_meter_provider=stops)
        return
    if isinstance(existing, NoOpMeterProvider) or not type(existing).__module__.startswith("opentelemetry.metrics"):
        return  # a no-op or another SDK's MeterProvider was set on purpose (not the API's proxy): not ours
    exporters: list[Any] = [OTLPJsonMetricFileExporter(file)] if file is not None else []
    names = _exporters.exporter_names(METRICS, endpoint, has_file)
    exporters += _exporters.exporters(METRICS, names, endpoint, headers)
    if not exporters:
        return  # nothing to export to (OTEL_METRICS_EXPORTER=none): the pool helpers stay at no-SDK cost
    # The interval and timeout come from OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT (the reader reads them).
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(e) for e in exporters],
        resource=tracer_provider.resource,
        shutdown_on_exit=False,
    )
    _follow_process_after_fork(provider, tracer_provider)
    metrics.set_meter_provider(provider)
    _state.update(meter_provider=provider, readers=[], stops_meter_provider=True)


def shutdown(timeout: float = 5.0) -> bool:
    """Flush the spans and metrics of the providers in use and stop them, waiting at most ``timeout`` seconds.

    The providers are flushed whoever installed them (configure(), the service, or the
    ``opentelemetry-instrument`` agent). Each is stopped when configure() installed it, or took over
    its exit hook (a provider created with the default ``shutdown_on_exit=True``); otherwise only
    what configure() added to it is stopped. Call it last, on the way out: spans started after it
    are not exported.

    Returns True when everything was flushed in time. The SDK's own ``force_flush`` ignores its
    timeout (opentelemetry-python #4568), so each flush runs in a daemon thread that is abandoned,
    not waited for, when the time is up: the process can always exit.
    """
    with _lock:
        provider, meter_provider = _state.provider, _state.meter_provider
        processors, readers = list(_state.processors), list(_state.readers)
        stops_provider, stops_meter_provider = _state.stops_provider, _state.stops_meter_provider
        _state.forget_pipelines()
    work: dict[str, Any] = {}
    if provider is not None:

        def stop_spans() -> None:
            _flush_spans(provider)
            for target in [provider] if stops_provider else processors:
                try:
                    target.shutdown()
                except Exception as exc:  # noqa: BLE001
                    logger.warning("moduletrace: stopping the span pipeline failed: %s", exc)

        work["spans"] = stop_spans
    if meter_provider is not None:
        work["metrics"] = lambda: _stop_metrics(meter_provider, stops_meter_provider, readers, timeout)
    return _bounded(work, timeout)


def _stop_metrics(provider: MeterProvider, stops_provider: bool, readers: list[MetricReader], timeout: float) -> None:
    millis = timeout * 1000
    # A reader added to a running provider is not among those its shutdown() and force_flush()
    # visit (SDK 1.45): it is stopped here, and collects and exports one last time as it stops.
    for reader in readers:
        _run_metrics(lambda reader=reader: reader.shutdown(timeout_millis=millis))
    if stops_provider:
        _run_metrics(lambda: provider.shutdown(timeout_millis=millis))  # each reader exports one last time
    else:
        _run_metrics(lambda: provider.force_flush(timeout_millis=millis))


def _flush_metrics(provider: MeterProvider, readers: list[MetricReader], timeout: float) -> None:
    millis = timeout * 1000
    for reader in readers:
        _run_metrics(lambda reader=reader: reader.force_flush(timeout_millis=millis))
    _run_metrics(lambda: provider.force_flush(timeout_millis=millis))


def _run_metrics(step: Any) -> None:
    try:
        step()
    except Exception as exc:  # noqa: BLE001
        logger.warning("moduletrace: flushing metrics failed: %s", exc)


def flush(timeout: float = 5.0) -> bool:
    """Export the spans and metrics the providers in use still hold, waiting at most ``timeout`` seconds.

    For a host's shutdown hook after which the process may still record spans (an ASGI lifespan
    shutdown, a worker hook); the pipelines keep running. Returns True when flushed in time.
    """
    return _flush(timeout, "going on; the export continues in the background")


def _flush(timeout: float, then: str) -> bool:
    work: dict[str, Any] = {}
    tracer_provider = _state.provider or trace.get_tracer_provider()
    if isinstance(tracer_provider, TracerProvider):
        work["spans"] = lambda: _flush_spans(tracer_provider)
    meter_provider = _state.meter_provider or metrics.get_meter_provider()
    if isinstance(meter_provider, MeterProvider):
        readers = list(_state.readers)
        work["metrics"] = lambda: _flush_metrics(meter_provider, readers, timeout)
    return _bounded(work, timeout, then)


def _flush_spans(provider: TracerProvider) -> None:
    try:
        provider.force_flush()
    except Exception as exc:  # noqa: BLE001
        logger.warning("moduletrace: flushing spans failed: %s", exc)


def exit_timeout() -> float:
    """The ``exit_timeout`` given to configure() (5 s by default): the bound of every exit flush."""
    return float(_state.exit_timeout)


def _bounded(work: Mapping[str, Any], timeout: float, then: str = "exiting anyway") -> bool:
    """Run each piece of work in its own daemon thread (spans and metrics side by side: one stuck
    export does not starve the other), all within one ``timeout``."""
    workers = {
        what: threading.Thread(target=run, name=f"moduletrace-flush-{what}", daemon=True) for what, run in work.items()
    }
    for worker in workers.values():
        worker.start()
    deadline = time.monotonic() + timeout
    for worker in workers.values():
        worker.join(max(0.0, deadline - time.monotonic()))
    late = [what for what, worker in workers.items() if worker.is_alive()]
    if late:
        logger.warning(
            "moduletrace: %s not flushed within %.1f s (is the collector down?); %s", " and ".join(late), timeout, then
        )
        return False
    return True


def _flush_at_exit() -> None:
    shutdown(_state.exit_timeout)


def _flush_on_signal() -> None:
    _flush(_state.exit_timeout, "the signal takes its course")


def _take_over_exit_hook(provider: TracerProvider | MeterProvider) -> bool:
    """Replace the provider's own unbounded atexit hook with ours; True when there was one."""
    if getattr(provider, "_atexit_handler", None) is None:
        return False
    atexit.unregister(provider.shutdown)
    provider._atexit_handler = None
    return True


# ---------------------------------------------------------------------------------------------
# A provider configure() does not own: say what could not be applied, add what clocks need.
# ---------------------------------------------------------------------------------------------


def _warn_ignored(
    provider: TracerProvider,
    service_name: str | None,
    resource_attributes: Mapping[str, AttributeValue] | None,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    used_endpoint: bool,
) -> None:
    attributes = provider.resource.attributes
    ignored: list[str] = []
    if service_name and attributes.get("service.name") != service_name:
        ignored.append(
            f"service_name={service_name!r} (the provider's service.name is {attributes.get('service.name')!r}: "
            "it comes from OTEL_SERVICE_NAME)"
        )
    if resource_attributes:
        differing = sorted(k for k, v in resource_attributes.items() if attributes.get(k) != v)
        if differing:
            ignored.append(f"resource_attributes {', '.join(differing)} (set OTEL_RESOURCE_ATTRIBUTES)")
    if not used_endpoint:
        if endpoint:
            ignored.append(f"endpoint={endpoint!r} (set OTEL_EXPORTER_OTLP_ENDPOINT)")
        if headers:
            ignored.append("headers (set OTEL_EXPORTER_OTLP_HEADERS)")
    if ignored:
        warn_once(
            "ignored-by-foreign-provider",
            "moduletrace: the TracerProvider in use was installed by %s, not by configure(): its resource and "
            "exporters stay as they are; ignored: %s",
            _installer(provider),
            "; ".join(ignored),
        )


def _installer(provider: TracerProvider) -> str:
    if "opentelemetry.instrumentation.auto_instrumentation" in sys.modules:
        return "the opentelemetry-instrument agent"
    return f"the service ({type(provider).__module__}.{type(provider).__qualname__})"


#: What the race rule needs to tell that two spans share a clock, and the SDK resource detector
#: (OTEL_EXPERIMENTAL_RESOURCE_DETECTORS) that sets each under a provider we do not own.
_CLOCK_ATTRIBUTES: dict[str, str] = {
    "service.instance.id": "service_instance",
    "host.name": "host",
    "process.pid": "process",
}


def _complete_resource(provider: TracerProvider) -> None:
    """Add the clock attributes the provider's resource lacks; never change one it has."""
    attributes = provider.resource.attributes
    missing = {key: value for key, value in _clock_attributes().items() if key not in attributes}
    if not missing:
        return
    update = getattr(provider, "_update_resource", None)
    if callable(update):
        update(Resource(missing))
        _refresh_pid_after_fork(provider)
        warn_once(
            "completed-resource",
            "moduletrace: added %s to the resource of %s so the race rule can tell spans of one process or "
            "host apart; %s",
            ", ".join(sorted(missing)),
            _installer(provider),
            _detectors_advice(missing),
        )
    else:
        warn_once(
            "incomplete-resource",
            "moduletrace: the resource of %s lacks %s: the race rule cannot tell which spans share a clock; %s",
            _installer(provider),
            ", ".join(sorted(missing)),
            _detectors_advice(missing),
        )


def _detectors_advice(missing: Mapping[str, object]) -> str:
    """Which OTEL_EXPERIMENTAL_RESOURCE_DETECTORS value sets ``missing`` with the SDK installed here."""
    try:
        from importlib.metadata import entry_points

        offered = set(entry_points(group="opentelemetry_resource_detector").names)
    except Exception:  # noqa: BLE001 - advice only
        offered = set()
    wanted = sorted({_CLOCK_ATTRIBUTES[key] for key in missing})
    available = [name for name in wanted if name in offered]
    absent = [name for name in wanted if name not in offered]
    advice = []
    if available:
        advice.append(f"OTEL_EXPERIMENTAL_RESOURCE_DETECTORS={','.join(['otel', *available])} sets them at the source")
    if absent:
        advice.append(f"this SDK has no {'/'.join(absent)} resource detector: set them in OTEL_RESOURCE_ATTRIBUTES")
    return "; ".join(advice)


def _clock_attributes() -> dict[str, AttributeValue]:
    return {"service.instance.id": str(uuid.uuid4()), "host.name": socket.gethostname(), "process.pid": os.getpid()}


def _refresh_pid_after_fork(provider: TracerProvider) -> None:
    # A pre-forking host (gunicorn --preload, Celery prefork) runs configure() in the parent: each
    # child must still name its own process. The SDK refreshes service.instance.id, not the pid.
    def after_in_child() -> None:
        try:
            if provider.resource.attributes.get("process.pid") is not None:
                provider._update_resource(Resource({"process.pid": os.getpid()}))
        except Exception as exc:  # noqa: BLE001
            internal_error("fork", exc)

    if hasattr(os, "register_at_fork") and callable(getattr(provider, "_update_resource", None)):
        os.register_at_fork(after_in_child=after_in_child)


def _follow_process_after_fork(meter_provider: MeterProvider, tracer_provider: TracerProvider) -> None:
    # Each forked child must export its own series (cumulative sums of two processes under one
    # identity would be garbage): it takes the process attributes the tracer provider has just
    # renewed (its own hook and _refresh_pid_after_fork's, registered earlier, run first).
    def after_in_child() -> None:
        try:
            attributes = tracer_provider.resource.attributes
            renewed = {k: attributes[k] for k in ("service.instance.id", "process.pid") if k in attributes}
            meter_provider._update_resource(Resource(renewed))
        except Exception as exc:  # noqa: BLE001
            internal_error("fork", exc)

    if hasattr(os, "register_at_fork") and callable(getattr(meter_provider, "_update_resource", None)):
        os.register_at_fork(after_in_child=after_in_child)


# ---------------------------------------------------------------------------------------------
# A second exporter to the same destination (FastAPI's FASTAPI_OTEL_AUTO_CONFIGURE, a second
# configuration call): every span would be exported twice. Say so, once, naming who added it.
# ---------------------------------------------------------------------------------------------


def _watch_exporters(provider: TracerProvider) -> None:
    if getattr(provider.add_span_processor, "_moduletrace_watch", False):
        return
    original = provider.add_span_processor

    def add_span_processor(span_processor: Any) -> None:
        try:
            _check_duplicate(provider, span_processor)
        except Exception as exc:  # noqa: BLE001
            internal_error("watch exporters", exc)
        original(span_processor)

    add_span_processor._moduletrace_watch = True  # type: ignore[attr-defined]
    provider.add_span_processor = add_span_processor  # type: ignore[method-assign]
    try:
        existing = _processors(provider)
        for index, processor in enumerate(existing):
            for earlier in existing[:index]:
                if _same_destination(earlier, processor):
                    _warn_duplicate(provider, _destination(processor), "it was configured that way")
    except Exception as exc:  # noqa: BLE001
        internal_error("watch exporters", exc)


def _check_duplicate(provider: TracerProvider, new: Any) -> None:
    for processor in _processors(provider):
        if _same_destination(processor, new):
            _warn_duplicate(provider, _destination(new), f"{_caller()} added it")
            return


def _warn_duplicate(provider: TracerProvider, destination: str | None, who: str) -> None:
    warn_once(
        "second-exporter",
        "moduletrace: a second exporter to %s was added to the TracerProvider in use (%s): every span is "
        "exported twice. With FastAPI set FASTAPI_OTEL_AUTO_CONFIGURE=false or FastAPI(telemetry="
        "{'auto_configure': False}) and let configure() export",
        destination,
        who,
    )


def _caller() -> str:
    frame = sys._getframe(3)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(("opentelemetry.sdk", __name__)):
        frame = frame.f_back  # type: ignore[assignment]
    return str(frame.f_globals.get("__name__", "?")) if frame is not None else "?"


def _processors(provider: TracerProvider) -> list[Any]:
    multi = getattr(provider, "_active_span_processor", None)
    return list(getattr(multi, "_span_processors", ()))


def _destination(processor: Any) -> str | None:
    exporter = getattr(processor, "span_exporter", None)
    if exporter is None:
        return None
    for attribute in ("_endpoint", "path"):
        value = getattr(exporter, attribute, None)
        if isinstance(value, str) and value:
            return f"{value}"
    if type(exporter).__name__ == "ConsoleSpanExporter":
        return "the console"
    return None


def _same_destination(a: Any, b: Any) -> bool:
    destination = _destination(a)
    return destination is not None and destination == _destination(b)


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
    # process (service.instance.id) or the same host (host.name). Make sure both are present;
    # the SDK's own service.instance.id detector, where it has one, renews the id in a forked child.
    for key, value in _clock_attributes().items():
        if key == "service.instance.id" and "service.instance.id" in Resource.create({}).attributes:
            continue
        attributes.setdefault(key, value)
    return Resource.create(attributes)


def _span_exporters(
    file: str | os.PathLike[str] | None, has_file: bool, endpoint: str | None, headers: Mapping[str, str] | None
) -> list[SpanExporter]:
    exporters: list[SpanExporter] = [OTLPJsonFileExporter(file)] if file is not None else []
    names = _exporters.exporter_names(TRACES, endpoint, has_file)
    return exporters + _exporters.exporters(TRACES, names, endpoint, headers)


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
    """Forget the configuration (tests only; the OpenTelemetry globals are reset separately)."""
    for processor in _state.processors:
        processor.shutdown()
    if _state.meter_provider is not None:
        _stop_metrics(_state.meter_provider, _state.stops_meter_provider, _state.readers, 5.0)
    _state.forget_pipelines()
    exit_hooks.uninstall()
