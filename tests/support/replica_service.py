"""A module service on a real PostgreSQL primary and its lagging replica, exporting OTLP (run as a process).

    PRIMARY_DSN=... REPLICA_DSN=... OTEL_EXPORTER_OTLP_ENDPOINT=... python -m tests.support.replica_service

It creates modules on the primary and loads them from the replica:
- ``stale-N``: loaded right after the commit: the replica (recovery_min_apply_delay) has not applied
  it yet, the read finds nothing and records the replica's lag; the load fails;
- ``late-N``: loaded after the delay: found;
- ``starved-1``: loaded while every connection slot of the primary is held (max_connections):
  the load cannot connect and fails with "too many clients".
A writer commits a tick every 100 ms meanwhile, so the replica is always behind while it runs.
Prints the phases' times as JSON on its last line, then exits (the SDK flushes at exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any

import psycopg

import moduletrace

APPLY_DELAY_S = float(os.environ.get("APPLY_DELAY_S", "1.5"))


def connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


def create(primary: psycopg.Connection[Any], module_id: str) -> dict[str, str]:
    with moduletrace.create_start(module_id):
        with moduletrace.db_commit(module_id):
            primary.execute("INSERT INTO modules VALUES (%s, 'body')", (module_id,))
        return moduletrace.carrier()


def load(dsn: str, module_id: str, parent: dict[str, str], replica: psycopg.Connection[Any] | None) -> bool:
    try:
        with moduletrace.load_request(module_id, parent=parent):
            with moduletrace.load_db_query(module_id) as q:
                connection = replica if replica is not None else connect(dsn)
                try:
                    row = connection.execute("SELECT body FROM modules WHERE id = %s", (module_id,)).fetchone()
                    moduletrace.record_replica_lag(connection)
                finally:
                    if replica is None:
                        connection.close()
                q.found(row is not None)
            if row is None:
                raise LookupError(f"module {module_id} not found")
        return True
    except (LookupError, psycopg.OperationalError):
        return False


def main() -> None:
    moduletrace.configure(service_name="module-service")
    primary_dsn, replica_dsn = os.environ["PRIMARY_DSN"], os.environ["REPLICA_DSN"]
    primary, replica = connect(primary_dsn), connect(replica_dsn)
    primary.execute("CREATE TABLE IF NOT EXISTS ticks (at timestamptz)")
    stop = threading.Event()

    def tick() -> None:
        with connect(primary_dsn) as writer:
            while not stop.wait(0.1):
                writer.execute("INSERT INTO ticks VALUES (clock_timestamp())")

    writer = threading.Thread(target=tick, daemon=True)
    writer.start()
    times: dict[str, Any] = {"started_ns": time.time_ns()}
    time.sleep(APPLY_DELAY_S + 0.5)  # the ticks reach the replica: it has applied some, is behind on the rest
    results = {}
    for n in range(3):
        module_id = f"stale-{n}"
        results[module_id] = load(replica_dsn, module_id, create(primary, module_id), replica)
        time.sleep(0.3)
    late = {f"late-{n}": create(primary, f"late-{n}") for n in range(2)}
    time.sleep(APPLY_DELAY_S + 0.5)
    for module_id, parent in late.items():
        results[module_id] = load(replica_dsn, module_id, parent, replica)
    starved_parent = create(primary, "starved-1")
    held: list[psycopg.Connection[Any]] = []
    with contextlib.ExitStack() as stack:
        while True:  # every slot a client may take
            try:
                held.append(stack.enter_context(connect(primary_dsn)))
            except psycopg.OperationalError:
                break
        for connection in held:
            connection.execute("BEGIN")  # idle in transaction, as a starved pool's holders often are
            connection.execute("SELECT 1")
        time.sleep(1.5)  # a scrape sees the full server
        times["starved_ns"] = time.time_ns()
        results["starved-1"] = load(primary_dsn, "starved-1", starved_parent, None)
        time.sleep(1.5)
        times["held"] = len(held)
    stop.set()
    writer.join()
    times["results"] = results
    print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
