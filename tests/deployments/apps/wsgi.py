"""A Flask service as users run it under `flask run` / gunicorn: configure() at import, nothing else."""

from __future__ import annotations

import os

from flask import Flask

import moduletrace

moduletrace.configure(service_name="module-service", instrument_httpx=False)
app = Flask(__name__)


@app.post("/modules/<module_id>")
def create(module_id: str) -> dict[str, str]:
    with moduletrace.create_start(module_id):
        with moduletrace.db_commit(module_id):
            pass
        with moduletrace.cache_update(module_id):
            pass
        return moduletrace.carrier()


@app.get("/health")
def health() -> dict[str, str]:
    return {"pid": str(os.getpid())}
