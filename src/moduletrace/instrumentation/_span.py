"""Span start / failure / end, each guarded: a moduletrace bug is logged once, never raised.

``start`` is ``tracer.start_span`` + ``context.attach`` rather than ``start_as_current_span``,
whose generator-based context manager costs more than the span itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from moduletrace.conventions import MAX_MODULE_ID_LENGTH, MODULE_CANCELLED, MODULE_ID, MODULE_STAGE
from moduletrace.instrumentation import _failure
from moduletrace.instrumentation._guard import internal_error, warn_once
from moduletrace.instrumentation.propagation import Parent, parent_and_links

Attributes = Mapping[str, AttributeValue]

#: "Not given": no module id (the span then has no ``module.id``), no parent, no hook result.
MISSING: object = object()


def module_id_string(value: object) -> str:
    """Normalise a module id: ``str`` of it (bytes decoded as UTF-8), at most 256 characters."""
    if type(value) is not str:
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        else:
            try:
                value = str(value)
            except Exception:  # noqa: BLE001 - a user type whose __str__ raises
                value = f"<unprintable {type(value).__name__}>"
    text: str = value
    return text if len(text) <= MAX_MODULE_ID_LENGTH else text[:MAX_MODULE_ID_LENGTH]


def start(
    tracer: trace.Tracer,
    name: str,
    stage: str,
    kind: SpanKind,
    module_id: object,
    attributes: Attributes | None,
    parent: Parent | None,
    as_link: bool,
    attach: bool = True,
) -> tuple[Span, object] | None:
    """Start a span; with ``attach``, make it current and return it with the context's token,
    else return it with a context holding it, for the caller to attach when it runs its code."""
    try:
        attrs: dict[str, AttributeValue] = {MODULE_STAGE: stage}
        if module_id is not MISSING:
            attrs[MODULE_ID] = module_id_string(module_id)
        if attributes is not None:
            _add_static(attrs, attributes)
        ctx: Context | None = None
        links: list[Link] | None = None
        if parent is not None:
            ctx, links = parent_and_links(parent, as_link)
        span = tracer.start_span(name, ctx, kind, attrs, links)
        current = trace.set_span_in_context(span)
        return span, otel_context.attach(current) if attach else current
    except RecursionError:
        return None  # the host is at its recursion limit: the call goes on without a span
    except Exception as exc:  # noqa: BLE001
        internal_error("start span", exc)
        return None


def _add_static(attrs: dict[str, AttributeValue], attributes: Attributes) -> None:
    try:
        attrs.update(attributes)
    except Exception as exc:  # noqa: BLE001 - the caller's option, not our bug
        warn_once("attributes", "moduletrace: attributes= must be a mapping; ignored (%r)", exc)


def fail(span: Span, exc: BaseException) -> None:
    """Record ``exc`` on ``span``; the caller re-raises the very same object."""
    try:
        if not span.is_recording():
            return
        if isinstance(exc, asyncio.CancelledError):
            # Cancelled is not a failure of the stage, but it did not complete either.
            span.set_attribute(MODULE_CANCELLED, True)
            return
        if isinstance(exc, GeneratorExit):
            return  # the consumer closed the generator early: a normal end
        error_type = _failure.error_type(exc)
        message = _failure.message(exc)
        # Status first: whatever happens next, the span says it failed.
        span.set_status(Status(StatusCode.ERROR, message or error_type))
        span.set_attribute(ERROR_TYPE, error_type)
        span.add_event(
            "exception",
            {
                EXCEPTION_TYPE: error_type,
                EXCEPTION_MESSAGE: _failure.UNPRINTABLE if message is None else message,
                EXCEPTION_STACKTRACE: _failure.stacktrace(exc, message),
            },
        )
    except RecursionError:
        return  # the host is at its recursion limit: not our bug, and logging it would overflow too
    except Exception as internal:  # noqa: BLE001
        internal_error("record exception", internal)


def end(span: Span, token: object) -> None:
    """Detach the span's context, then end the span."""
    try:
        try:
            otel_context.detach(token)  # type: ignore[arg-type]
        finally:
            span.end()
    except Exception as exc:  # noqa: BLE001
        internal_error("end span", exc)


def finish(span: Span) -> None:
    """End a span that is not attached (a generator's)."""
    try:
        span.end()
    except Exception as exc:  # noqa: BLE001
        internal_error("end span", exc)
