"""Backends that refuse, stall, fail or answer partly: retries, then one line and exit 3, never "no races".

Stalls and partial answers come from a small fake server: no real Jaeger or Tempo produces them on
demand (and no Tempo runs here at all). Refused connections come from a real Jaeger, stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from moduletrace.cli.main import main
from tests.support.local_server import LocalServer
from tests.support.peers import start_jaeger


class FakeTempo:
    """Answers search with one trace; that trace is PARTIAL, or the server stalls past the client's timeout."""

    def __init__(self, mode: str) -> None:
        owner = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.requests += 1
                if mode == "stall":
                    time.sleep(1.5)
                if self.path.startswith("/api/search"):
                    body: dict[str, Any] = {"traces": [{"traceID": "1" * 32}]}
                else:
                    body = {"trace": {"resourceSpans": []}, "status": "PARTIAL", "message": "2 blocks unreadable"}
                payload = json.dumps(body).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.local = LocalServer(Handler)
        self.url = self.local.url


@pytest.fixture
def fake_tempo(request: pytest.FixtureRequest) -> Iterator[FakeTempo]:
    server = FakeTempo(request.param)
    yield server
    server.local.close()


@pytest.mark.parametrize("fake_tempo", ["partial"], indirect=True)
def test_a_partial_answer_is_reported_as_partial_never_as_no_races(
    fake_tempo: FakeTempo, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["races", "--tempo", fake_tempo.url, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and f"the scan was partial: trace {'1' * 32} is partial: 2 blocks unreadable" in err


@pytest.mark.parametrize("fake_tempo", ["stall"], indirect=True)
def test_a_stalled_backend_is_retried_then_exit_3(fake_tempo: FakeTempo, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["races", "--tempo", fake_tempo.url, "--timeout", "0.3"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1
    assert "timed out after 4 attempts" in err and fake_tempo.requests == 4


@pytest.mark.peers
def test_a_jaeger_that_went_away_is_one_line_and_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jaeger = start_jaeger(tmp_path)
    try:
        assert main(["races", "--jaeger", jaeger.query_url, "--since", "5m"]) == 3  # reachable, holds nothing
        assert "no lifecycle span found" in capsys.readouterr().err
    finally:
        jaeger.process.stop()
    code = main(["races", "--jaeger", jaeger.query_url, "--since", "5m"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "unreachable (ConnectError) after 4 attempts" in err
