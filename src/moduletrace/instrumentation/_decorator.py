"""The decorator form's machinery: per-decoration state (``_Call``) and the choice of wrapper.

Everything is decided once, at decoration time: the wrapper's shape (``decorate``), where the
module id and the parent are in a call's arguments (``_argument``), and the user's hooks, each
wrapped so that whatever it does (raise, return the wrong type) is logged once and never
reaches the caller: the decorated body always runs, and the span's context is always detached.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from moduletrace.instrumentation._guard import warn_once
from moduletrace.instrumentation._span import MISSING, Attributes, start
from moduletrace.instrumentation._wrappers import (
    wrap_async_generator,
    wrap_coroutine,
    wrap_function,
    wrap_generator,
)
from moduletrace.instrumentation.propagation import Parent

Getter = Callable[[tuple[Any, ...], dict[str, Any]], Any]
AttributesHook = Callable[[Span, tuple[Any, ...], dict[str, Any]], None]


class Call:
    """Per-decoration state, computed once: how to find the id and parent in a call's arguments."""

    __slots__ = ("name", "stage", "kind", "attributes", "as_link", "module_id", "parent", "extra")

    def __init__(
        self,
        span_name: str,
        stage: str,
        stage_kind: SpanKind,
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
        where = getattr(func, "__qualname__", None) or repr(func)
        self.name = span_name
        self.stage = stage
        self.kind = span_kind(kind, where) or stage_kind
        self.attributes = static_attributes(attributes, where)
        self.as_link = as_link
        self.module_id: Getter = _hook(id_from, "id_from", where) or _argument(func, id_param, "id_param", where)
        self.parent: Getter | None = None
        if parent_from is not None:
            self.parent = _hook(parent_from, "parent_from", where)
        elif parent_param is not None:
            self.parent = _argument(func, parent_param, "parent_param", where)
        self.extra = _attributes_hook(attributes_from, where)

    def start(
        self, tracer: trace.Tracer, args: tuple[Any, ...], kwargs: dict[str, Any], attach: bool = True
    ) -> tuple[Span, object] | None:
        parent = None
        if self.parent is not None:
            parent = self.parent(args, kwargs)
            if parent is MISSING:
                parent = None
        opened = start(
            tracer,
            self.name,
            self.stage,
            self.kind,
            self.module_id(args, kwargs),
            self.attributes,
            parent,
            self.as_link,
            attach,
        )
        if opened is not None and self.extra is not None:
            self.extra(opened[0], args, kwargs)
        return opened


def decorate(call_factory: Callable[[Callable[..., Any]], Call], func: Any) -> Any:
    """Wrap ``func`` in the wrapper of its shape: sync, coroutine, generator, async generator."""
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(decorate(call_factory, func.__func__))
    call = call_factory(func)
    if inspect.isasyncgenfunction(func):
        wrapper: Callable[..., Any] = wrap_async_generator(func, call)
    elif inspect.isgeneratorfunction(func):
        wrapper = wrap_generator(func, call)
    elif inspect.iscoroutinefunction(func):
        wrapper = wrap_coroutine(func, call)
    else:
        wrapper = wrap_function(func, call)
    return functools.wraps(func)(wrapper)


def span_kind(kind: object, where: str) -> SpanKind | None:
    """The ``kind=`` option, or ``None`` (the stage's own kind) when it is not a ``SpanKind``."""
    if kind is None or isinstance(kind, SpanKind):
        return kind
    warn_once(f"kind:{where}", "moduletrace: kind=%r of %s is not an opentelemetry SpanKind; ignored", kind, where)
    return None


def static_attributes(attributes: object, where: str) -> dict[str, Any] | None:
    """The ``attributes=`` option as a dict, or ``None`` (with a warning) when it is not a mapping."""
    if attributes is None:
        return None
    try:
        if isinstance(attributes, Mapping):
            return dict(attributes) or None
    except Exception:  # noqa: BLE001 - a mapping whose iteration raises
        pass
    warn_once(f"attributes:{where}", "moduletrace: attributes= of %s is not a mapping; ignored", where)
    return None


def _argument(func: Callable[..., Any], name: object, option: str, where: str) -> Getter:
    """A getter for parameter ``name`` of ``func`` in a call's (args, kwargs)."""
    if not isinstance(name, str):
        warn_once(f"{option}:{where}", "moduletrace: %s=%r of %s is not a parameter name; ignored", option, name, where)
        return lambda args, kwargs: MISSING
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except Exception:  # noqa: BLE001 - no signature (a builtin) or a broken __signature__
        parameters = []
    for index, parameter in enumerate(parameters):
        if parameter.name != name or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        default = MISSING if parameter.default is parameter.empty else parameter.default
        return _getter(name, index if positional else None, default)
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return lambda args, kwargs: kwargs.get(name, MISSING)
    warn_once(
        f"param:{where}:{name}",
        "moduletrace: %s has no parameter %r; its spans carry no module.id (name it with id_param=, or give id_from=)"
        if option == "id_param"
        else "moduletrace: %s has no parameter %r; its spans continue no stored parent",
        where,
        name,
    )
    return lambda args, kwargs: MISSING


def _getter(name: str, position: int | None, default: Any) -> Getter:
    def get(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name in kwargs:
            return kwargs[name]
        if position is not None and position < len(args):
            return args[position]
        return default

    return get


def _hook(hook: Callable[..., Any] | None, what: str, where: str) -> Getter | None:
    """Wrap a user extractor so that its exceptions are logged once and never reach the caller."""
    if hook is None:
        return None

    def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return hook(*args, **kwargs)
        except RecursionError:
            return MISSING  # at the recursion limit: logging would overflow too
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the user's call
            warn_once(f"hook:{where}:{what}", "moduletrace: %s of %s raised %r", what, where, exc, exc_info=True)
            return MISSING

    return call


def _attributes_hook(hook: Callable[..., Attributes] | None, where: str) -> AttributesHook | None:
    """``attributes_from``: called only for a recording span; what it returns is set on the span,
    and if it raises, or returns something that is not a mapping, that is logged once and the
    call goes on (the span is already current: raising here would leave it so)."""
    if hook is None:
        return None

    def add(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            if not span.is_recording():
                return
            extra = hook(*args, **kwargs)
            if extra is None:
                return
            if not isinstance(extra, Mapping):
                raise TypeError(f"it returned a {type(extra).__name__}, not a mapping of attribute names to values")
            if extra:
                span.set_attributes(extra)
        except RecursionError:
            pass  # at the recursion limit: logging would overflow too
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the user's call
            warn_once(
                f"hook:{where}:attributes_from",
                "moduletrace: attributes_from of %s raised %r",
                where,
                exc,
                exc_info=True,
            )

    return add
