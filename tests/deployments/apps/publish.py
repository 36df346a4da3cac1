"""The creating service: creates modules, keeps their carriers, later publishes their loads to Celery.

Prints one JSON line per module (id and the creation's trace id), then "done" once every task ran.
"""

from __future__ import annotations

import json
import os
import sys

from celery import Celery

import moduletrace
from moduletrace.instrumentation.integrations import celery as moduletrace_celery
from moduletrace.instrumentation.propagation import continuing

moduletrace.configure(service_name="module-service", instrument_httpx=False)
moduletrace_celery.instrument()
app = Celery("publisher", broker=os.environ["APP_BROKER"], backend=os.environ["APP_BROKER"])


@app.task(name="load_module")
def load_module(module_id: str) -> str:  # executed by the worker, declared here to publish it
    raise NotImplementedError


stored: dict[str, dict[str, str]] = {}
for n in range(int(sys.argv[1])):
    module_id = f"m-{n}"
    with moduletrace.create_start(module_id):
        with moduletrace.db_commit(module_id):
            pass
        stored[module_id] = moduletrace.carrier()  # kept with the module

results = []
for module_id, carrier in stored.items():  # later, outside any span: the carrier carries the trace
    with continuing(carrier):
        results.append(load_module.delay(module_id))
for result in results:
    result.get(timeout=20)
for module_id, carrier in stored.items():
    print(json.dumps({"module_id": module_id, "trace_id": carrier["traceparent"].split("-")[1]}), flush=True)
moduletrace.shutdown()
print("done", flush=True)
