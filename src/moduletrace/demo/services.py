"""The demo's two services, each its own process, instrumented with moduletrace.

    python -m moduletrace.demo.services module PORT DB_PATH
    python -m moduletrace.demo.services canvas PORT DB_PATH POOL_SIZE POOL_TIMEOUT_S
    python -m moduletrace.demo.services indexer - DB_PATH          (demo --broker only)

module-service  POST /modules/{id}: writes the module row with its trace carrier and commits
                (db_commit), then updates the index the canvas reads (cache_update) and answers
                {"id", "carrier", "token"}. With ``X-Demo-Fault: race`` the index update lags:
                a background indexer writes it only after the canvas has tried to load the
                module (the race of hypothesis 3, made certain). POST /tokens issues a token
                with the TTL asked for (hypothesis 1 needs short-lived ones).
                With a broker (MODULETRACE_DEMO_BROKER), the index update is the indexer's: the
                creation publishes the module's event and waits for the index to have it; with
                ``X-Demo-Fault: race`` it first queues a slow job ahead of the event and answers
                at once, so the event waits in the broker until the canvas has tried the load.
indexer-service consumes the events (Redis stream or RabbitMQ queue, one at a time) and updates
                the index in a cache_update that continues the module's trace from the message,
                with the consumer's lag and the queue's depth at receipt (the messaging
                integration). A slow job (a bulk re-index, say) holds it until the canvas has
                tried to load the module the job names.
canvas-service  GET /modules/{id}: continues the creation's trace from the carrier stored with
                the row, checks the bearer token (401 when expired), takes a pooled connection
                (503 when the pool times out: hypothesis 2) and reads the index (404 when the
                module is not there yet: "failed to load"). GET /report?hold_ms= holds a pooled
                connection, as a slow report query does.

The token secret comes from MODULETRACE_DEMO_SECRET; spans go wherever moduletrace.configure()
sends them (MODULETRACE_FILE or OTEL_EXPORTER_OTLP_ENDPOINT). SIGTERM stops a service and
flushes its spans.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import moduletrace
from moduletrace.conventions import DB_COLLECTION_NAME, DB_SYSTEM_NAME
from moduletrace.demo import tokens
from moduletrace.demo.broker import GROUP, Broker, Bus, connect
from moduletrace.demo.errors import ModuleNotFound
from moduletrace.demo.pool import ConnectionPool, PoolTimeout
from moduletrace.instrumentation.integrations import messaging

DB_ATTRIBUTES = {DB_SYSTEM_NAME: "sqlite", DB_COLLECTION_NAME: "module_index"}


def schema(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS modules (id TEXT PRIMARY KEY, carrier TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS module_index (id TEXT PRIMARY KEY)")
        db.execute("CREATE TABLE IF NOT EXISTS load_attempts (id TEXT, at REAL)")


class JsonHandler(BaseHTTPRequestHandler):
    """Quiet HTTP/1.1 handler answering JSON."""

    protocol_version = "HTTP/1.1"

    def reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def wait_for_row(db: sqlite3.Connection, table: str, module_id: str, timeout: float = 10) -> bool:
    """Poll ``table`` (load_attempts, module_index) until it holds ``module_id``; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (module_id,)).fetchone():  # noqa: S608 - our tables
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def module_service(port: int, db_path: str, secret: bytes, bus: Bus | None = None) -> ThreadingHTTPServer:
    def index_later(module_id: str, carrier: dict[str, str]) -> None:
        """The lagging indexer: it catches up only once the canvas has already tried the load."""
        with sqlite3.connect(db_path, timeout=10) as db:
            wait_for_row(db, "load_attempts", module_id)
            with moduletrace.cache_update(module_id, parent=carrier):
                db.execute("INSERT OR IGNORE INTO module_index VALUES (?)", (module_id,))

    class Handler(JsonHandler):
        def do_POST(self) -> None:  # noqa: N802
            path = urlsplit(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path.path == "/tokens":
                ttl = float(parse_qs(path.query).get("ttl", ["600"])[0])
                self.reply(200, {"token": tokens.issue(secret, "demo-user", ttl)})
                return
            module_id = path.path.rsplit("/", 1)[-1]
            lagging = self.headers.get("X-Demo-Fault") == "race"
            with moduletrace.create_start(module_id):
                carrier = moduletrace.carrier()
                with moduletrace.db_commit(module_id, attributes={DB_SYSTEM_NAME: "sqlite"}):
                    with sqlite3.connect(db_path, timeout=10) as db:
                        db.execute("INSERT INTO modules VALUES (?, ?)", (module_id, json.dumps(carrier)))
                if bus is not None:
                    event = messaging.published({"module_id": module_id})
                    bus.publish([{"job": "slow", "until_loaded": module_id}, event] if lagging else [event])
                    if not lagging:  # the create answers once the module is loadable
                        with sqlite3.connect(db_path, timeout=10) as db:
                            wait_for_row(db, "module_index", module_id)
                elif lagging:
                    threading.Thread(target=index_later, args=(module_id, carrier), daemon=True).start()
                else:
                    with moduletrace.cache_update(module_id), sqlite3.connect(db_path, timeout=10) as db:
                        db.execute("INSERT INTO module_index VALUES (?)", (module_id,))
            self.reply(201, {"id": module_id, "carrier": carrier, "token": tokens.issue(secret, "demo-user", 600)})

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def canvas_service(port: int, db_path: str, secret: bytes, pool_size: int, pool_timeout: float) -> ThreadingHTTPServer:
    pool = ConnectionPool(db_path, pool_size, pool_timeout)

    @moduletrace.load_db_query(attributes=DB_ATTRIBUTES)
    def read_index(module_id: str, connection: sqlite3.Connection) -> str:
        row = connection.execute("SELECT id FROM module_index WHERE id = ?", (module_id,)).fetchone()
        moduletrace.record_data_version(cache_hit=row is not None)  # what the read saw decides, not the clocks
        if row is None:
            raise ModuleNotFound(f"module {module_id} not found")
        return str(row[0])

    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802
            path = urlsplit(self.path)
            if path.path == "/report":
                hold = float(parse_qs(path.query).get("hold_ms", ["300"])[0]) / 1000
                try:
                    with pool.connection():
                        time.sleep(hold)
                except PoolTimeout:
                    pass
                self.reply(200, {})
                return
            if path.path == "/pool":
                self.reply(200, {"in_use": pool.in_use, "size": pool.size})
                return
            module_id = path.path.rsplit("/", 1)[-1]
            with sqlite3.connect(db_path, timeout=10) as db:
                row = db.execute("SELECT carrier FROM modules WHERE id = ?", (module_id,)).fetchone()
            carrier = json.loads(row[0]) if row else None
            status, body = 200, {"id": module_id}
            try:
                with moduletrace.load_request(module_id, parent=carrier):
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    tokens.verify(secret, token)
                    with pool.connection() as connection:
                        read_index(module_id, connection)
            except (tokens.TokenExpired, tokens.TokenInvalid):
                status, body = 401, {"error": "failed to load"}
            except PoolTimeout:
                status, body = 503, {"error": "failed to load"}
            except ModuleNotFound:
                status, body = 404, {"error": "failed to load"}
            finally:
                with sqlite3.connect(db_path, timeout=10) as db:
                    db.execute("INSERT INTO load_attempts VALUES (?, ?)", (module_id, time.time()))
            self.reply(status, body)

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def indexer(db_path: str, bus: Bus, stopping: threading.Event) -> None:
    """Consume the events until ``stopping``: each module's cache update, in the module's trace."""
    system, destination = bus.broker.system, bus.broker.destination
    with sqlite3.connect(db_path, timeout=10) as db:
        while not stopping.is_set():
            delivery = bus.take(timeout_s=0.1)
            if delivery is None:
                continue
            if delivery.fields.get("job") == "slow":
                wait_for_row(db, "load_attempts", delivery.fields.get("until_loaded", ""))
            elif "module_id" in delivery.fields:
                module_id = delivery.fields["module_id"]
                event = messaging.received(
                    delivery.fields,
                    system=system,
                    destination=destination,
                    message_id=delivery.message_id,
                    consumer_group=GROUP if system == "redis" else None,
                    queue_depth=bus.depth(),
                    broker_published_ns=delivery.broker_published_ns,
                    received_ns=delivery.received_ns,
                )
                with moduletrace.cache_update(module_id, parent=event.carrier, attributes=event.attributes):
                    db.execute("INSERT OR IGNORE INTO module_index VALUES (?)", (module_id,))
                    db.commit()
            bus.ack(delivery)


def _bus() -> Bus | None:
    url = os.environ.get("MODULETRACE_DEMO_BROKER")
    return connect(Broker(url, os.environ["MODULETRACE_DEMO_DESTINATION"])) if url else None


def main(argv: list[str]) -> None:
    role, db_path = argv[0], argv[2]
    secret = bytes.fromhex(os.environ["MODULETRACE_DEMO_SECRET"])
    moduletrace.configure(service_name=f"{role}-service", exit_timeout=10)
    bus = _bus() if role in ("module", "indexer") else None  # the canvas never talks to the broker
    if role == "indexer":
        assert bus is not None, "the indexer needs MODULETRACE_DEMO_BROKER"
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        print("ready", flush=True)
        indexer(db_path, bus, stopping)
        bus.close()
        return
    port = int(argv[1])
    if role == "module":
        schema(db_path)
        server = module_service(port, db_path, secret, bus)
    else:
        server = canvas_service(port, db_path, secret, int(argv[3]), float(argv[4]))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever()
    server.server_close()
    if bus is not None:
        bus.close()


if __name__ == "__main__":
    main(sys.argv[1:])
