"""FastAPI: one line after creating the app::

    from moduletrace.instrumentation.integrations.fastapi import instrument_app, module_carrier
    instrument_app(app)

It adds, without touching requests:

- a flush after the app's lifespan shutdown (uvicorn runs it once the last request has finished);
- a check, now and at start-up, that no stage decorator sits *above* a route decorator, where it
  has no effect: ``@app.get`` registers the function it is given, so a decorator above it wraps a
  function FastAPI never calls;
- :func:`module_carrier`, a dependency that reads the creation's carrier from request headers::

    @app.get("/modules/{module_id}")                      # the route decorator first (outermost)
    @moduletrace.load_request(parent_param="carrier")
    async def load(module_id: str, carrier: ModuleCarrier) -> Module: ...

The request's own server span comes from FastAPI's telemetry (or opentelemetry-instrumentation-fastapi):
the load then continues the creation's trace and links the request's span.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from moduletrace.instrumentation import configuration
from moduletrace.instrumentation._guard import internal_error
from moduletrace.instrumentation.integrations._placement import report_misplaced

#: The headers :func:`module_carrier` reads: the creation's W3C ``traceparent`` / ``tracestate``, kept
#: apart from the request's own ``traceparent`` (which belongs to the caller's trace).
TRACEPARENT_HEADER = "x-module-traceparent"
TRACESTATE_HEADER = "x-module-tracestate"


def module_carrier(request: Request) -> dict[str, str]:
    """The creation's carrier sent back by the client in ``x-module-traceparent`` / ``x-module-tracestate``.

    Empty when the request has none (the load then starts from the request's context and the
    detector still matches it by ``module.id``).
    """
    found: dict[str, str] = {}
    traceparent = request.headers.get(TRACEPARENT_HEADER)
    if traceparent:
        found["traceparent"] = traceparent
        tracestate = request.headers.get(TRACESTATE_HEADER)
        if tracestate:
            found["tracestate"] = tracestate
    return found


#: ``carrier: ModuleCarrier`` in an endpoint's parameters: the carrier from the request headers.
ModuleCarrier = Annotated[dict[str, str], Depends(module_carrier)]


def instrument_app(app: FastAPI) -> FastAPI:
    """Flush after the lifespan shutdown and check the stage decorators' placement; returns ``app``."""
    try:
        if getattr(app.state, "moduletrace_instrumented", False):
            return app
        app.state.moduletrace_instrumented = True
        check_decorators(app)
        original = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(target: Any) -> AsyncIterator[Any]:
            try:
                check_decorators(app)  # routes added after instrument_app()
            except Exception as exc:  # noqa: BLE001 - a check must not stop the app's start-up
                internal_error("fastapi check_decorators", exc)
            async with original(target) as state:
                yield state
            await _flush()

        app.router.lifespan_context = lifespan
    except Exception as exc:  # noqa: BLE001 - start-up help must not stop the app
        internal_error("fastapi instrument_app", exc)
    return app


async def _flush() -> None:
    try:
        from anyio import to_thread

        await to_thread.run_sync(configuration.flush, configuration.exit_timeout())
    except Exception as exc:  # noqa: BLE001
        internal_error("fastapi lifespan flush", exc)


def check_decorators(app: FastAPI) -> list[str]:
    """Log (once each) the endpoints whose stage decorator sits above the route decorator.

    Returns their qualified names. Found where the decorated function is a module attribute
    (the usual ``@app.get`` at module level): that attribute is the stage wrapper, while the route
    calls the undecorated function inside it.
    """
    routes = [(route.endpoint, str(getattr(route, "path", "?"))) for route in app.routes if hasattr(route, "endpoint")]
    return report_misplaced(routes, "@app.<method>(...)")
