"""The four wrappers a stage decorator builds: function, coroutine, generator, async generator.

Each checks "is tracing on" first (one identity check, ``current_tracer``) and calls straight
through when it is not. A generator's span covers the whole iteration, but its context is current
only while the generator's body runs, never while the consumer's code runs between two items:
each step into the body (``send``, ``throw``, ``close`` and their async twins) runs inside
``_Within``, which attaches the span's context and detaches it when the step returns or raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from moduletrace.instrumentation._span import end, fail, finish
from moduletrace.instrumentation._tracing import API, STATE, current_tracer


class Call(Protocol):
    """What a wrapper needs of its decoration (``_decorator.Call``): a way to start the span of a call."""

    def start(
        self, tracer: trace.Tracer, args: tuple[Any, ...], kwargs: dict[str, Any], attach: bool = True
    ) -> tuple[Span, object] | None: ...


class _Within:
    """``with within:`` makes ``context`` current for one step of a generator, then restores."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: Context | None) -> None:
        self._context = context

    def __enter__(self) -> None:
        if self._context is not None:
            self._token = otel_context.attach(self._context)

    def __exit__(self, *exc_info: object) -> None:
        if self._context is not None:
            otel_context.detach(self._token)


_UNCHANGED = _Within(None)  # tracing off: the steps run in the consumer's context, as they would undecorated


def wrap_function(func: Callable[..., Any], call: Call) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        provider, tracer = STATE.cache  # current_tracer(), inlined: this is the "tracing off" cost
        if API._TRACER_PROVIDER is not provider:
            tracer = current_tracer()
        if tracer is None:
            return func(*args, **kwargs)
        opened = call.start(tracer, args, kwargs)
        if opened is None:
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            try:
                fail(opened[0], exc)
            except RecursionError:
                pass  # at the recursion limit, even calling fail() can overflow: the caller's error wins
            raise
        finally:
            try:
                end(*opened)
            except RecursionError:
                pass
            # An exception that outlives the call keeps this frame in its traceback: let the
            # span go (a stored exception re-raised 1000 times would hold 1000 spans).
            opened = None

    return wrapper


def wrap_coroutine(func: Callable[..., Any], call: Call) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        provider, tracer = STATE.cache
        if API._TRACER_PROVIDER is not provider:
            tracer = current_tracer()
        if tracer is None:
            return await func(*args, **kwargs)
        opened = call.start(tracer, args, kwargs)
        if opened is None:
            return await func(*args, **kwargs)
        try:
            return await func(*args, **kwargs)
        except BaseException as exc:
            try:
                fail(opened[0], exc)
            except RecursionError:
                pass
            raise
        finally:
            try:
                end(*opened)
            except RecursionError:
                pass
            opened = None

    return wrapper


def wrap_generator(func: Callable[..., Any], call: Call) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer = current_tracer()
        opened = None if tracer is None else call.start(tracer, args, kwargs, attach=False)
        if opened is None:
            return (yield from func(*args, **kwargs))
        span, current = opened
        within = _Within(current)  # type: ignore[arg-type]
        try:
            with within:
                generator = func(*args, **kwargs)
            step: Callable[[Any], Any] = generator.send
            value: Any = None
            while True:
                with within:
                    item = step(value)
                try:
                    value = yield item
                except GeneratorExit:
                    with within:
                        generator.close()
                    raise
                except BaseException as thrown:
                    step, value = generator.throw, thrown
                else:
                    step = generator.send
        except StopIteration as stop:
            return stop.value
        except BaseException as exc:
            try:
                fail(span, exc)
            except RecursionError:
                pass
            raise
        finally:
            try:
                finish(span)
            except RecursionError:
                pass
            del span, opened

    return wrapper


def wrap_async_generator(func: Callable[..., Any], call: Call) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        # No `async for ... yield` shortcut when tracing is off: it would not pass asend() values
        # and athrow() exceptions on to the body. The same loop runs, without a span.
        tracer = current_tracer()
        opened = None if tracer is None else call.start(tracer, args, kwargs, attach=False)
        span = None if opened is None else opened[0]
        within = _UNCHANGED if opened is None else _Within(opened[1])  # type: ignore[arg-type]
        try:
            with within:
                generator = func(*args, **kwargs)
            step: Callable[[Any], Any] = generator.asend
            value: Any = None
            while True:
                with within:
                    item = await step(value)
                try:
                    value = yield item
                except GeneratorExit:
                    with within:
                        await generator.aclose()
                    raise
                except BaseException as thrown:
                    step, value = generator.athrow, thrown
                else:
                    step = generator.asend
        except StopAsyncIteration:
            return
        except BaseException as exc:
            try:
                if span is not None:
                    fail(span, exc)
            except RecursionError:
                pass
            raise
        finally:
            try:
                if span is not None:
                    finish(span)
            except RecursionError:
                pass
            span = opened = None

    return wrapper
