"""The exporters configure() builds for each signal, from the standard ``OTEL_*`` variables.

Traces and metrics follow one rule: ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` name the
exporters (``otlp`` by default, ``console``, ``none``); OTLP goes over HTTP (``http/protobuf``)
unless ``OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL=grpc`` and the grpc extra is installed. The OTLP
exporters read endpoint, headers, timeout (and, for metrics, temporality) from the environment
themselves; only what configure() was given in code is passed.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moduletrace.instrumentation._guard import warn_once


@dataclass(frozen=True)
class Signal:
    """What differs between the traces and the metrics exporters."""

    name: str  # as in OTEL_EXPORTER_OTLP_{NAME}_ENDPOINT
    path: str  # the OTLP/HTTP path appended to a base endpoint
    module: str  # opentelemetry.exporter.otlp.proto.{http,grpc}.<module>
    otlp_class: str
    what: str  # what is lost when no exporter can be made, for the warning


TRACES = Signal("traces", "/v1/traces", "trace_exporter", "OTLPSpanExporter", "spans")
METRICS = Signal("metrics", "/v1/metrics", "metric_exporter", "OTLPMetricExporter", "metrics")
_PATHS = (TRACES.path, METRICS.path)


def exporter_names(signal: Signal, endpoint: str | None, has_file: bool) -> list[str]:
    """``OTEL_{SIGNAL}_EXPORTER`` as a list (default ``otlp``).

    With a file (the embedded default) and no OTLP destination named anywhere for the signal, none:
    no retry noise towards a collector that is not there.
    """
    variable = os.environ.get(f"OTEL_{signal.name.upper()}_EXPORTER")
    otlp_configured = bool(
        endpoint
        or variable
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.name.upper()}_ENDPOINT")
    )
    if has_file and not otlp_configured:
        return []
    return [n.strip().lower() for n in (variable or "otlp").split(",") if n.strip()]


def exporters(signal: Signal, names: list[str], endpoint: str | None, headers: Mapping[str, str] | None) -> list[Any]:
    """The exporters ``names`` ask for; unknown names and a missing grpc extra are warned about once."""
    made: list[Any] = []
    for name in names:
        if name == "otlp":
            exporter = otlp_exporter(signal, endpoint, headers)
            if exporter is not None:
                made.append(exporter)
        elif name == "console":
            made.append(_console(signal))
        elif name != "none":
            variable = f"OTEL_{signal.name.upper()}_EXPORTER"
            warn_once(f"exporter:{signal.name}:{name}", "moduletrace: %s=%s is not supported; ignored", variable, name)
    return made


def otlp_exporter(signal: Signal, endpoint: str | None, headers: Mapping[str, str] | None) -> Any:
    protocol = (
        (
            os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.name.upper()}_PROTOCOL")
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
            module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{signal.module}")
        except ImportError:
            warn_once(
                f"grpc:{signal.name}",
                "moduletrace: OTLP protocol grpc (OTEL_EXPORTER_OTLP_PROTOCOL; the opentelemetry-instrument agent's "
                "default) needs `pip install 'moduletrace[grpc]'`, or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf; "
                "%s are not sent over OTLP (a file= still gets them)",
                signal.what,
            )
            return None
        if endpoint:
            kwargs["endpoint"] = endpoint
        return getattr(module, signal.otlp_class)(**kwargs)
    if protocol != "http/protobuf":
        warn_once(
            f"protocol:{protocol}", "moduletrace: OTLP protocol %r is not supported; using http/protobuf", protocol
        )
    module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{signal.module}")
    if endpoint:
        kwargs["endpoint"] = http_endpoint(signal, endpoint)
    return getattr(module, signal.otlp_class)(**kwargs)


def http_endpoint(signal: Signal, endpoint: str) -> str:
    """The signal's URL for a base URL (a URL already ending in a signal's path names the base too)."""
    base = endpoint.rstrip("/")
    for path in _PATHS:
        if base.endswith(path):
            base = base[: -len(path)]
    return base + signal.path


def _console(signal: Signal) -> Any:
    if signal is METRICS:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter()
