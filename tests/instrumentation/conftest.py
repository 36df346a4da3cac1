"""A real SQLAlchemy pool on SQLite with one connection, and a slow report that holds it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool

import moduletrace

POOL_TIMEOUT_S = 0.2


@pytest.fixture
def starved_engine(tmp_path: Path) -> Iterator[Any]:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'modules.db'}",
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_S,
    )
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE modules (id TEXT PRIMARY KEY)"))
        connection.execute(text("INSERT INTO modules VALUES ('m-ok')"))
    moduletrace.instrument_sqlalchemy_pool(engine, name="modules-db")
    yield engine
    moduletrace.uninstrument_sqlalchemy_pool(engine)
    engine.dispose()


@contextmanager
def only_connection_held(engine: Any) -> Iterator[None]:
    """A slow report query holds the pool's only connection for the duration of the block."""
    holding, release = threading.Event(), threading.Event()

    def slow_report() -> None:
        with engine.connect():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=slow_report)
    holder.start()
    holding.wait(5)
    try:
        yield
    finally:
        release.set()
        holder.join()
