"""Evidence for ``moduletrace diagnose``: what a token, a pool and the data looked like at a load.

All helpers write attributes on the current span (or the one given) and never raise into the
caller. Nothing secret enters a span: a token is reduced to its claims' times and a keyed hash.

::

    with moduletrace.load_request(module_id, parent=carrier):
        moduletrace.record_token(request.headers["Authorization"].removeprefix("Bearer "))
        with moduletrace.load_db_query(module_id):
            with moduletrace.pool_wait("modules-db", size=pool.size, timeout_s=5):
                connection = pool.get()
            row = connection.get(module_id)
            moduletrace.record_data_version(found=row is not None, observed_version=row and row.version)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from moduletrace.conventions import (
    AUTH_ERROR,
    AUTH_STATUS,
    AUTH_TOKEN_AGE_S,
    AUTH_TOKEN_EXPIRED,
    AUTH_TOKEN_EXPIRES_IN_S,
    AUTH_TOKEN_ID,
    AUTH_TOKEN_NOT_YET_VALID,
    AUTH_TOKEN_TTL_S,
    CACHE_HIT,
    CACHE_VERSION,
    DATA_FOUND,
    DATA_OBSERVED_VERSION,
    DATA_VERSION,
    POOL_IN_USE,
    POOL_NAME,
    POOL_SIZE,
    POOL_TIMED_OUT,
    POOL_TIMEOUT_EVENT,
    POOL_TIMEOUT_S,
    POOL_WAIT_MS,
)
from moduletrace.instrumentation import pool_metrics
from moduletrace.instrumentation._guard import internal_error, warn_once

_KEY_ENV = "MODULETRACE_TOKEN_HASH_KEY"
_process_key = secrets.token_bytes(32)
_WWW_AUTHENTICATE_ERROR = re.compile(r'error="?([A-Za-z_]+)"?')


def _target(span: Span | None) -> Span | None:
    span = span or trace.get_current_span()
    return span if span.is_recording() else None


def token_id(token: str, key: bytes | None = None) -> str:
    """A keyed hash telling tokens apart without revealing them (HMAC-SHA256, 16 hex characters).

    The key comes from ``key``, else ``MODULETRACE_TOKEN_HASH_KEY`` (set the same value in every
    service so the create and the load name the same token alike), else a per-process random key.
    """
    if key is None:
        configured = os.environ.get(_KEY_ENV)
        if configured:
            key = configured.encode()
        else:
            warn_once("token-key", "moduletrace: %s is not set; token ids are per process", _KEY_ENV)
            key = _process_key
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:16]


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, decoded without verifying it ({} when it is not a JWT)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def record_token(
    token: str | None = None,
    *,
    claims: Mapping[str, Any] | None = None,
    expires_at: float | None = None,
    issued_at: float | None = None,
    not_before: float | None = None,
    key: bytes | None = None,
    span: Span | None = None,
) -> None:
    """Record a token's times at this moment: expires in, age, lifetime, expired, not yet valid.

    Give the token (a JWT's claims are decoded, nothing is verified), or its ``claims``, or the
    times (Unix seconds) your service already knows. Sets the ``AUTH_TOKEN_*`` attributes of
    :mod:`moduletrace.conventions` (expires in, age, lifetime, expired, not yet valid, and an id
    that is a keyed hash, see
    :func:`token_id`). Never the token.
    """
    try:
        target = _target(span)
        if target is None:
            return
        found = dict(claims or {})
        if token and not claims:
            found = jwt_claims(token)
        exp = expires_at if expires_at is not None else _number(found.get("exp"))
        iat = issued_at if issued_at is not None else _number(found.get("iat"))
        nbf = not_before if not_before is not None else _number(found.get("nbf"))
        now = time.time()
        attributes: dict[str, Any] = {}
        if exp is not None:
            attributes[AUTH_TOKEN_EXPIRES_IN_S] = round(exp - now, 3)
            attributes[AUTH_TOKEN_EXPIRED] = exp <= now
        if iat is not None:
            attributes[AUTH_TOKEN_AGE_S] = round(now - iat, 3)
            if exp is not None:
                attributes[AUTH_TOKEN_TTL_S] = round(exp - iat, 3)
        if nbf is not None or iat is not None:
            # A token issued or valid only in the future means the issuer's clock is ahead.
            attributes[AUTH_TOKEN_NOT_YET_VALID] = (nbf is not None and nbf > now) or (
                iat is not None and iat > now + 1
            )
        if token:
            attributes[AUTH_TOKEN_ID] = token_id(token, key)
        target.set_attributes(attributes)
    except Exception as exc:  # noqa: BLE001
        internal_error("record_token", exc)


def record_auth_failure(status: int, www_authenticate: str | None = None, *, span: Span | None = None) -> None:
    """Record that a request was refused: the status (401/403) and the ``WWW-Authenticate`` error code."""
    try:
        target = _target(span)
        if target is None:
            return
        target.set_attribute(AUTH_STATUS, int(status))
        match = _WWW_AUTHENTICATE_ERROR.search(www_authenticate or "")
        if match:
            target.set_attribute(AUTH_ERROR, match.group(1))
    except Exception as exc:  # noqa: BLE001
        internal_error("record_auth_failure", exc)


def httpx_response_hook(span: Span, request: Any, response: Any) -> None:
    """For the httpx instrumentation: on a 401/403, record the ``WWW-Authenticate`` error code."""
    try:
        status = getattr(response, "status_code", None)
        if status not in (401, 403) or not span.is_recording():
            return
        headers = getattr(response, "headers", None) or {}
        value = headers.get("www-authenticate") if hasattr(headers, "get") else None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        record_auth_failure(status, value, span=span)
    except Exception as exc:  # noqa: BLE001
        internal_error("httpx response hook", exc)


def record_data_version(
    *,
    version: Any = None,
    observed_version: Any = None,
    found: bool | None = None,
    cache_hit: bool | None = None,
    cache_version: Any = None,
    span: Span | None = None,
) -> None:
    """Record what was written or read, so a race can be proven without clocks.

    On a commit: ``version=`` (row version, LSN, log position). On a cache update:
    ``cache_version=``. On a read: ``found=``, ``observed_version=``, ``cache_hit=``.
    """
    try:
        target = _target(span)
        if target is None:
            return
        for key, value in (
            (DATA_VERSION, version),
            (DATA_OBSERVED_VERSION, observed_version),
            (DATA_FOUND, found),
            (CACHE_HIT, cache_hit),
            (CACHE_VERSION, cache_version),
        ):
            if value is not None:
                target.set_attribute(key, value if isinstance(value, (bool, int, float, str)) else str(value))
    except Exception as exc:  # noqa: BLE001
        internal_error("record_data_version", exc)


def pool_wait(
    pool_name: str,
    *,
    size: int | None = None,
    timeout_s: float | None = None,
    in_use: Callable[[], int] | int | None = None,
    timeout_errors: tuple[type[BaseException], ...] = (TimeoutError,),
    span: Span | None = None,
) -> AbstractContextManager[None]:
    """Time the wait for a pooled connection, for any pool: wrap the acquire in it.

    Records the pool's name and the wait (``POOL_NAME``, ``POOL_WAIT_MS`` in
    :mod:`moduletrace.conventions`) and, when the acquire raises one of ``timeout_errors`` (or an
    exception whose type name says timeout), ``POOL_TIMED_OUT`` with a snapshot of the pool's size,
    use and timeout. With a MeterProvider in use it also records the pool's
    ``db.client.connection.*`` metrics (:mod:`~moduletrace.instrumentation.pool_metrics`):
    ``size`` is the most connections the pool may open, ``in_use`` those checked out (a callable
    is called when metrics are collected).
    The exception itself passes through unchanged.
    """
    try:
        observed = pool_metrics.caller_pool(pool_name, size, in_use)
    except Exception as exc:  # noqa: BLE001
        internal_error("pool_wait", exc)
        observed = None
    return _Wait(_target(span), observed, pool_name, size, timeout_s, in_use, timeout_errors)


class _Wait:
    """One wait for a connection: the span's evidence and the pool's metrics when it ends.

    A class rather than a generator-based context manager: it is on every checkout, at half the cost.
    """

    __slots__ = ("span", "observed", "pool_name", "size", "timeout_s", "in_use", "timeout_errors", "_m", "_started")

    def __init__(
        self,
        span: Span | None,
        observed: pool_metrics.ObservedPool | None,
        pool_name: str,
        size: int | None,
        timeout_s: float | None,
        in_use: Callable[[], int] | int | None,
        timeout_errors: tuple[type[BaseException], ...],
    ) -> None:
        self.span = span
        self.observed = observed
        self.pool_name = pool_name
        self.size = size
        self.timeout_s = timeout_s
        self.in_use = in_use
        self.timeout_errors = timeout_errors
        self._m: pool_metrics.Instruments | None = None
        self._started = 0.0

    def __enter__(self) -> None:
        self._m = _start(self.observed)
        self._started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, failure: BaseException | None, tb: Any) -> None:
        waited = time.perf_counter() - self._started
        timed_out = failure is not None and _is_timeout(failure, self.timeout_errors)
        if self.span is not None:
            in_use = self.in_use if timed_out else None
            _pool_snapshot(self.span, self.pool_name, waited, timed_out, self.size, self.timeout_s, in_use)
        if self._m is not None and self.observed is not None:
            try:
                pool_metrics.finish(self._m, self.observed, waited, timed_out, failure)
            except Exception as exc:  # noqa: BLE001
                internal_error("pool metrics", exc)


def _start(observed: pool_metrics.ObservedPool | None) -> pool_metrics.Instruments | None:
    try:
        return pool_metrics.start(observed)
    except Exception as exc:  # noqa: BLE001
        internal_error("pool metrics", exc)
        return None


def _is_timeout(exc: BaseException, timeout_errors: tuple[type[BaseException], ...]) -> bool:
    try:
        return isinstance(exc, timeout_errors) or "timeout" in type(exc).__name__.lower()
    except Exception as error:  # noqa: BLE001 - e.g. timeout_errors that are not exception types
        internal_error("pool_wait", error)
        return False


def _pool_snapshot(
    span: Span,
    name: str,
    waited: float,
    timed_out: bool,
    size: int | None,
    timeout_s: float | None,
    in_use: Callable[[], int] | int | None,
) -> None:
    try:
        attributes: dict[str, Any] = {
            POOL_NAME: name,
            POOL_WAIT_MS: round(waited * 1000, 3),
            POOL_TIMED_OUT: timed_out,
        }
        if size is not None:
            attributes[POOL_SIZE] = size
        if timeout_s is not None:
            attributes[POOL_TIMEOUT_S] = timeout_s
        if in_use is not None:
            attributes[POOL_IN_USE] = in_use() if callable(in_use) else in_use
        span.set_attributes(attributes)
        if timed_out:
            span.add_event(POOL_TIMEOUT_EVENT, attributes)
    except Exception as exc:  # noqa: BLE001
        internal_error("pool_wait", exc)


def instrument_sqlalchemy_pool(engine_or_pool: Any, name: str | None = None) -> None:
    """Record the connection wait of a SQLAlchemy engine's pool on the current span, and its metrics.

    Wraps the pool's ``connect`` (with wrapt, so ``uninstrument_sqlalchemy_pool`` restores it): the
    span current at checkout (your ``load_db_query``) gets the wait (``POOL_WAIT_MS``) and, on
    SQLAlchemy's pool timeout, ``POOL_TIMED_OUT`` with the pool's size, overflow and checked-
    out count at that moment. With a MeterProvider in use, the pool's ``db.client.connection.*``
    metrics are recorded, its connections counted from the pool itself when metrics are collected
    (:mod:`~moduletrace.instrumentation.pool_metrics`).
    """
    import wrapt
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    pool = getattr(engine_or_pool, "pool", engine_or_pool)
    if isinstance(getattr(pool, "connect", None), wrapt.ObjectProxy):
        return
    pool_name = name or getattr(pool, "logging_name", None) or str(getattr(engine_or_pool, "url", "pool"))
    observed = pool_metrics.observe_sqlalchemy_pool(pool_name, pool)

    def in_use() -> int:  # read on a timeout only
        return pool_metrics.reading(pool, "checkedout") or 0

    def checkout(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        size, timeout_s = pool_metrics.reading(pool, "size"), pool_metrics.reading(pool, "timeout")
        with _Wait(_target(None), observed, pool_name, size, timeout_s, in_use, (PoolTimeoutError,)):
            return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(pool, "connect", checkout)
    pool._moduletrace_observed = observed


def uninstrument_sqlalchemy_pool(engine_or_pool: Any) -> None:
    """Undo :func:`instrument_sqlalchemy_pool`."""
    import wrapt

    pool = getattr(engine_or_pool, "pool", engine_or_pool)
    connect = pool.__dict__.get("connect")
    if isinstance(connect, wrapt.ObjectProxy):
        del pool.__dict__["connect"]
    observed = pool.__dict__.pop("_moduletrace_observed", None)
    if observed is not None:
        pool_metrics.forget_sqlalchemy_pool(observed)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
