"""Celery: the trace travels in task headers, and pool processes flush before they exit.

In the module that creates the Celery app, after ``moduletrace.configure()``::

    from moduletrace.instrumentation.integrations import celery as moduletrace_celery
    moduletrace_celery.instrument()

Publishing inside a lifecycle span (or inside ``continuing(carrier)``) puts ``traceparent`` in the
task's headers (opentelemetry-instrumentation-celery), and the task's stage spans continue that
trace without a carrier argument. Prefork pool processes end with ``os._exit``, skipping atexit;
Celery's ``worker_process_shutdown`` signal flushes them first (the threads pool: ``worker_shutdown``).
"""

from __future__ import annotations

from typing import Any

from moduletrace.instrumentation import exit_hooks
from moduletrace.instrumentation._guard import internal_error, warn_once


def instrument(**instrumentor_options: Any) -> None:
    """Instrument Celery with opentelemetry-instrumentation-celery and connect the shutdown hooks."""
    try:
        exit_hooks.connect_celery()
        try:
            from opentelemetry.instrumentation.celery import CeleryInstrumentor
        except ImportError:
            warn_once(
                "celery-instrumentation",
                "moduletrace: opentelemetry-instrumentation-celery is not installed: tasks do not continue "
                "the publisher's trace (pip install 'moduletrace[celery]')",
            )
            return
        instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(**instrumentor_options)
    except Exception as exc:  # noqa: BLE001 - start-up help must not stop the worker
        internal_error("celery instrument", exc)


def uninstrument() -> None:
    """Undo ``instrument()``'s instrumentation (the shutdown hooks stay: they only flush)."""
    try:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError:
        return
    instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
