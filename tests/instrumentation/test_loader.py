"""The enhanced loader: retries with backoff, one span per attempt, a named cause with the trace id."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from opentelemetry.trace import StatusCode

import moduletrace
from moduletrace.instrumentation.loader import classify_failure
from tests.conftest import Recorded

FAST = {"initial_backoff_s": 0.001, "max_backoff_s": 0.005}


def test_a_module_not_visible_yet_is_retried_until_it_loads(spans: Recorded) -> None:
    visible_after = 3
    calls: list[str] = []

    def fetch(module_id: str) -> dict[str, str]:
        calls.append(module_id)
        if len(calls) < visible_after:
            raise LookupError(f"module {module_id} not found")
        return {"id": module_id}

    with moduletrace.create_start("m-1"):
        carrier = moduletrace.carrier()
    assert moduletrace.ModuleLoader(fetch, attempts=4, **FAST)("m-1", parent=carrier) == {"id": "m-1"}
    attempts = spans.named("module_load_request")
    assert [s.attributes["module.load.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert {s.context.trace_id for s in attempts} == {spans.one("module_create_start").context.trace_id}


def test_exhausted_retries_raise_one_error_naming_the_cause_and_the_trace(spans: Recorded) -> None:
    def fetch(module_id: str) -> None:
        raise LookupError("not found")

    with pytest.raises(moduletrace.ModuleLoadError) as caught:
        moduletrace.ModuleLoader(fetch, attempts=3, **FAST)("m-2")
    error = caught.value
    assert (error.module_id, error.cause, error.attempts) == ("m-2", "not_found", 3)
    last = spans.named("module_load_request")[-1]
    assert error.trace_id == format(last.context.trace_id, "032x")
    assert str(error) == f"failed to load module m-2: not_found after 3 attempt(s) (trace {error.trace_id})"
    assert isinstance(error.__cause__, LookupError)


def test_an_auth_failure_is_not_retried() -> None:
    calls = []
    request = httpx.Request("GET", "http://canvas/modules/m-3")

    def fetch(module_id: str) -> None:
        calls.append(module_id)
        raise httpx.HTTPStatusError("401", request=request, response=httpx.Response(401, request=request))

    with pytest.raises(moduletrace.ModuleLoadError) as caught:
        moduletrace.ModuleLoader(fetch, attempts=5, **FAST)("m-3")
    assert caught.value.cause == "auth" and len(calls) == 1


def test_the_async_loader_times_out_each_attempt(spans: Recorded) -> None:
    async def fetch(module_id: str) -> None:
        await asyncio.sleep(1)

    loader = moduletrace.AsyncModuleLoader(fetch, timeout_s=0.02, attempts=2, **FAST)
    with pytest.raises(moduletrace.ModuleLoadError) as caught:
        asyncio.run(loader("m-4"))
    assert caught.value.cause == "timeout" and caught.value.attempts == 2
    assert len(spans.named("module_load_request")) == 2


def test_the_sync_loader_refuses_a_coroutine_function() -> None:
    async def fetch(module_id: str) -> None:
        return None

    with pytest.raises(TypeError):
        moduletrace.ModuleLoader(fetch)


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (401, "auth"),
        (403, "auth"),
        (404, "not_found"),
        (429, "unavailable"),
        (502, "unavailable"),
        (503, "unavailable"),
        (504, "unavailable"),
        (500, "error"),
    ],
)
def test_http_statuses_map_to_causes(status: int, cause: str) -> None:
    request = httpx.Request("GET", "http://x")
    error = httpx.HTTPStatusError("x", request=request, response=httpx.Response(status, request=request))
    assert classify_failure(error) == cause


class BackendDown(httpx.ConnectError):
    """A service's own exception hierarchy over its HTTP client's."""


class CanvasDown(BackendDown):
    pass


class Timeout(BaseException):
    """As gevent's ``Timeout``: a BaseException, not an Exception."""


class ExpiredSignatureError(Exception):
    """As PyJWT's."""


class Unprintable(ConnectionRefusedError):
    def __str__(self) -> str:
        raise RuntimeError("no __str__ today")


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        pytest.param(httpx.ConnectError("connection refused"), "unavailable", id="connect-error"),
        pytest.param(CanvasDown("connection refused"), "unavailable", id="named-by-a-base-two-levels-up"),
        pytest.param(socket.gaierror(-2, "Name or service not known"), "unavailable", id="any-other-os-error"),
        pytest.param(Unprintable(), "unavailable", id="a-broken-str-the-type-still-names-it"),
        pytest.param(Timeout(), "timeout", id="a-base-exception-timeout"),
        pytest.param(ExpiredSignatureError("Signature has expired"), "auth", id="a-token-error-type"),
        pytest.param(RuntimeError("The token is not yet valid (iat)"), "auth", id="clock-skew-said-in-the-message"),
        pytest.param(
            RuntimeError("QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00"),
            "pool",
            id="a-pool-timeout-said-in-the-message",
        ),
        pytest.param(RuntimeError("something else"), "error", id="nothing-known"),
    ],
)
def test_exceptions_map_to_causes_by_their_types_and_message(error: BaseException, cause: str) -> None:
    assert classify_failure(error) == cause
