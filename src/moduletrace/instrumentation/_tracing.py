"""moduletrace's tracer, or ``None`` when nothing would be recorded: the "tracing off" check.

Resolved per call from the global provider, cached by the provider's identity so a service may
configure tracing after decorating at import time (as OpenTelemetry's ProxyTracer allows), and
so the "tracing off" check is one call and one ``is``.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import NoOpTracer

from moduletrace._version import __version__
from moduletrace.instrumentation._guard import internal_error
from moduletrace.instrumentation.sampling import LifecycleSampler

_NEVER: object = object()


class _State:
    """(the global provider as last seen, its moduletrace tracer or None), in one slot: the
    tuple is replaced whole, so a thread never sees a provider with another provider's tracer."""

    __slots__ = ("cache",)

    def __init__(self) -> None:
        self.cache: tuple[object, trace.Tracer | None] = (_NEVER, None)


STATE = _State()


def current_tracer() -> trace.Tracer | None:
    """The tracer to start lifecycle spans with, or ``None`` when tracing is off."""
    provider = trace.get_tracer_provider()
    cached = STATE.cache
    if provider is cached[0]:
        return cached[1]
    return _refresh(provider)


def _refresh(provider: trace.TracerProvider) -> trace.Tracer | None:
    """Work out the tracer for a provider seen for the first time (rare: once per provider)."""
    tracer: trace.Tracer | None
    try:
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            tracer = None  # no SDK: nothing would be recorded, skip the span machinery
        else:
            tracer = provider.get_tracer("moduletrace", __version__)
            if isinstance(tracer, NoOpTracer):
                tracer = None  # OTEL_SDK_DISABLED=true
            else:
                sampler = getattr(tracer, "sampler", None)
                if sampler is not None and not isinstance(sampler, LifecycleSampler):
                    # Only moduletrace's own tracer: the service's other spans keep its sampling.
                    tracer.sampler = LifecycleSampler(sampler)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001
        internal_error("tracer", exc)
        tracer = None
    STATE.cache = (provider, tracer)
    return tracer
