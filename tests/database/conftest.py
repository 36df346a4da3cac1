"""A real PostgreSQL primary and a streaming replica that applies every commit 1.5 s late."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer, running_postgres, running_replica
from tests.support.processes import wait_until

#: recovery_min_apply_delay of the replica: a commit is visible there this long after the primary's.
APPLY_DELAY_MS = 1500


#: Both servers: statement statistics, and a connection limit a test can exhaust.
SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "max_connections": "12"}


@pytest.fixture(scope="session")
def primary() -> Iterator[PostgresServer]:
    with running_postgres(settings=SETTINGS) as server:
        server.superuser(
            "GRANT pg_monitor TO moduletrace; CREATE EXTENSION pg_stat_statements;"
            "CREATE TABLE modules (id text PRIMARY KEY, body text NOT NULL); ALTER TABLE modules OWNER TO moduletrace;"
        )
        yield server


@pytest.fixture(scope="session")
def replica(primary: PostgresServer) -> Iterator[PostgresServer]:
    with running_replica(primary, apply_delay_ms=APPLY_DELAY_MS, settings=SETTINGS) as server:
        # One transaction applied before the tests: a replica that has applied none since it
        # started cannot tell how far behind it is (record_replica_lag then records no lag).
        primary.superuser("CREATE TABLE warm_up ()")
        wait_until(lambda: "warm_up" in server.superuser("SELECT relname FROM pg_class WHERE relname = 'warm_up'"))
        yield server
