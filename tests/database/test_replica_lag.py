"""record_replica_lag: a read from a lagging replica carries how far behind its data was."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

import moduletrace
from moduletrace.conventions import DB_REPLICA, DB_REPLICA_AS_OF_NS, DB_REPLICA_LAG_MS, DB_REPLICA_PENDING_BYTES
from tests.conftest import Recorded
from tests.database.conftest import APPLY_DELAY_MS
from tests.support.postgres import PostgresServer


def connect(server: PostgresServer) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        dbname=server.database,
        autocommit=True,
    )


def insert(primary: PostgresServer) -> tuple[str, int]:
    """A new module committed on the primary; its id and the commit's end (ns)."""
    module_id = uuid.uuid4().hex
    with connect(primary) as connection:
        connection.execute("INSERT INTO modules VALUES (%s, 'x')", (module_id,))
    return module_id, time.time_ns()


def test_a_read_right_after_the_commit_sees_nothing_and_records_the_replica_behind_it(
    primary: PostgresServer, replica: PostgresServer, spans: Recorded
) -> None:
    module_id, committed_ns = insert(primary)
    with connect(replica) as connection, moduletrace.load_db_query(module_id) as q:
        row = connection.execute("SELECT body FROM modules WHERE id = %s", (module_id,)).fetchone()
        lag = moduletrace.record_replica_lag(connection)
        q.found(row is not None)
    attributes = spans.one("module_load_db_query").attributes or {}
    assert row is None and lag is not None and lag.replica
    assert attributes[DB_REPLICA] is True and attributes[DB_REPLICA_PENDING_BYTES] > 0
    assert attributes[DB_REPLICA_AS_OF_NS] < committed_ns  # its data predates the commit
    assert attributes[DB_REPLICA_LAG_MS] == lag.lag_ms and lag.lag_ms > 0


def test_once_the_delay_has_passed_the_replica_has_the_row_and_no_lag(
    primary: PostgresServer, replica: PostgresServer, spans: Recorded
) -> None:
    module_id, committed_ns = insert(primary)
    time.sleep(APPLY_DELAY_MS / 1000 + 0.5)
    with connect(replica) as connection, moduletrace.load_db_query(module_id):
        row = connection.execute("SELECT body FROM modules WHERE id = %s", (module_id,)).fetchone()
        lag = moduletrace.record_replica_lag(connection)
    assert row is not None and lag is not None
    assert lag.lag_ms == 0 and lag.pending_bytes == 0 and lag.as_of_ns is not None and lag.as_of_ns > committed_ns


def test_on_the_primary_it_records_only_that_the_read_was_not_on_a_replica(
    primary: PostgresServer, spans: Recorded
) -> None:
    with connect(primary) as connection, moduletrace.load_db_query("m"):
        lag = moduletrace.record_replica_lag(connection)
    assert lag == moduletrace.ReplicaLag(False)
    attributes = spans.one("module_load_db_query").attributes or {}
    assert attributes[DB_REPLICA] is False and DB_REPLICA_LAG_MS not in attributes


def test_a_sqlalchemy_connection_and_session_work_the_same(
    primary: PostgresServer, replica: PostgresServer, spans: Recorded
) -> None:
    from sqlalchemy.orm import Session

    insert(primary)
    engine = create_engine(replica.url("postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            by_connection = moduletrace.record_replica_lag(connection)
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            by_session = moduletrace.record_replica_lag(session)
    finally:
        engine.dispose()
    assert by_connection is not None and by_connection.replica and by_connection.pending_bytes
    assert by_session is not None and by_session.replica


async def test_asyncpg_and_sqlalchemy_async_connections_work_the_same(
    primary: PostgresServer, replica: PostgresServer, spans: Recorded
) -> None:
    insert(primary)
    connection = await asyncpg.connect(replica.url())
    try:
        with moduletrace.load_db_query("m"):
            by_asyncpg = await moduletrace.arecord_replica_lag(connection)
    finally:
        await connection.close()
    engine = create_async_engine(replica.url("postgresql+asyncpg"))
    try:
        async with engine.connect() as async_connection:
            by_sqlalchemy = await moduletrace.arecord_replica_lag(async_connection)
    finally:
        await engine.dispose()
    assert by_asyncpg is not None and by_asyncpg.replica and (by_asyncpg.lag_ms or 0) > 0
    assert by_sqlalchemy is not None and by_sqlalchemy.replica
    assert (spans.one("module_load_db_query").attributes or {})[DB_REPLICA] is True


@pytest.mark.usefixtures("lenient")
def test_a_failing_connection_records_nothing_and_never_raises(spans: Recorded) -> None:
    class Broken:
        def cursor(self) -> Any:
            raise OSError("connection closed")

    with moduletrace.load_db_query("m"):
        assert moduletrace.record_replica_lag(Broken()) is None
    assert DB_REPLICA not in (spans.one("module_load_db_query").attributes or {})
