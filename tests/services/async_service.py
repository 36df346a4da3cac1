"""A real async module service, run the way users run theirs, instrumented with moduletrace.

    MODULETRACE_SERVICE_DSN=postgresql+asyncpg://... python -m tests.services.async_service \\
        --port P --redis redis://127.0.0.1:R/0 --spans spans.jsonl --truth truth.jsonl --mode recorded

FastAPI on uvicorn; async SQLAlchemy on asyncpg (a real pool) with opentelemetry-instrumentation-
sqlalchemy, so each query is a CLIENT span with ``db.system`` inside ``module_load_db_query``;
Redis as the cache.

POST /modules/{id}  create: ``module_create_start``, then answers with the creation's carrier at
                    once. Write-behind: a background task, started inside the create span (so it
                    continues its trace), waits for the next flush (a few random ms), commits the
                    row inside ``module_create_db_commit``, and some random ms later sets the cache
                    entry inside ``module_create_cache_update``.
GET /modules/{id}?traceparent=..&tracestate=..
                    load: ``module_load_request`` continuing the creation's carrier, a cache read,
                    then the row read inside ``module_load_db_query``; 404 "failed to load" when
                    the row is not there yet.

--mode recorded     each load records what it saw (``record_data_version(cache_hit=)`` on the
                    request, ``found=`` / ``observed_version=`` on the query) and the creation what
                    it wrote (``version=``, ``cache_version=``); --mode unrecorded records nothing.

Whatever the mode, every load appends its ground truth to --truth (JSON lines: module_id,
trace_id, load_span_id, saw_row, cache_hit, error). SIGINT (uvicorn's graceful stop) lets pending
write-behind tasks finish and flushes the spans (``moduletrace.shutdown()`` in the lifespan).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from redis.asyncio import Redis
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

import moduletrace

DSN_ENV = "MODULETRACE_SERVICE_DSN"  # the environment, not argv: `ps` shows argv
metadata = MetaData()
modules = Table(
    "modules",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("carrier", Text, nullable=False),
    Column("version", Integer, nullable=False),
)


class ModuleNotFound(LookupError):
    """The row is not there (yet): the bare "failed to load" users see."""


def build_app(args: argparse.Namespace) -> FastAPI:
    recorded = args.mode == "recorded"
    rng = random.Random(args.seed)
    state: dict[str, Any] = {}
    pending: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        moduletrace.configure(service_name=f"module-service-{args.mode}", file=args.spans, exit_timeout=10)
        engine = create_async_engine(os.environ[DSN_ENV], pool_size=20, max_overflow=10, pool_timeout=10)
        # skip_dep_check: the instrumentation declares "sqlalchemy < 2.1" and would do nothing on 2.1;
        # its engine events are unchanged there, and the test checks that each query is a CLIENT span.
        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, enable_commenter=False, skip_dep_check=True)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
        cache = Redis.from_url(args.redis)
        await cache.flushdb()
        truth = open(args.truth, "a", buffering=1)  # noqa: SIM115 - closed below; one line per load
        state.update(engine=engine, cache=cache, truth=truth)
        try:
            yield
        finally:
            # Graceful stop: the write-behind tasks finish before the pool closes and spans flush.
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            await cache.aclose()
            await engine.dispose()
            truth.close()
            moduletrace.shutdown(timeout=10)

    app = FastAPI(lifespan=lifespan)

    async def write_behind(module_id: str, carrier: dict[str, str]) -> None:
        await asyncio.sleep(rng.uniform(0, args.flush_ms) / 1000)  # the write-behind queue's next flush
        with moduletrace.db_commit(module_id):
            async with state["engine"].begin() as conn:
                await conn.execute(insert(modules).values(id=module_id, carrier=json.dumps(carrier), version=1))
            if recorded:
                moduletrace.record_data_version(version=1)
        await asyncio.sleep(rng.uniform(0, args.cache_lag_ms) / 1000)  # the cache lags the database
        with moduletrace.cache_update(module_id):
            await state["cache"].set(f"module:{module_id}", json.dumps({"id": module_id, "version": 1}))
            if recorded:
                moduletrace.record_data_version(cache_version=1)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/modules/{module_id}")
    async def create(module_id: str) -> dict[str, Any]:
        with moduletrace.create_start(module_id):
            carrier = moduletrace.carrier()
            # Created inside the span: the task's copy of the context continues the creation's trace.
            task = asyncio.create_task(write_behind(module_id, carrier))
        pending.add(task)
        task.add_done_callback(pending.discard)
        return {"id": module_id, "carrier": carrier}

    @app.get("/modules/{module_id}")
    async def load(module_id: str, traceparent: str | None = None, tracestate: str | None = None) -> Any:
        carrier = {k: v for k, v in (("traceparent", traceparent), ("tracestate", tracestate)) if v}
        cache_hit = saw_row = False
        error = None
        try:
            with moduletrace.load_request(module_id, parent=carrier or None) as span:
                ids = span.get_span_context()
                cache_hit = await state["cache"].get(f"module:{module_id}") is not None
                if recorded:
                    moduletrace.record_data_version(cache_hit=cache_hit)
                with moduletrace.load_db_query(module_id):
                    async with state["engine"].connect() as conn:
                        row = (await conn.execute(select(modules.c.version).where(modules.c.id == module_id))).first()
                    saw_row = row is not None
                    if recorded:
                        moduletrace.record_data_version(found=saw_row, observed_version=row.version if row else None)
                    if row is None:
                        raise ModuleNotFound(module_id)
        except ModuleNotFound:
            return JSONResponse({"error": "failed to load"}, status_code=404)
        except Exception as exc:
            error = type(exc).__name__  # uvicorn logs it and answers 500
            raise
        finally:
            state["truth"].write(
                json.dumps(
                    {
                        "module_id": module_id,
                        "trace_id": format(ids.trace_id, "032x"),
                        "load_span_id": format(ids.span_id, "016x"),
                        "saw_row": saw_row,
                        "cache_hit": cache_hit,
                        "error": error,
                    }
                )
                + "\n"
            )
        return {"id": module_id, "version": row.version}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--spans", required=True, help="OTLP JSON lines file for the spans")
    parser.add_argument("--truth", required=True, help="JSON lines file: what each load saw")
    parser.add_argument("--mode", choices=("recorded", "unrecorded"), required=True)
    parser.add_argument("--flush-ms", type=float, default=200, help="write-behind delay before the commit, at most")
    parser.add_argument("--cache-lag-ms", type=float, default=50, help="cache update after the commit, at most")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    # A keep-alive longer than uvicorn's 5 s default: otherwise a busy client can pick an idle
    # connection just as the server closes it (a ReadError that says nothing about modules).
    uvicorn.run(
        build_app(args), host="127.0.0.1", port=args.port, log_level="warning", lifespan="on", timeout_keep_alive=75
    )


if __name__ == "__main__":
    main()
