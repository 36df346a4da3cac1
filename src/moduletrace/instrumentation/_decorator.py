"""The decorator form's machinery: per-decoration state (``_Call``) and the choice of wrapper.

Everything is decided once, at decoration time: the wrapper's shape (``decorate``), where the
module id and the parent are in a call's arguments (``_argument``), and the user's extractors,
each wrapped so that its exceptions are logged once and never reach the caller.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
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
        self.kind = kind or stage_kind
        self.attributes = dict(attributes) if attributes else None
        self.as_link = as_link
        self.module_id: Getter = _hook(id_from, "id_from", where) or _argument(func, id_param, where)
        self.parent: Getter | None = None
        if parent_from is not None:
            self.parent = _hook(parent_from, "parent_from", where)
        elif parent_param is not None:
            self.parent = _argument(func, parent_param, where)
        self.extra = _hook(attributes_from, "attributes_from", where)

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
        if opened is not None and self.extra is not None and opened[0].is_recording():
            extra = self.extra(args, kwargs)
            if extra is not MISSING and extra:
                opened[0].set_attributes(extra)
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


def _argument(func: Callable[..., Any], name: str, where: str) -> Getter:
    """A getter for parameter ``name`` of ``func`` in a call's (args, kwargs)."""
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
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
        "moduletrace: %s has no parameter %r; its spans carry no module.id (name it with id_param=, or give id_from=)",
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
        except Exception as exc:  # noqa: BLE001 - a user hook must not break the user's call
            warn_once(f"hook:{where}:{what}", "moduletrace: %s of %s raised %r", what, where, exc, exc_info=True)
            return MISSING

    return call
