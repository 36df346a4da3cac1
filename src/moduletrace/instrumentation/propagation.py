"""Carrying a module's creation context to its later loads (W3C Trace Context).

The create side stores ``carrier()`` with the module (or returns it from the create endpoint);
the load side passes it back as ``parent=``. The carrier is written with an explicit
``TraceContextTextMapPropagator``, not the global one: what is persisted with a module must not
change format when a service changes ``OTEL_PROPAGATORS``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, Union, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from moduletrace.conventions import MODULE_LINK_TYPE
from moduletrace.instrumentation._guard import internal_error, warn_once


@runtime_checkable
class CarrierObject(Protocol):
    """Anything with a ``traceparent`` attribute (and optionally ``tracestate``): a Pydantic model,
    a dataclass, an ORM row holding the carrier in two columns."""

    @property
    def traceparent(self) -> str | None: ...


#: What ``parent=`` accepts: a carrier mapping (any ``Mapping``: dict, HTTP headers, a JSON
#: column), an object with ``traceparent``/``tracestate`` attributes (a Pydantic model, a
#: dataclass), a Pydantic model whose dump holds them, a bare ``traceparent`` string, an
#: OpenTelemetry ``Context``, ``SpanContext`` or ``Span``.
Parent = Union[Mapping[str, str], CarrierObject, str, Context, SpanContext, Span]

_PROPAGATOR = TraceContextTextMapPropagator()


def carrier(context: Context | None = None) -> dict[str, str]:
    """Return the W3C carrier (``traceparent``, ``tracestate``) of the current (or given) context.

    Store it with the module, or return it from the create endpoint, and pass it to
    ``load_request(module_id, parent=...)`` so the load continues the creation's trace::

        with moduletrace.create_start(module.id):
            module.trace_carrier = moduletrace.carrier()

    Returns an empty dict when there is no valid span (tracing off, or no span open).
    """
    result: dict[str, str] = {}
    try:
        _PROPAGATOR.inject(result, context)
    except Exception as exc:  # noqa: BLE001 - telemetry never raises into the host
        internal_error("carrier", exc)
    return result


def parent_span_context(parent: Parent) -> SpanContext | None:
    """Turn anything ``parent=`` accepts into a valid SpanContext, or None (logged once)."""
    span_context: SpanContext | None
    if isinstance(parent, SpanContext):
        span_context = parent
    elif isinstance(parent, Context):
        span_context = trace.get_current_span(parent).get_span_context()
    elif isinstance(parent, Span):
        span_context = parent.get_span_context()
    elif isinstance(parent, str):
        span_context = _extract({"traceparent": parent})
    elif isinstance(parent, Mapping):
        if not any(str(key).lower() == "traceparent" for key in parent):
            # No carrier at all (the creation ran with tracing off, or a request came without the
            # headers): nothing to warn about, the load simply starts from the current context.
            return None
        span_context = _extract_mapping(parent)
    else:
        span_context = _extract_object(parent)
    if span_context is None or not span_context.is_valid:
        warn_once(
            f"parent:{type(parent).__name__}",
            "moduletrace: parent=%s holds no valid trace context; the span starts from the current "
            "context instead (the detector still matches it by module.id)",
            type(parent).__name__,
        )
        return None
    return span_context


def _extract(carrier_: Mapping[str, str]) -> SpanContext:
    return trace.get_current_span(_PROPAGATOR.extract(carrier_)).get_span_context()


def _extract_mapping(mapping: Mapping[Any, Any]) -> SpanContext:
    # HTTP headers and JSON columns differ in case; W3C keys are lower case.
    return _extract({str(k).lower(): v for k, v in mapping.items() if isinstance(v, str)})


def _extract_object(parent: object) -> SpanContext | None:
    """A carrier kept in an object: its attributes, else a Pydantic model's dump, else its items."""
    try:
        traceparent = getattr(parent, "traceparent", None)
        if isinstance(traceparent, str):
            found = {"traceparent": traceparent}
            tracestate = getattr(parent, "tracestate", None)
            if isinstance(tracestate, str):
                found["tracestate"] = tracestate
            return _extract(found)
        dump = getattr(parent, "model_dump", None)  # Pydantic v2, fields under other names or aliases
        if callable(dump):
            dumped = dump(by_alias=True)
            if isinstance(dumped, Mapping):
                return _extract_mapping(dumped)
        items = getattr(parent, "items", None)  # a mapping-like object that is not a Mapping
        if callable(items):
            return _extract_mapping(dict(items()))
    except Exception as exc:  # noqa: BLE001 - a user object whose attributes raise
        internal_error("read carrier", exc)
    return None


@contextmanager
def continuing(parent: Parent) -> Iterator[None]:
    """Make the creation's context (``parent``, as ``parent=`` accepts it) current in a block.

    For code that propagates the current context itself, e.g. a Celery task published inside the
    block carries the creation's trace in its headers (opentelemetry-instrumentation-celery), so
    the task continues that trace with no carrier argument::

        with moduletrace.instrumentation.propagation.continuing(module.trace_carrier):
            load_module.delay(module.id)

    With no valid context in ``parent`` (logged once) the block runs in the current context.
    """
    token = None
    try:
        span_context = parent_span_context(parent)
        if span_context is not None:
            token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))
    except Exception as exc:  # noqa: BLE001 - telemetry never raises into the host
        internal_error("continuing", exc)
    try:
        yield
    finally:
        if token is not None:
            otel_context.detach(token)


def parent_and_links(parent: Parent, as_link: bool) -> tuple[Context | None, list[Link] | None]:
    """The context to start a stage span in, and its links, for ``parent=`` and ``as_link=``.

    Default (``as_link=False``): the span continues the creation's trace (one trace ID per
    module) and links the span that was current when the call began, e.g. the HTTP server span.
    ``as_link=True``: the span stays in the current trace and links the creation, as the
    messaging conventions recommend for an operation that may come minutes later.
    """
    creation = parent_span_context(parent)
    if creation is None:
        return None, None
    current = trace.get_current_span().get_span_context()
    if as_link:
        return None, [Link(creation, {MODULE_LINK_TYPE: "creation"})]
    links = None
    if current.is_valid and current.span_id != creation.span_id:
        links = [Link(current, {MODULE_LINK_TYPE: "request"})]
    # Keep the current context's other entries (baggage, suppression flags); swap the span only.
    ctx = trace.set_span_in_context(NonRecordingSpan(creation), otel_context.get_current())
    return ctx, links
