"""A FastAPI service as users run it under uvicorn / gunicorn: configure() at import, nothing else."""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI

import moduletrace
from moduletrace.instrumentation.integrations.fastapi import instrument_app

moduletrace.configure(service_name="module-service", instrument_httpx=False)
app = FastAPI()
if os.environ.get("APP_INSTRUMENT_APP"):
    instrument_app(app)


@app.post("/modules/{module_id}")
async def create(module_id: str) -> dict[str, str]:
    with moduletrace.create_start(module_id):
        with moduletrace.db_commit(module_id):
            pass
        with moduletrace.cache_update(module_id):
            pass
        return moduletrace.carrier()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"pid": str(os.getpid())}


if __name__ == "__main__":  # `python -m tests.deployments.apps.asgi PORT`: uvicorn.run() in a script
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]))
