"""A ModuleLoader as the incident write-up proposed it: retries with backoff, one span per attempt, a named cause.

::

    load = moduletrace.ModuleLoader(fetch_module, attempts=4)
    try:
        module = load("m-17", parent=stored_carrier)
    except moduletrace.ModuleLoadError as error:
        show(f"Failed to load module (ref {error.trace_id})")   # searchable in Jaeger/Tempo
        log.warning("%s", error)                               # "... not_found after 4 attempts ..."

Each attempt is its own load-request span carrying its attempt number (``LOAD_ATTEMPT``, 1-based), so
``races`` and ``diagnose`` judge every attempt. Retries use tenacity's exponential backoff with
full jitter; by default a not-found (the module may not be visible yet), a pool timeout or a
transient error is retried, an auth failure is not (a token needs refreshing, not waiting for).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from opentelemetry.trace import format_trace_id
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from moduletrace.causes import classify_exception
from moduletrace.conventions import LOAD_ATTEMPT, LOAD_ATTEMPTS_MAX
from moduletrace.instrumentation.propagation import Parent
from moduletrace.instrumentation.stages import load_request

T = TypeVar("T")


class ModuleLoadError(Exception):
    """A load failed for good: which module, the cause, how many attempts, and the trace to look at."""

    def __init__(self, module_id: str, cause: str, attempts: int, trace_id: str | None) -> None:
        self.module_id = module_id
        self.cause = cause
        self.attempts = attempts
        self.trace_id = trace_id
        reference = f" (trace {trace_id})" if trace_id else ""
        super().__init__(f"failed to load module {module_id}: {cause} after {attempts} attempt(s){reference}")


def classify_failure(exc: BaseException) -> str:
    """The cause a caller can see: auth, not_found, pool, timeout, unavailable or error.

    The same classification ``diagnose`` applies to the spans afterwards (``moduletrace.causes``).
    """
    return classify_exception(exc)


def _retryable(exc: BaseException) -> bool:
    return classify_failure(exc) in ("not_found", "pool", "timeout", "unavailable")


class _Base(Generic[T]):
    def __init__(
        self,
        load: Callable[[str], Any],
        *,
        attempts: int = 4,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        deadline_s: float | None = None,
        retry_if: Callable[[BaseException], bool] = _retryable,
        classify: Callable[[BaseException], str] = classify_failure,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self._load = load
        self.attempts = attempts
        self.classify = classify
        stop: Any = stop_after_attempt(attempts)
        if deadline_s is not None:
            stop = stop | stop_after_delay(deadline_s)
        self._policy: dict[str, Any] = {
            "stop": stop,
            "wait": wait_random_exponential(multiplier=initial_backoff_s, max=max_backoff_s),
            "retry": retry_if_exception(retry_if),
            "reraise": True,
        }

    def _error(self, module_id: str, exc: BaseException, attempt: int, trace_id: str | None) -> ModuleLoadError:
        error = ModuleLoadError(module_id, self.classify(exc), attempt, trace_id)
        error.__cause__ = exc
        return error


class ModuleLoader(_Base[T]):
    """Load a module with retries: ``ModuleLoader(fetch)(module_id, parent=carrier)``."""

    def __init__(self, load: Callable[[str], T], **options: Any) -> None:
        if inspect.iscoroutinefunction(load):
            raise TypeError("use AsyncModuleLoader for a coroutine function")
        super().__init__(load, **options)

    def __call__(self, module_id: str, *, parent: Parent | None = None) -> T:
        attempt, trace_id = 0, None
        try:
            for retrying in Retrying(**self._policy):
                with retrying:
                    attempt = retrying.retry_state.attempt_number
                    attributes = {LOAD_ATTEMPT: attempt, LOAD_ATTEMPTS_MAX: self.attempts}
                    with load_request(module_id, parent=parent, attributes=attributes) as span:
                        trace_id = _trace_id(span) or trace_id
                        return self._load(module_id)  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - turned into the one error a caller handles
            raise self._error(module_id, exc, attempt, trace_id) from exc
        raise AssertionError("unreachable")  # pragma: no cover


class AsyncModuleLoader(_Base[T]):
    """``await AsyncModuleLoader(fetch, timeout_s=2)(module_id, parent=carrier)``; each attempt may time out."""

    def __init__(self, load: Callable[[str], Awaitable[T]], *, timeout_s: float | None = None, **options: Any) -> None:
        super().__init__(load, **options)
        self.timeout_s = timeout_s

    async def __call__(self, module_id: str, *, parent: Parent | None = None) -> T:
        attempt, trace_id = 0, None
        try:
            async for retrying in AsyncRetrying(**self._policy):
                with retrying:
                    attempt = retrying.retry_state.attempt_number
                    attributes = {LOAD_ATTEMPT: attempt, LOAD_ATTEMPTS_MAX: self.attempts}
                    async with load_request(module_id, parent=parent, attributes=attributes) as span:
                        trace_id = _trace_id(span) or trace_id
                        return await asyncio.wait_for(self._load(module_id), self.timeout_s)
        except Exception as exc:  # noqa: BLE001
            raise self._error(module_id, exc, attempt, trace_id) from exc
        raise AssertionError("unreachable")  # pragma: no cover


def _trace_id(span: Any) -> str | None:
    context = span.get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None
