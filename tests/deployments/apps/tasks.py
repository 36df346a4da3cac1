"""A Celery worker as users run it: configure() and the Celery integration at import."""

from __future__ import annotations

import os

from celery import Celery

import moduletrace
from moduletrace.instrumentation.integrations import celery as moduletrace_celery

moduletrace.configure(service_name="module-worker", instrument_httpx=False)
moduletrace_celery.instrument()

app = Celery("tasks", broker=os.environ["APP_BROKER"], backend=os.environ["APP_BROKER"])
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="load_module")
def load_module(module_id: str) -> str:
    # No carrier argument: the trace arrives in the task's headers.
    with moduletrace.load_request(module_id):
        with moduletrace.load_db_query(module_id):
            return module_id
