"""A real, small connection pool for the demo's SQLite database: a bounded queue with a timeout.

It behaves as production pools do under load (SQLAlchemy's QueuePool, psycopg_pool): a caller
waits for a free connection and gives up after ``timeout`` seconds with :class:`PoolTimeout`.
"""

from __future__ import annotations

import queue
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


class PoolTimeout(Exception):
    """No connection became free within the pool's timeout."""


class ConnectionPool:
    def __init__(self, path: str, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._free: queue.Queue[sqlite3.Connection] = queue.Queue()
        for _ in range(size):
            connection = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            self._free.put(connection)

    @property
    def in_use(self) -> int:
        return self.size - self._free.qsize()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = self._free.get(timeout=self.timeout)
        except queue.Empty:
            raise PoolTimeout(
                f"pool of size {self.size} exhausted, connection timed out, timeout {self.timeout:g}s"
            ) from None
        try:
            yield connection
        finally:
            self._free.put(connection)

    def close(self) -> None:
        while not self._free.empty():
            self._free.get_nowait().close()
