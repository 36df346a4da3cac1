"""A small real create or load service, instrumented with moduletrace, for cross-process tests.

    python -m tests.support.lifecycle_service create|load PORT DB_PATH [LOAD_URL]

create: POST /modules/{id}  writes the module row and its trace carrier in SQLite (db_commit),
        updates an index table (cache_update), then asks the load service to load it through an
        httpx client (traceparent in headers); answers {"id", "carrier"}. For an id starting
        with "race-" it asks for the load *before* committing: a real race, on purpose.
load:   GET /modules/{id}   continues the creation's trace (carrier stored with the row, else the
        incoming request's traceparent) and links the incoming request's context; reads the
        row (load_db_query); 404 when the row is not there yet.
Spans go over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT; SIGTERM stops the server and the exit
hook flushes them.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
from opentelemetry import context, propagate

import moduletrace
from moduletrace.demo.services import JsonHandler


def main() -> None:
    role, port, db_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    load_url = sys.argv[4] if len(sys.argv) > 4 else None
    moduletrace.configure(service_name=f"{role}-service", exit_timeout=10)
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS modules (id TEXT PRIMARY KEY, carrier TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS module_index (id TEXT PRIMARY KEY)")

    class Handler(JsonHandler):
        def do_POST(self) -> None:  # noqa: N802
            module_id = self.path.rsplit("/", 1)[-1]
            racing = module_id.startswith("race-")
            with moduletrace.create_start(module_id):
                carrier = moduletrace.carrier()
                if load_url and racing:
                    httpx.get(f"{load_url}/modules/{module_id}", timeout=10)  # too early: 404
                with moduletrace.db_commit(module_id), sqlite3.connect(db_path) as db:
                    db.execute("INSERT INTO modules VALUES (?, ?)", (module_id, json.dumps(carrier)))
                with moduletrace.cache_update(module_id), sqlite3.connect(db_path) as db:
                    db.execute("INSERT INTO module_index VALUES (?)", (module_id,))
                if load_url and not racing:
                    httpx.get(f"{load_url}/modules/{module_id}", timeout=10).raise_for_status()
            self.reply(200, {"id": module_id, "carrier": carrier})

        def do_GET(self) -> None:  # noqa: N802
            module_id = self.path.rsplit("/", 1)[-1]
            # What a server instrumentation does: the incoming request's context becomes current.
            incoming = propagate.extract(dict(self.headers))
            token = context.attach(incoming)
            try:
                with sqlite3.connect(db_path) as db:
                    row = db.execute("SELECT carrier FROM modules WHERE id = ?", (module_id,)).fetchone()
                carrier = json.loads(row[0]) if row else incoming
                with moduletrace.load_request(module_id, parent=carrier):
                    self._query(module_id)
            except LookupError:
                self.reply(404, {"error": "failed to load"})
                return
            finally:
                context.detach(token)
            self.reply(200, {"id": module_id})

        @moduletrace.load_db_query(id_param="module_id")
        def _query(self, module_id: str) -> Any:
            with sqlite3.connect(db_path) as db:
                row = db.execute("SELECT id FROM modules WHERE id = ?", (module_id,)).fetchone()
            if row is None:
                raise LookupError(f"module {module_id} not found")
            return row

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
