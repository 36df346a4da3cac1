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

This module is the public face; the machinery lives beside it: ``_tracing`` (is tracing on, and
with which tracer), ``_span`` (start, fail, end: each guarded), ``_failure`` (an exception as
bounded, redacted span text), ``_decorator`` (per-decoration state and hooks) and ``_wrappers``
(the four wrapper shapes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from opentelemetry.trace import Span, SpanKind

from moduletrace.conventions import SPAN_NAMES
from moduletrace.instrumentation._decorator import Call, decorate, span_kind
from moduletrace.instrumentation._handle import OFF, StageHandle
from moduletrace.instrumentation._span import MISSING, Attributes, end, fail, module_id_string, start
from moduletrace.instrumentation._tracing import current_tracer
from moduletrace.instrumentation.propagation import Parent

__all__ = [
    "Stage",
    "StageHandle",
    "StageSpan",
    "cache_update",
    "create_start",
    "db_commit",
    "load_db_query",
    "load_request",
    "module_id_string",
]

F = TypeVar("F", bound=Callable[..., Any])
_MISSING: Any = MISSING


class StageSpan:
    """One lifecycle span as a context manager (``with`` and ``async with``).

    ``__enter__`` returns a :class:`StageHandle`: the OpenTelemetry span (more attributes can be
    set on it; non-recording when tracing is off) with one-liners for what the stage saw or wrote:
    ``q.found(row is not None)``, ``q.cache_hit(hit)``, ``c.wrote(version)``.
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

    def __enter__(self) -> StageHandle:
        tracer = current_tracer()
        if tracer is None:
            return OFF
        stage = self._stage
        self._open = start(
            tracer,
            stage.span_name,
            stage.stage,
            self._kind or stage.kind,
            self._module_id,
            self._attributes,
            self._parent,
            self._as_link,
        )
        return OFF if self._open is None else StageHandle(self._open[0], stage.stage)

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        opened, self._open = self._open, None
        if opened is None:
            return
        try:
            if exc is not None:
                fail(opened[0], exc)
        except RecursionError:
            pass  # at the recursion limit, even calling fail() can overflow: the caller's error wins
        try:
            end(*opened)
        except RecursionError:
            pass

    async def __aenter__(self) -> StageHandle:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)


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

    def __call__(self, target: Any = _MISSING, /, **options: Any) -> Any:  # type: ignore[misc]
        # One implementation serves the three forms above. `**options` rather than keyword
        # parameters with defaults: filling eleven defaults would cost the context manager, whose
        # per-call path this is, more than everything else it does when tracing is off.
        if options:
            return self._with_options(target, **options)
        if type(target) is not str:  # a str is a module id: skip the two slower checks
            if target is _MISSING:
                return lambda func: self._decorator(func)
            if callable(target) or isinstance(target, (classmethod, staticmethod)):
                return self._decorator(target)
        # The context manager. When tracing is off, one shared do-nothing context manager (decided
        # here, not at __enter__: `with stage(id):` creates and enters it at once).
        if current_tracer() is None:
            return _TRACING_OFF
        return StageSpan(self, target, None, None, False, None)

    def _with_options(
        self,
        target: Any,
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
        if target is not _MISSING and not callable(target) and not isinstance(target, (classmethod, staticmethod)):
            if current_tracer() is None:
                return _TRACING_OFF
            if kind is not None:
                kind = span_kind(kind, self.stage)
            return StageSpan(self, target, attributes, parent, as_link, kind)
        options = (id_param, id_from, parent_param, parent_from, attributes, attributes_from, as_link, kind)
        if target is _MISSING:
            return lambda func: self._decorator(func, *options)
        return self._decorator(target, *options)

    def _decorator(
        self,
        target: Any,
        id_param: str = "module_id",
        id_from: Callable[..., object] | None = None,
        parent_param: str | None = None,
        parent_from: Callable[..., Parent | None] | None = None,
        attributes: Attributes | None = None,
        attributes_from: Callable[..., Attributes] | None = None,
        as_link: bool = False,
        kind: SpanKind | None = None,
    ) -> Any:
        def factory(func: Callable[..., Any]) -> Call:
            return Call(
                self.span_name,
                self.stage,
                self.kind,
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

        return decorate(factory, target)


class _TracingOff(StageSpan):
    """The context manager when tracing is off: it does nothing, and so is shared."""

    __slots__ = ()

    def __enter__(self) -> StageHandle:
        return OFF

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        return None


_TRACING_OFF = _TracingOff(Stage("create_start"), _MISSING, None, None, False, None)

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
