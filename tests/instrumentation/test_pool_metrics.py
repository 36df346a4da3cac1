"""The pool helpers' metrics: OpenTelemetry's db.client.connection.* from a real pool, in process."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy.exc import TimeoutError as SQLAlchemyPoolTimeout

import moduletrace
from moduletrace import conventions as c
from moduletrace.instrumentation import pool_metrics
from tests.conftest import Measured, Recorded, reset_metrics_globals
from tests.instrumentation.conftest import POOL_TIMEOUT_S, only_connection_held

POOL = {c.DB_CLIENT_CONNECTION_POOL_NAME: "modules-db"}
USED = {**POOL, c.DB_CLIENT_CONNECTION_STATE: c.CONNECTION_STATE_USED}
IDLE = {**POOL, c.DB_CLIENT_CONNECTION_STATE: c.CONNECTION_STATE_IDLE}
TIMED_OUT = {**POOL, c.ERROR_TYPE: "sqlalchemy.exc.TimeoutError"}


def test_a_starved_sqlalchemy_pool_reports_its_use_limit_timeouts_and_waits(
    measured: Measured, spans: Recorded, starved_engine: Any
) -> None:
    with only_connection_held(starved_engine):
        assert measured.point(c.DB_CLIENT_CONNECTION_COUNT, USED).value == 1
        assert measured.point(c.DB_CLIENT_CONNECTION_COUNT, IDLE).value == 0
        with pytest.raises(SQLAlchemyPoolTimeout), moduletrace.load_db_query("m-ok"):
            starved_engine.connect()
    with starved_engine.connect():
        pass

    assert measured.point(c.DB_CLIENT_CONNECTION_MAX, POOL).value == 1
    assert measured.point(c.DB_CLIENT_CONNECTION_COUNT, USED).value == 0
    assert measured.point(c.DB_CLIENT_CONNECTION_COUNT, IDLE).value == 1
    assert measured.point(c.DB_CLIENT_CONNECTION_TIMEOUTS, POOL).value == 1
    assert measured.point(c.DB_CLIENT_CONNECTION_PENDING_REQUESTS, POOL).value == 0
    timed_out = measured.point(c.DB_CLIENT_CONNECTION_WAIT_TIME, TIMED_OUT)
    assert timed_out.count == 1 and POOL_TIMEOUT_S <= timed_out.sum < 2
    served = measured.point(c.DB_CLIENT_CONNECTION_WAIT_TIME, POOL)
    assert served.count == 2 and served.max < POOL_TIMEOUT_S  # the report's checkout, and the one after
    # The span and the series name the same pool, so a failed load joins its pool's metrics.
    (query,) = spans.named("module_load_db_query")
    assert query.attributes[c.POOL_NAME] == POOL[c.DB_CLIENT_CONNECTION_POOL_NAME]
    # The wait is on a bucket that tells it apart (the SDK's default bounds are for milliseconds).
    bounds = list(timed_out.explicit_bounds)
    assert bounds == list(pool_metrics.WAIT_TIME_BUCKETS)
    assert timed_out.bucket_counts[bounds.index(0.25)] == 1  # (0.1, 0.25]: the 0.2 s timeout


def test_pool_wait_reports_what_its_caller_passes_and_the_checkouts_waiting(measured: Measured) -> None:
    in_use = [3]
    waiting, release = threading.Event(), threading.Event()

    def checkout() -> None:
        with moduletrace.pool_wait("orders-db", size=8, in_use=lambda: in_use[0]):
            waiting.set()
            release.wait(5)

    worker = threading.Thread(target=checkout)
    worker.start()
    waiting.wait(5)
    orders = {c.DB_CLIENT_CONNECTION_POOL_NAME: "orders-db"}
    try:
        assert measured.point(c.DB_CLIENT_CONNECTION_PENDING_REQUESTS, orders).value == 1
    finally:
        release.set()
        worker.join()
    in_use[0] = 5  # a callable is read when metrics are collected
    assert measured.point(c.DB_CLIENT_CONNECTION_PENDING_REQUESTS, orders).value == 0
    assert measured.point(c.DB_CLIENT_CONNECTION_MAX, orders).value == 8
    used = {**orders, c.DB_CLIENT_CONNECTION_STATE: c.CONNECTION_STATE_USED}
    assert measured.point(c.DB_CLIENT_CONNECTION_COUNT, used).value == 5
    # An idle count is not made up: pool_wait is not told how many connections the pool holds open.
    assert [dict(p.attributes) for p in measured.points(c.DB_CLIENT_CONNECTION_COUNT)] == [used]
    assert measured.point(c.DB_CLIENT_CONNECTION_WAIT_TIME, orders).count == 1
    assert measured.points(c.DB_CLIENT_CONNECTION_TIMEOUTS) == []


def test_a_timeout_is_counted_and_passes_through_unchanged(measured: Measured) -> None:
    raised = TimeoutError("no connection within 5 s")
    with pytest.raises(TimeoutError) as caught, moduletrace.pool_wait("modules-db", size=2, in_use=2):
        raise raised
    assert caught.value is raised
    assert measured.point(c.DB_CLIENT_CONNECTION_TIMEOUTS, POOL).value == 1
    assert measured.point(c.DB_CLIENT_CONNECTION_WAIT_TIME, {**POOL, c.ERROR_TYPE: "TimeoutError"}).count == 1
    assert measured.point(c.DB_CLIENT_CONNECTION_COUNT, USED).value == 2


def test_an_uninstrumented_pool_is_no_longer_observed(measured: Measured, starved_engine: Any) -> None:
    with starved_engine.connect():
        pass
    assert measured.point(c.DB_CLIENT_CONNECTION_MAX, POOL).value == 1
    moduletrace.uninstrument_sqlalchemy_pool(starved_engine)
    assert measured.points(c.DB_CLIENT_CONNECTION_MAX) == []


def test_without_a_meter_provider_nothing_is_kept_and_the_wait_is_still_timed(spans: Recorded) -> None:
    reset_metrics_globals()
    with moduletrace.load_db_query("m-1"), moduletrace.pool_wait("unmeasured-db", size=1, in_use=1):
        pass
    assert pool_metrics.current() is None
    assert "unmeasured-db" not in pool_metrics._named  # nothing to observe for a provider set later
    assert spans.one("module_load_db_query").attributes[c.POOL_NAME] == "unmeasured-db"


def test_a_failing_in_use_or_meter_never_reaches_the_host(
    measured: Measured, lenient: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> int:
        raise RuntimeError("the pool's own counter is broken")

    with moduletrace.pool_wait("modules-db", size=2, in_use=broken):
        result = "checked out"
    assert result == "checked out"
    assert measured.point(c.DB_CLIENT_CONNECTION_MAX, POOL).value == 2  # the other readings still go out
    assert measured.points(c.DB_CLIENT_CONNECTION_COUNT) == []

    def fail(*args: Any) -> None:
        raise RuntimeError("a moduletrace bug")

    monkeypatch.setattr(pool_metrics, "finish", fail)
    monkeypatch.setattr(pool_metrics, "start", fail)
    raised = ConnectionRefusedError("database down")
    with pytest.raises(ConnectionRefusedError) as caught, moduletrace.pool_wait("modules-db"):
        raise raised
    assert caught.value is raised
