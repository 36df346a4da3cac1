"""moduletrace's tracer, or ``None`` when nothing would be recorded: the "tracing off" check.

Resolved on every call from the API's global provider, so a service may configure tracing after
decorating at import time; cached by the provider's identity, as OpenTelemetry's own
``ProxyTracer`` does, so the check costs one module attribute read and one ``is``.
``trace.get_tracer_provider()`` is not called on the hot path: while no provider is set it looks
``OTEL_PYTHON_TRACER_PROVIDER`` up in ``os.environ`` on every call (about 1 us).
"""

from __future__ import annotations

from typing import Any, cast

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


class _Documented:
    """For an API release without the ``_TRACER_PROVIDER`` global: the documented, slower way."""

    @property
    def _TRACER_PROVIDER(self) -> object:  # noqa: N802 - mirrors the API's global
        return trace.get_tracer_provider()


#: What holds the global provider: the API module itself (``API._TRACER_PROVIDER`` is one module
#: attribute read), or, should a release drop that global, an object that asks the API.
API: Any = trace if hasattr(trace, "_TRACER_PROVIDER") else _Documented()


def current_tracer() -> trace.Tracer | None:
    """The tracer to start lifecycle spans with, or ``None`` when tracing is off.

    The wrappers inline this check on their hot path (see _wrappers.py)."""
    provider = API._TRACER_PROVIDER
    cached = STATE.cache
    if provider is cached[0]:
        return cached[1]
    return _refresh(provider)


def _refresh(seen: object) -> trace.Tracer | None:
    """Work out the tracer for a provider seen for the first time (rare: once per provider)."""
    tracer: trace.Tracer | None
    try:
        # None: no provider set yet. The API may still build one from OTEL_PYTHON_TRACER_PROVIDER,
        # and sets it globally if so (then the next call sees a new provider, and comes back here).
        provider = trace.get_tracer_provider() if seen is None else cast(trace.TracerProvider, seen)
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
    STATE.cache = (seen, tracer)
    return tracer
