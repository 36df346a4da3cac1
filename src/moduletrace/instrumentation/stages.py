"""The five lifecycle stage helpers: context managers and decorators that emit one span each.

Each helper is a :class:`Stage`. It is used three ways::

    with moduletrace.db_commit(module_id):          # context manager (also inside async code)
        session.commit()

    @moduletrace.db_commit                          # bare decorator: id from the `module_id` parameter
    def save(module_id: str, row: Row) -> None: ...

    @moduletrace.load_request(id_param="mid", parent_param="carrier")
    async def load(mid: str, carrier: dict[str, str]) -> Module: ...

The decorator decides the wrapper's shape once, at decoration time (sync, coroutine, generator,
async generator; methods, classmethods and staticmethods included). A generator's span covers
the whole iteration: the span is current only while the generator body runs, never while the
consumer's code runs between two items.

Costs are kept close to a bare span (see benchmarks/): ``start_span`` + ``context.attach``
instead of ``start_as_current_span``'s generator machinery, and when tracing is off the wrapper
calls straight through after one identity check.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import INVALID_SPAN, Link, NoOpTracer, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from moduletrace._version import __version__
from moduletrace.conventions import (
    MAX_MODULE_ID_LENGTH,
    MODULE_CANCELLED,
    MODULE_ID,
    MODULE_STAGE,
    SPAN_NAMES,
)
from moduletrace.instrumentation._guard import internal_error, warn_once
from moduletrace.instrumentation._redact import redact
from moduletrace.instrumentation.propagation import Parent, parent_and_links
from moduletrace.instrumentation.sampling import LifecycleSampler

F = TypeVar("F", bound=Callable[..., Any])
Attributes = Mapping[str, AttributeValue]

_MISSING: Any = object()
_MAX_MESSAGE = 1024

# ---------------------------------------------------------------------------------------------
# The tracer: resolved per call from the global provider, cached by the provider's identity so a
# service may configure tracing after decorating at import time (as OpenTelemetry's ProxyTracer
# allows), and so the "tracing off" check is one attribute read and one `is`.
# ---------------------------------------------------------------------------------------------

_cache: tuple[object, trace.Tracer | None] = (object(), None)


def _tracer() -> trace.Tracer | None:
    provider = trace.get_tracer_provider()
    cached_provider, tracer = _cache
    if provider is cached_provider:
        return tracer
    return _refresh(provider)


def _refresh(provider: trace.TracerProvider) -> trace.Tracer | None:
    global _cache
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
    _cache = (provider, tracer)
    return tracer


# ---------------------------------------------------------------------------------------------
# Span start / failure / end, each guarded: a moduletrace bug is logged once, never raised.
# ---------------------------------------------------------------------------------------------


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


def _start(
    tracer: trace.Tracer,
    name: str,
    stage: str,
    kind: SpanKind,
    module_id: object,
    attributes: Attributes | None,
    parent: Parent | None,
    as_link: bool,
) -> tuple[Span, object] | None:
    try:
        attrs: dict[str, AttributeValue] = {MODULE_STAGE: stage}
        if module_id is not _MISSING:
            attrs[MODULE_ID] = module_id_string(module_id)
        if attributes:
            attrs.update(attributes)
        ctx: Context | None = None
        links: list[Link] | None = None
        if parent is not None:
            ctx, links = parent_and_links(parent, as_link)
        span = tracer.start_span(name, ctx, kind, attrs, links)
        token = otel_context.attach(trace.set_span_in_context(span))
        return span, token
    except Exception as exc:  # noqa: BLE001
        internal_error("start span", exc)
        return None


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _fail(span: Span, exc: BaseException) -> None:
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
        error_type = _error_type(exc)
        message = redact(str(exc))[:_MAX_MESSAGE]
        span.set_attribute(ERROR_TYPE, error_type)
        span.add_event(
            "exception",
            {
                EXCEPTION_TYPE: error_type,
                EXCEPTION_MESSAGE: message,
                EXCEPTION_STACKTRACE: redact("".join(traceback.format_exception(exc))),
            },
        )
        span.set_status(Status(StatusCode.ERROR, message or error_type))
    except Exception as internal:  # noqa: BLE001
        internal_error("record exception", internal)


def _end(span: Span, token: object) -> None:
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
        span.end()
    except Exception as exc:  # noqa: BLE001
        internal_error("end span", exc)


# ---------------------------------------------------------------------------------------------
# The context-manager form.
# ---------------------------------------------------------------------------------------------


class StageSpan:
    """One lifecycle span as a context manager (``with`` and ``async with``).

    ``__enter__`` returns the OpenTelemetry span, so more attributes can be set on it; it is a
    non-recording span when tracing is off.
    """

    __slots__ = ("_stage", "_module_id", "_attributes", "_parent", "_as_link", "_kind", "_open")

    def __init__(
        self,
        stage: Stage,
        module_id: object,
        attributes: Attributes | None,
        parent: Parent | None,
        as_link: bool,
        kind: SpanKind | None,
    ) -> None:
        self._stage = stage
        self._module_id = module_id
        self._attributes = attributes
        self._parent = parent
        self._as_link = as_link
        self._kind = kind
        self._open: tuple[Span, object] | None = None

    def __enter__(self) -> Span:
        tracer = _tracer()
        if tracer is None:
            return INVALID_SPAN
        stage = self._stage
        self._open = _start(
            tracer,
            stage.span_name,
            stage.stage,
            self._kind or stage.kind,
            self._module_id,
            self._attributes,
            self._parent,
            self._as_link,
        )
        return INVALID_SPAN if self._open is None else self._open[0]

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        opened, self._open = self._open, None
        if opened is None:
            return
        if exc is not None:
            _fail(opened[0], exc)
        _end(*opened)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)


# ---------------------------------------------------------------------------------------------
# The decorator form.
# ---------------------------------------------------------------------------------------------


class _Call:
    """Per-decoration state, computed once: how to find the id and parent in a call's arguments."""

    __slots__ = ("name", "stage", "kind", "attributes", "as_link", "module_id", "parent", "extra")

    def __init__(
        self,
        stage: Stage,
        func: Callable[..., Any],
        id_param: str,
        id_from: Callable[..., object] | None,
        parent_param: str | None,
        parent_from: Callable[..., Parent | None] | None,
        attributes: Attributes | None,
        attributes_from: Callable[..., Attributes] | None,
        as_link: bool,
        kind: SpanKind | None,
    ) -> None:
        self.name = stage.span_name
        self.stage = stage.stage
        self.kind = kind or stage.kind
        self.attributes = dict(attributes) if attributes else None
        self.as_link = as_link
        where = getattr(func, "__qualname__", repr(func))
        self.module_id = _hook(id_from, "id_from", where) or _argument(func, id_param, where)
        self.parent: Callable[[tuple[Any, ...], dict[str, Any]], Any] | None = None
        if parent_from is not None:
            self.parent = _hook(parent_from, "parent_from", where)
        elif parent_param is not None:
            self.parent = _argument(func, parent_param, where)
        self.extra = _hook(attributes_from, "attributes_from", where)

    def start(self, tracer: trace.Tracer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Span, object] | None:
        parent = None
        if self.parent is not None:
            parent = self.parent(args, kwargs)
            if parent is _MISSING:
                parent = None
        opened = _start(
            tracer,
            self.name,
            self.stage,
            self.kind,
            self.module_id(args, kwargs),
            self.attributes,
            parent,
            self.as_link,
        )
        if opened is not None and self.extra is not None and opened[0].is_recording():
            extra = self.extra(args, kwargs)
            if extra is not _MISSING and extra:
                opened[0].set_attributes(extra)
        return opened


def _argument(func: Callable[..., Any], name: str, where: str) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """A getter for parameter ``name`` of ``func`` in a call's (args, kwargs)."""
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    for index, parameter in enumerate(parameters):
        if parameter.name != name or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        default = _MISSING if parameter.default is parameter.empty else parameter.default
        return _getter(name, index if positional else None, default)
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return lambda args, kwargs: kwargs.get(name, _MISSING)
    warn_once(
        f"param:{where}:{name}",
        "moduletrace: %s has no parameter %r; its spans carry no module.id (name it with id_param=, or give id_from=)",
        where,
        name,
    )
    return lambda args, kwargs: _MISSING


def _getter(name: str, position: int | None, default: Any) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    def get(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name in kwargs:
            return kwargs[name]
        if position is not None and position < len(args):
            return args[position]
        return default

    return get


def _hook(
    hook: Callable[..., Any] | None, what: str, where: str
) -> Callable[[tuple[Any, ...], dict[str, Any]], Any] | None:
    """Wrap a user extractor so that its exceptions are logged once and never reach the caller."""
    if hook is None:
        return None

    def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return hook(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the user's call
            warn_once(f"hook:{where}:{what}", "moduletrace: %s of %s raised %r", what, where, exc, exc_info=True)
            return _MISSING

    return call


def _decorate(call_factory: Callable[[Callable[..., Any]], _Call], func: Any) -> Any:
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(_decorate(call_factory, func.__func__))
    spec = call_factory(func)
    if inspect.isasyncgenfunction(func):
        wrapper: Callable[..., Any] = _wrap_async_generator(func, spec)
    elif inspect.isgeneratorfunction(func):
        wrapper = _wrap_generator(func, spec)
    elif inspect.iscoroutinefunction(func):
        wrapper = _wrap_coroutine(func, spec)
    else:
        wrapper = _wrap_function(func, spec)
    return functools.wraps(func)(wrapper)


def _wrap_function(func: Callable[..., Any], spec: _Call) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = _tracer()
        if tracer is None:
            return func(*args, **kwargs)
        opened = spec.start(tracer, args, kwargs)
        if opened is None:
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            _fail(opened[0], exc)
            raise
        finally:
            _end(*opened)

    return wrapper


def _wrap_coroutine(func: Callable[..., Any], spec: _Call) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = _tracer()
        if tracer is None:
            return await func(*args, **kwargs)
        opened = spec.start(tracer, args, kwargs)
        if opened is None:
            return await func(*args, **kwargs)
        try:
            return await func(*args, **kwargs)
        except BaseException as exc:
            _fail(opened[0], exc)
            raise
        finally:
            _end(*opened)

    return wrapper


def _wrap_generator(func: Callable[..., Any], spec: _Call) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = _tracer()
        if tracer is None:
            return (yield from func(*args, **kwargs))
        opened = spec.start(tracer, args, kwargs)
        if opened is None:
            return (yield from func(*args, **kwargs))
        span, token = opened
        # The span is current only while the generator body runs: detach before handing an
        # item to the consumer, re-attach when the consumer resumes us.
        span_context = otel_context.get_current()
        otel_context.detach(token)  # type: ignore[arg-type]
        try:
            token = otel_context.attach(span_context)
            try:
                generator = func(*args, **kwargs)
                item = next(generator)
            finally:
                otel_context.detach(token)
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    token = otel_context.attach(span_context)
                    try:
                        generator.close()
                    finally:
                        otel_context.detach(token)
                    raise
                except BaseException as thrown:
                    token = otel_context.attach(span_context)
                    try:
                        item = generator.throw(thrown)
                    finally:
                        otel_context.detach(token)
                else:
                    token = otel_context.attach(span_context)
                    try:
                        item = generator.send(sent)
                    finally:
                        otel_context.detach(token)
        except StopIteration as stop:
            return stop.value
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            _finish(span)

    return wrapper


def _wrap_async_generator(func: Callable[..., Any], spec: _Call) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = _tracer()
        if tracer is None:
            async for item in func(*args, **kwargs):
                yield item
            return
        opened = spec.start(tracer, args, kwargs)
        if opened is None:
            async for item in func(*args, **kwargs):
                yield item
            return
        span, token = opened
        span_context = otel_context.get_current()
        otel_context.detach(token)  # type: ignore[arg-type]
        try:
            token = otel_context.attach(span_context)
            try:
                generator = func(*args, **kwargs)
                item = await generator.__anext__()
            finally:
                otel_context.detach(token)
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    token = otel_context.attach(span_context)
                    try:
                        await generator.aclose()
                    finally:
                        otel_context.detach(token)
                    raise
                except BaseException as thrown:
                    token = otel_context.attach(span_context)
                    try:
                        item = await generator.athrow(thrown)
                    finally:
                        otel_context.detach(token)
                else:
                    token = otel_context.attach(span_context)
                    try:
                        item = await generator.asend(sent)
                    finally:
                        otel_context.detach(token)
        except StopAsyncIteration:
            return
        except BaseException as exc:
            _fail(span, exc)
            raise
        finally:
            _finish(span)

    return wrapper


def _finish(span: Span) -> None:
    try:
        span.end()
    except Exception as exc:  # noqa: BLE001
        internal_error("end span", exc)


# ---------------------------------------------------------------------------------------------
# The public helpers.
# ---------------------------------------------------------------------------------------------


class Stage:
    """A lifecycle stage helper: ``with stage(module_id)``, ``@stage`` or ``@stage(...)``.

    Context manager::

        with moduletrace.load_request(module_id, parent=stored_carrier) as span: ...

    Options of the context-manager form: ``parent`` (a carrier dict, ``traceparent`` string,
    ``Context``, ``SpanContext`` or ``Span`` to continue), ``as_link`` (link the creation
    instead of continuing its trace), ``attributes`` (static extra attributes), ``kind``.

    Decorator options: ``id_param`` (the parameter holding the module id, default
    ``"module_id"``) or ``id_from`` (a callable given the call's arguments), ``parent_param`` or
    ``parent_from`` (where the creation's carrier is), ``attributes``, ``attributes_from``
    (a callable given the call's arguments, returning extra attributes: nothing else is taken
    from arguments), ``as_link``, ``kind``.
    """

    def __init__(self, stage: str, kind: SpanKind = SpanKind.INTERNAL) -> None:
        self.stage = stage
        self.span_name = SPAN_NAMES[stage]
        self.kind = kind
        self.__name__ = stage
        self.__qualname__ = stage

    def __repr__(self) -> str:
        return f"<moduletrace stage {self.stage!r} (span {self.span_name!r})>"

    @overload
    def __call__(self, func: F, /) -> F: ...  # type: ignore[overload-overlap]  # a callable is decorated

    @overload
    def __call__(
        self,
        module_id: object,
        /,
        *,
        parent: Parent | None = None,
        as_link: bool = False,
        attributes: Attributes | None = None,
        kind: SpanKind | None = None,
    ) -> StageSpan: ...

    @overload
    def __call__(
        self,
        *,
        id_param: str = "module_id",
        id_from: Callable[..., object] | None = None,
        parent_param: str | None = None,
        parent_from: Callable[..., Parent | None] | None = None,
        attributes: Attributes | None = None,
        attributes_from: Callable[..., Attributes] | None = None,
        as_link: bool = False,
        kind: SpanKind | None = None,
    ) -> Callable[[F], F]: ...

    def __call__(  # type: ignore[misc]  # one implementation serves the three forms above
        self,
        target: Any = _MISSING,
        /,
        *,
        parent: Parent | None = None,
        as_link: bool = False,
        attributes: Attributes | None = None,
        kind: SpanKind | None = None,
        id_param: str = "module_id",
        id_from: Callable[..., object] | None = None,
        parent_param: str | None = None,
        parent_from: Callable[..., Parent | None] | None = None,
        attributes_from: Callable[..., Attributes] | None = None,
    ) -> Any:
        def factory(func: Callable[..., Any]) -> _Call:
            return _Call(
                self,
                func,
                id_param,
                id_from,
                parent_param,
                parent_from,
                attributes,
                attributes_from,
                as_link,
                kind,
            )

        if target is _MISSING:
            return lambda func: _decorate(factory, func)
        if callable(target) or isinstance(target, (classmethod, staticmethod)):
            return _decorate(factory, target)
        return StageSpan(self, target, attributes, parent, as_link, kind)


create_start = Stage("create_start")
create_start.__doc__ = "The whole create operation, in the creating service (its start matters)."
db_commit = Stage("db_commit")
db_commit.__doc__ = "The write and commit of the module row (its end: the row is committed)."
cache_update = Stage("cache_update")
cache_update.__doc__ = "The cache write / index update that makes the module loadable (its end)."
load_request = Stage("load_request")
load_request.__doc__ = "The whole load operation, in the loading service (its start)."
load_db_query = Stage("load_db_query")
load_db_query.__doc__ = "The read of the module from the database or store (its start)."
