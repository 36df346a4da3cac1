"""The pool helpers' metrics: OpenTelemetry's database client connection metrics, per pool.

=========================================  ==========================  ============  ==========================
metric                                     instrument                  unit          attributes
=========================================  ==========================  ============  ==========================
``db.client.connection.count``             observable up-down counter  {connection}  pool name, state idle/used
``db.client.connection.max``               observable up-down counter  {connection}  pool name
``db.client.connection.pending_requests``  observable up-down counter  {request}     pool name
``db.client.connection.timeouts``          counter                     {timeout}     pool name
``db.client.connection.wait_time``         histogram                   s             pool name (+ ``error.type``)
=========================================  ==========================  ============  ==========================

The pool name goes in ``db.client.connection.pool.name``, the same name as ``module.pool.name`` on
the spans, so a failed load's span and its pool's series join on it. A wait that ended in an
exception (the pool's timeout, a refused connection) is in ``wait_time`` too, with ``error.type``:
the waits that end at the pool's timeout are the evidence of exhaustion, and leaving them out would
show a starved pool as a fast one.

The instruments are moduletrace's own (meter ``moduletrace``) on the global MeterProvider, resolved
as the tracer is (``_tracing.py``): cached by the provider's identity, and ``None`` while no SDK
provider is set, so a checkout then costs one attribute read and one ``is``. The counts are read at
collection time, from the pools seen so far: a SQLAlchemy pool is asked (``checkedout()``,
``checkedin()``, its size and overflow) and held weakly; a pool behind ``pool_wait`` reports what
its caller passed (``size``, ``in_use``; a callable ``in_use`` is called at collection).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, cast

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, NoOpMeter, NoOpMeterProvider, Observation

from moduletrace._version import __version__
from moduletrace.conventions import (
    CONNECTION_STATE_IDLE,
    CONNECTION_STATE_USED,
    DB_CLIENT_CONNECTION_COUNT,
    DB_CLIENT_CONNECTION_MAX,
    DB_CLIENT_CONNECTION_PENDING_REQUESTS,
    DB_CLIENT_CONNECTION_POOL_NAME,
    DB_CLIENT_CONNECTION_STATE,
    DB_CLIENT_CONNECTION_TIMEOUTS,
    DB_CLIENT_CONNECTION_WAIT_TIME,
    ERROR_TYPE,
    UNIT_CONNECTION,
    UNIT_REQUEST,
    UNIT_SECONDS,
    UNIT_TIMEOUT,
)
from moduletrace.instrumentation._failure import error_type
from moduletrace.instrumentation._guard import internal_error, warn_once

#: Bucket bounds for ``wait_time`` in seconds. The SDK's default bounds (0, 5, 10, ... 10000) are
#: made for milliseconds: every wait would land in the first bucket. A healthy checkout takes
#: microseconds, a starved one runs to the pool's timeout (SQLAlchemy's default is 30 s).
WAIT_TIME_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: Pools named through ``pool_wait`` that are observed; a name made per call would grow without end.
MAX_NAMED_POOLS = 256


class ObservedPool:
    """A pool as the metrics see it: its name and the checkouts waiting in it now."""

    __slots__ = ("attributes", "pending", "__weakref__")

    def __init__(self, name: str) -> None:
        self.attributes: dict[str, str] = {DB_CLIENT_CONNECTION_POOL_NAME: name}
        self.pending = 0

    @property
    def name(self) -> str:
        return self.attributes[DB_CLIENT_CONNECTION_POOL_NAME]

    def connections(self) -> tuple[int | None, int | None]:
        """(used, idle) connections now; None where the pool does not say."""
        return None, None

    def limit(self) -> int | None:
        """The most connections the pool may open; None when unknown or unlimited."""
        return None


class CallerPool(ObservedPool):
    """A pool behind ``pool_wait``: what its caller passed at the last checkout."""

    __slots__ = ("size", "in_use")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.size: int | None = None
        self.in_use: Callable[[], int] | int | None = None

    def connections(self) -> tuple[int | None, int | None]:
        in_use = self.in_use
        if callable(in_use):
            in_use = reading(in_use, "__call__")  # the caller's function: its failure is not ours
        return _number(in_use), None

    def limit(self) -> int | None:
        return _number(self.size)


class SQLAlchemyPool(ObservedPool):
    """A SQLAlchemy pool, asked at collection time; held weakly, so a discarded pool is forgotten."""

    __slots__ = ("_pool",)

    def __init__(self, name: str, pool: Any) -> None:
        super().__init__(name)
        self._pool = weakref.ref(pool)

    def connections(self) -> tuple[int | None, int | None]:
        pool = self._pool()
        if pool is None:
            return None, None
        return _number(reading(pool, "checkedout")), _number(reading(pool, "checkedin"))

    def limit(self) -> int | None:
        pool = self._pool()
        if pool is None:
            return None
        size = _number(reading(pool, "size"))
        # QueuePool's own bound: pool_size plus max_overflow (-1: no bound). No public accessor.
        overflow = _number(getattr(pool, "_max_overflow", None))
        if size is None or overflow is None or overflow < 0:
            return None
        return size + overflow

    @property
    def alive(self) -> bool:
        return self._pool() is not None


_lock = threading.Lock()
_named: dict[str, CallerPool] = {}
_sqlalchemy: list[SQLAlchemyPool] = []


def caller_pool(name: str, size: int | None, in_use: Callable[[], int] | int | None) -> CallerPool | None:
    """The pool ``pool_wait`` names, with what its caller passed now; None while no SDK is set."""
    if current() is None:
        return None
    observed = _named.get(name)
    if observed is None:
        with _lock:
            observed = _named.get(name)
            if observed is None:
                if len(_named) >= MAX_NAMED_POOLS:
                    warn_once(
                        "pool-names", "moduletrace: over %d pool names; the new ones are not measured", len(_named)
                    )
                    return None
                observed = _named[name] = CallerPool(name)
    if size is not None:
        observed.size = size
    if in_use is not None:
        observed.in_use = in_use
    return observed


def observe_sqlalchemy_pool(name: str, pool: Any) -> SQLAlchemyPool:
    """Observe a SQLAlchemy pool from now on (until it is garbage or :func:`forget_sqlalchemy_pool`)."""
    observed = SQLAlchemyPool(name, pool)
    with _lock:
        _sqlalchemy[:] = [p for p in _sqlalchemy if p.alive]
        _sqlalchemy.append(observed)
    return observed


def forget_sqlalchemy_pool(observed: SQLAlchemyPool) -> None:
    with _lock:
        _sqlalchemy[:] = [p for p in _sqlalchemy if p is not observed and p.alive]


class Instruments:
    """moduletrace's pool instruments on one MeterProvider."""

    __slots__ = ("wait_time", "timeouts")

    def __init__(self, meter: Meter) -> None:
        self.wait_time = _wait_time_histogram(meter)
        self.timeouts: Counter = meter.create_counter(
            DB_CLIENT_CONNECTION_TIMEOUTS,
            unit=UNIT_TIMEOUT,
            description="The number of connection timeouts that have occurred trying to obtain a connection "
            "from the pool.",
        )
        meter.create_observable_up_down_counter(
            DB_CLIENT_CONNECTION_COUNT,
            callbacks=[_observe_connections],
            unit=UNIT_CONNECTION,
            description="The number of connections that are currently in state described by the `state` attribute.",
        )
        meter.create_observable_up_down_counter(
            DB_CLIENT_CONNECTION_MAX,
            callbacks=[_observe_limits],
            unit=UNIT_CONNECTION,
            description="The maximum number of open connections allowed.",
        )
        meter.create_observable_up_down_counter(
            DB_CLIENT_CONNECTION_PENDING_REQUESTS,
            callbacks=[_observe_pending],
            unit=UNIT_REQUEST,
            description="The number of current pending requests for an open connection.",
        )


def _wait_time_histogram(meter: Meter) -> Histogram:
    description = "The time it took to obtain an open connection from the pool."
    try:
        return meter.create_histogram(
            DB_CLIENT_CONNECTION_WAIT_TIME,
            unit=UNIT_SECONDS,
            description=description,
            explicit_bucket_boundaries_advisory=WAIT_TIME_BUCKETS,
        )
    except TypeError:  # an API before 1.30 has no advisory: the SDK's (or a View's) buckets then
        return meter.create_histogram(DB_CLIENT_CONNECTION_WAIT_TIME, unit=UNIT_SECONDS, description=description)


def start(observed: ObservedPool | None) -> Instruments | None:
    """A checkout begins to wait: count it as pending. None (record nothing) while no SDK is set."""
    if observed is None:
        return None
    instruments = current()
    if instruments is not None:
        with _lock:
            observed.pending += 1
    return instruments


def finish(
    instruments: Instruments, observed: ObservedPool, waited_s: float, timed_out: bool, failure: BaseException | None
) -> None:
    """The checkout that :func:`start` counted got its connection, or gave up after ``waited_s``."""
    with _lock:
        observed.pending -= 1
    attributes: dict[str, str] = observed.attributes
    if failure is not None:
        attributes = {**attributes, ERROR_TYPE: error_type(failure)}
    instruments.wait_time.record(waited_s, attributes)
    if timed_out:
        instruments.timeouts.add(1, observed.attributes)


# ---------------------------------------------------------------------------------------------
# Collection: one observation per pool name (same-named pools add up, so no series is reported twice).
# ---------------------------------------------------------------------------------------------


def _pools() -> list[ObservedPool]:
    with _lock:
        return [*_named.values(), *(p for p in _sqlalchemy if p.alive)]


def _by_name(values: Iterable[tuple[ObservedPool, int | None]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for pool, value in values:
        if value is not None:
            totals[pool.name] = totals.get(pool.name, 0) + value
    return totals


def _observe_connections(options: CallbackOptions) -> Iterable[Observation]:
    try:
        counts = [(pool, pool.connections()) for pool in _pools()]
        observations = []
        for state, index in ((CONNECTION_STATE_USED, 0), (CONNECTION_STATE_IDLE, 1)):
            for name, value in _by_name((pool, c[index]) for pool, c in counts).items():
                observations.append(
                    Observation(value, {DB_CLIENT_CONNECTION_POOL_NAME: name, DB_CLIENT_CONNECTION_STATE: state})
                )
        return observations
    except Exception as exc:  # noqa: BLE001
        internal_error("pool metrics", exc)
        return []


def _observe_limits(options: CallbackOptions) -> Iterable[Observation]:
    return _observe(lambda pool: pool.limit())


def _observe_pending(options: CallbackOptions) -> Iterable[Observation]:
    return _observe(lambda pool: pool.pending)


def _observe(value: Callable[[ObservedPool], int | None]) -> list[Observation]:
    try:
        totals = _by_name((pool, value(pool)) for pool in _pools())
        return [Observation(total, {DB_CLIENT_CONNECTION_POOL_NAME: name}) for name, total in totals.items()]
    except Exception as exc:  # noqa: BLE001
        internal_error("pool metrics", exc)
        return []


# ---------------------------------------------------------------------------------------------
# The instruments of the MeterProvider in use, or None: the "metrics off" check.
# ---------------------------------------------------------------------------------------------

_NEVER: object = object()


class _State:
    """(the global provider as last seen, its instruments or None), replaced whole (see _tracing.py)."""

    __slots__ = ("cache",)

    def __init__(self) -> None:
        self.cache: tuple[object, Instruments | None] = (_NEVER, None)


STATE = _State()


class _Documented:
    """For an API release without the ``_METER_PROVIDER`` global: the documented, slower way."""

    @property
    def _METER_PROVIDER(self) -> object:  # noqa: N802 - mirrors the API's global
        return metrics.get_meter_provider()


def _api() -> Any:
    from opentelemetry.metrics import _internal

    return _internal if hasattr(_internal, "_METER_PROVIDER") else _Documented()


#: What holds the global MeterProvider (``None`` until one is set).
API: Any = _api()


def current() -> Instruments | None:
    """The pool instruments on the MeterProvider in use, or ``None`` when nothing would be recorded."""
    provider = API._METER_PROVIDER
    cached = STATE.cache
    if provider is cached[0]:
        return cached[1]
    return _refresh(provider)


def _refresh(seen: object) -> Instruments | None:
    instruments: Instruments | None = None
    try:
        if seen is None:
            # No provider set yet. The API may still build one from OTEL_PYTHON_METER_PROVIDER, and
            # sets it globally if so (then the next call sees a new provider, and comes back here).
            metrics.get_meter_provider()
        elif not isinstance(seen, NoOpMeterProvider):
            meter = cast(metrics.MeterProvider, seen).get_meter("moduletrace", __version__)
            if not isinstance(meter, NoOpMeter):  # OTEL_SDK_DISABLED=true gives no-op meters
                instruments = Instruments(meter)
    except Exception as exc:  # noqa: BLE001
        internal_error("meter", exc)
        instruments = None
    STATE.cache = (seen, instruments)
    return instruments


def reading(obj: Any, name: str) -> Any:
    """``obj.name`` (called when it is a method), or None when that fails: a reading is best effort."""
    try:
        value = getattr(obj, name)
        return value() if callable(value) else value
    except Exception:  # noqa: BLE001 - the pool's code, not ours
        return None


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _reset_for_tests() -> None:
    """Forget every pool seen (tests only)."""
    with _lock:
        _named.clear()
        _sqlalchemy.clear()
