"""Evidence for a read from a PostgreSQL replica: how far behind its data was at the read.

A load that reads a lagging replica after the commit ended looks clean to the clocks; only the
replica's lag explains why it saw nothing. Call the helper right after the read, on the same
connection, inside ``load_db_query``::

    with moduletrace.load_db_query(module_id) as q:
        row = replica.execute(select_module, {"id": module_id}).first()
        moduletrace.record_replica_lag(replica)   # a DB-API, psycopg or SQLAlchemy connection
        q.found(row is not None)

    # asyncio: asyncpg connections, SQLAlchemy AsyncConnection / AsyncSession
    await moduletrace.arecord_replica_lag(connection)

After the read, not before: the replica only moves forward, so data it had not applied after the
read it had not applied during it either (the conservative side). One round trip of built-in
functions any role may call (``pg_is_in_recovery``, ``pg_last_wal_receive_lsn``,
``pg_last_wal_replay_lsn``, ``pg_last_xact_replay_timestamp``, ``clock_timestamp``). On the
primary it records only ``module.db.replica = false``. Never raises into the caller; on any
failure it records nothing (PostgreSQL only: on another database the query fails, so don't call
it there inside a transaction you mean to keep).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.trace import Span

from moduletrace.conventions import DB_REPLICA, DB_REPLICA_AS_OF_NS, DB_REPLICA_LAG_MS, DB_REPLICA_PENDING_BYTES
from moduletrace.instrumentation._guard import internal_error

__all__ = ["ReplicaLag", "arecord_replica_lag", "record_replica_lag"]

#: One row: in recovery?, WAL received but not applied (bytes), the server's clock, the commit time
#: of the last applied transaction (both as Unix seconds).
LAG_QUERY = (
    "SELECT pg_is_in_recovery(),"
    " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),"
    " extract(epoch FROM clock_timestamp()),"
    " extract(epoch FROM pg_last_xact_replay_timestamp())"
)


class ReplicaLag(NamedTuple):
    """What the replica's data looked like right after the read."""

    replica: bool
    lag_ms: float | None = None  # None on a primary
    as_of_ns: int | None = None  # commit time of the last applied transaction (primary's clock)
    pending_bytes: int | None = None


def record_replica_lag(connection: Any, *, span: Span | None = None) -> ReplicaLag | None:
    """Measure the replica behind ``connection`` (sync) and record it on the current span (or ``span``)."""
    try:
        return _record(_fetch(connection), span)
    except Exception as exc:  # noqa: BLE001
        internal_error("record_replica_lag", exc)
        return None


async def arecord_replica_lag(connection: Any, *, span: Span | None = None) -> ReplicaLag | None:
    """:func:`record_replica_lag` for asyncpg connections and SQLAlchemy's async connections/sessions."""
    try:
        return _record(await _afetch(connection), span)
    except Exception as exc:  # noqa: BLE001
        internal_error("arecord_replica_lag", exc)
        return None


def _fetch(connection: Any) -> tuple[Any, ...]:
    if hasattr(connection, "exec_driver_sql"):  # SQLAlchemy Connection
        return tuple(connection.exec_driver_sql(LAG_QUERY).one())
    if hasattr(connection, "connection") and hasattr(connection, "get_bind"):  # SQLAlchemy Session
        return _fetch(connection.connection())
    cursor = connection.cursor()  # DB-API 2 (psycopg, psycopg2, ...)
    try:
        cursor.execute(LAG_QUERY)
        return tuple(cursor.fetchone())
    finally:
        cursor.close()


async def _afetch(connection: Any) -> tuple[Any, ...]:
    if hasattr(connection, "exec_driver_sql"):  # SQLAlchemy AsyncConnection
        return tuple((await connection.exec_driver_sql(LAG_QUERY)).one())
    if hasattr(connection, "connection") and hasattr(connection, "get_bind"):  # SQLAlchemy AsyncSession
        return await _afetch(await connection.connection())
    return tuple(await connection.fetchrow(LAG_QUERY))  # asyncpg


def _record(row: tuple[Any, ...], span: Span | None) -> ReplicaLag:
    in_recovery, pending, now_s, replayed_s = row
    target = span if span is not None else trace.get_current_span()
    if not in_recovery:
        lag = ReplicaLag(False)
        if target.is_recording():
            target.set_attribute(DB_REPLICA, False)
        return lag
    now_ns = _ns(now_s)
    pending_bytes = int(pending) if pending is not None else None
    if pending_bytes == 0:
        # All it received is applied: its data is as of now (as far as the replica can tell; WAL
        # still in flight from the primary shows on the primary, in pg_stat_replication).
        lag = ReplicaLag(True, 0.0, now_ns, 0)
    elif replayed_s is None:  # WAL waiting, and no transaction applied since it started: unknown
        lag = ReplicaLag(True, None, None, pending_bytes)
    else:
        as_of_ns = min(_ns(replayed_s), now_ns)
        lag = ReplicaLag(True, round((now_ns - as_of_ns) / 1e6, 3), as_of_ns, pending_bytes)
    if target.is_recording():
        attributes: dict[str, Any] = {DB_REPLICA: True}
        for key, value in ((DB_REPLICA_LAG_MS, lag.lag_ms), (DB_REPLICA_AS_OF_NS, lag.as_of_ns)):
            if value is not None:
                attributes[key] = value
        if pending_bytes is not None:
            attributes[DB_REPLICA_PENDING_BYTES] = pending_bytes
        target.set_attributes(attributes)
    return lag


def _ns(seconds: Decimal | float) -> int:
    return int(Decimal(str(seconds)) * 1_000_000_000)
