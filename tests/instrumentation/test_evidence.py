"""Evidence for diagnose, from real runs: a real SQLAlchemy pool starved by real threads, a real HTTP 401."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as SQLAlchemyPoolTimeout

import moduletrace
from moduletrace.analysis.diagnosis import Diagnoser
from moduletrace.instrumentation.evidence import httpx_response_hook, token_id
from moduletrace.sources.file import read_spans
from tests.conftest import Recorded
from tests.instrumentation.conftest import only_connection_held
from tests.support.local_server import LocalServer


def jwt(**claims: Any) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_a_token_is_recorded_by_its_times_and_a_keyed_hash_never_itself(
    spans: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODULETRACE_TOKEN_HASH_KEY", "shared-by-every-service")
    now = time.time()
    token = jwt(sub="u-1", iat=now - 3600, exp=now - 30)
    with moduletrace.load_request("m-1"):
        moduletrace.record_token(token)
    attributes = dict(spans.one("module_load_request").attributes)
    assert attributes["module.auth.token_expired"] is True
    assert -31 < attributes["module.auth.token_expires_in_s"] < -29
    assert 3599 < attributes["module.auth.token_age_s"] < 3601 and attributes["module.auth.token_ttl_s"] == 3570
    assert attributes["module.auth.token_not_yet_valid"] is False
    assert attributes["module.auth.token_id"] == token_id(token) and len(token_id(token)) == 16
    assert token not in str(attributes) and token.split(".")[1] not in str(attributes)


def test_a_token_not_valid_yet_is_marked(spans: Recorded) -> None:
    with moduletrace.load_request("m-2"):
        moduletrace.record_token(claims={"nbf": time.time() + 120, "exp": time.time() + 3600})
    assert spans.one("module_load_request").attributes["module.auth.token_not_yet_valid"] is True


def test_evidence_helpers_never_raise(spans: Recorded, lenient: None) -> None:
    with moduletrace.load_request("m-3"):
        moduletrace.record_token("not-a-jwt")
        moduletrace.record_token(claims={"exp": "soon"})
        moduletrace.record_auth_failure("401")  # type: ignore[arg-type]
        moduletrace.record_data_version(version=object())
    assert spans.one("module_load_request").attributes["module.auth.status"] == 401


# --- a real SQLAlchemy pool on SQLite, starved by real threads (tests/instrumentation/conftest.py) -------


@moduletrace.load_db_query
def read_module(module_id: str, engine: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(text("SELECT id FROM modules WHERE id = :id"), {"id": module_id}).fetchone()


def test_a_starved_sqlalchemy_pool_is_recorded_and_diagnosed_as_pool(spans: Recorded, starved_engine: Any) -> None:
    with only_connection_held(starved_engine), pytest.raises(SQLAlchemyPoolTimeout):
        with moduletrace.create_start("m-ok"), moduletrace.db_commit("m-ok"), moduletrace.cache_update("m-ok"):
            pass
        with moduletrace.load_request("m-ok"):
            read_module("m-ok", starved_engine)
    assert read_module("m-ok", starved_engine) == ("m-ok",)  # the pool works again, and records a short wait

    failed, succeeded = spans.named("module_load_db_query")
    assert failed.attributes["module.pool.timed_out"] is True
    assert failed.attributes["module.pool.size"] == 1 and failed.attributes["module.pool.in_use"] == 1
    assert failed.attributes["module.pool.timeout_s"] == 0.2
    assert 150 < failed.attributes["module.pool.wait_ms"] < 2000
    assert [e.name for e in failed.events] == ["pool.timeout", "exception"]
    assert succeeded.attributes["module.pool.timed_out"] is False

    diagnoser = Diagnoser()
    diagnoser.add_all(_normalised(spans))
    (diagnosis,) = diagnoser.report().diagnoses
    assert (diagnosis.cause, diagnosis.strength) == ("pool", "exception")


# --- a real HTTP 401 from a real server ------------------------------------------------------------


class AuthServer:
    """Answers 401 with an RFC 6750 challenge, as an API gateway does for an expired token."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate",
                    'Bearer realm="modules", error="invalid_token", error_description="The access token expired"',
                )
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.local = LocalServer(Handler)
        self.url = self.local.url


@pytest.fixture
def instrumented_httpx() -> Iterator[None]:
    HTTPXClientInstrumentor().instrument(response_hook=httpx_response_hook)
    yield
    HTTPXClientInstrumentor().uninstrument()


def test_a_real_401_is_recorded_on_the_client_span_and_diagnosed_as_auth(
    spans: Recorded, instrumented_httpx: None
) -> None:
    server = AuthServer()
    try:
        with moduletrace.create_start("m-auth"), moduletrace.db_commit("m-auth"), moduletrace.cache_update("m-auth"):
            pass
        with pytest.raises(httpx.HTTPStatusError):
            with moduletrace.load_request("m-auth"):
                with httpx.Client() as client:
                    client.get(
                        f"{server.url}/modules/m-auth", headers={"Authorization": "Bearer s3cr3t"}
                    ).raise_for_status()
    finally:
        server.local.close()
    (client_span,) = [s for s in spans.all() if s.name == "GET"]
    assert client_span.attributes["module.auth.error"] == "invalid_token"
    assert client_span.attributes["module.auth.status"] == 401
    assert "s3cr3t" not in str([dict(s.attributes) for s in spans.all()])
    diagnoser = Diagnoser()
    diagnoser.add_all(_normalised(spans))
    (diagnosis,) = diagnoser.report().diagnoses
    assert (diagnosis.cause, diagnosis.detail) == ("auth", "expired")
    assert 'WWW-Authenticate error="invalid_token"' in diagnosis.evidence


def _normalised(spans: Recorded) -> list[Any]:
    """The recorded spans as the command reads them: through the embedded file format."""
    import tempfile

    from moduletrace.instrumentation.file_exporter import encode_spans

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spans.jsonl"
        path.write_text(json.dumps(encode_spans(spans.all())) + "\n")
        return read_spans([str(path)])


def test_a_pool_timeout_on_a_load_that_also_raced_is_diagnosed_pool_then_race(
    spans: Recorded, starved_engine: Any
) -> None:
    # The load runs before the creation's commit began (a race) and finds the pool starved.
    with only_connection_held(starved_engine):
        with moduletrace.create_start("m-both"):
            with pytest.raises(SQLAlchemyPoolTimeout), moduletrace.load_request("m-both"):
                read_module("m-both", starved_engine)
            with moduletrace.db_commit("m-both"):
                pass
    diagnoser = Diagnoser()
    diagnoser.add_all(_normalised(spans))
    (diagnosis,) = diagnoser.report().diagnoses
    assert (diagnosis.cause, diagnosis.secondary) == ("pool", ("race",))


def test_a_401_for_a_token_not_valid_yet_is_diagnosed_as_clock_skew(spans: Recorded, instrumented_httpx: None) -> None:
    server = AuthServer()
    token = jwt(sub="u-1", iat=time.time() + 90, nbf=time.time() + 90, exp=time.time() + 3690)  # issuer clock ahead
    try:
        with moduletrace.create_start("m-skew"), moduletrace.db_commit("m-skew"), moduletrace.cache_update("m-skew"):
            pass
        with pytest.raises(httpx.HTTPStatusError), moduletrace.load_request("m-skew"):
            moduletrace.record_token(token)
            with httpx.Client() as client:
                client.get(
                    f"{server.url}/modules/m-skew", headers={"Authorization": f"Bearer {token}"}
                ).raise_for_status()
    finally:
        server.local.close()
    diagnoser = Diagnoser()
    diagnoser.add_all(_normalised(spans))
    (diagnosis,) = diagnoser.report().diagnoses
    assert (diagnosis.cause, diagnosis.detail) == ("auth", "clock skew")
