"""Backends that answer in hostile ways: one line on stderr and exit 2 or 3, in bounded time and memory.

Every server here is a fake on purpose: no real Jaeger or Tempo loops its redirects, sends a
Content-Encoding its body does not have, answers ``1e999`` or 100k nested arrays, trickles a byte
at a time, streams an endless body, always answers a full page or echoes credentials on demand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from moduletrace.cli.main import main
from moduletrace.sources import http as http_source
from tests.reliability import hostile
from tests.support.local_server import LocalServer

#: What a handler answers: (status, headers, body), or a callable writing to the socket itself.
Answer = Callable[[BaseHTTPRequestHandler], None]


class Fake:
    """A backend whose every GET is answered by ``answer``; it records the paths asked."""

    def __init__(self, answer: Answer) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                owner.paths.append(self.path)
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.local = LocalServer(Handler)
        self.url = self.local.url


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], Fake]]:
    fakes: list[Fake] = []

    def start(answer: Answer) -> Fake:
        fakes.append(Fake(answer))
        return fakes[-1]

    yield start
    for fake in fakes:
        fake.local.close()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def jaeger(traces: Callable[[dict[str, list[str]]], bytes]) -> Answer:
    """A Jaeger api_v3 with one service reporting the lifecycle operations; ``traces`` answers searches."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        if url.path == "/api/v3/services":
            send(handler, 200, b'{"services": ["svc"]}')
        elif url.path == "/api/v3/operations":
            names = ["module_create_db_commit", "module_load_request"]
            send(handler, 200, json.dumps({"operations": [{"name": n} for n in names]}).encode())
        else:
            send(handler, 200, traces(parse_qs(url.query)))

    return answer


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - started


def one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("moduletrace: error: ")]
    assert len(errors) == 1 and "Traceback" not in err and "internal error" not in err, err
    return errors[0]


@pytest.fixture(params=["orjson", "json"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json":
        monkeypatch.setattr(http_source, "_loads", json.loads)
    return str(request.param)


@pytest.mark.parametrize("command", ["races", "diagnose"])
@pytest.mark.parametrize("flag", ["--jaeger", "--tempo"])
def test_a_redirect_loop_is_a_backend_error(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str], command: str, flag: str
) -> None:
    fake = serve(lambda h: send(h, 302, b"", Location=h.path))
    code, out, err, _ = run(capsys, command, flag, fake.url)
    assert code == 3 and out == "" and "redirected too many times" in one_error_line(err)


@pytest.mark.parametrize("command", ["races", "diagnose"])
@pytest.mark.parametrize("flag", ["--jaeger", "--tempo"])
def test_a_body_its_content_encoding_does_not_decode_is_a_backend_error(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str], command: str, flag: str
) -> None:
    fake = serve(lambda h: send(h, 200, b"{not gzip at all}", Content_Encoding="gzip"))
    code, _, err, _ = run(capsys, command, flag, fake.url)
    assert code == 3 and "Content-Encoding" in one_error_line(err)


@pytest.mark.parametrize(
    "body",
    [
        lambda q: b'{"result": {"resourceSpans": [], "next": 1e999}}',
        lambda q: b'{"result": ' + hostile.racing_line().replace('"5000"', "1e999").encode() + b"}",
        lambda q: b'{"result": {"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    ],
    ids=["1e999-top", "1e999-in-result", "deep-nesting"],
)
@pytest.mark.parametrize("command", ["races", "diagnose"])
def test_hostile_numbers_and_nesting_in_an_answer_are_a_backend_error(
    serve: Callable[[Answer], Fake],
    capsys: pytest.CaptureFixture[str],
    parser: str,
    body: Callable[[dict[str, list[str]]], bytes],
    command: str,
) -> None:
    fake = serve(jaeger(body))
    code, _, err, _ = run(capsys, command, "--jaeger", fake.url, "--format", "json")
    assert code == 3, err
    one_error_line(err)


def test_a_backend_trickling_its_body_hits_the_deadline(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(100):  # a byte every 0.1 s: no read waits long enough to time out
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)

    fake = serve(trickle)
    code, _, err, seconds = run(capsys, "races", "--tempo", fake.url, "--timeout", "0.5")
    assert code == 3 and "timed out after 4 attempts" in one_error_line(err)
    assert seconds < 10 and len(fake.paths) == 4


def test_a_backend_trickling_its_headers_hits_the_deadline(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    def trickle(handler: BaseHTTPRequestHandler) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.1)

    fake = serve(trickle)
    code, _, err, seconds = run(capsys, "races", "--jaeger", fake.url, "--timeout", "0.5")
    assert code == 3 and "timed out after 4 attempts" in one_error_line(err)
    assert seconds < 10


def test_an_endless_body_is_read_no_further_than_the_limit(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_source, "MAX_BODY_BYTES", 2**20)

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(2**40))
        handler.end_headers()
        chunk = b" " * 65536
        for _ in range(2**14):  # 1 GiB at most, if nothing stops reading
            handler.wfile.write(chunk)

    fake = serve(endless)
    code, _, err, seconds = run(capsys, "races", "--tempo", fake.url)
    assert code == 3 and "answered more than 1 MiB" in one_error_line(err)
    assert len(fake.paths) == 1 and seconds < 10  # not retried: the answer would be as large


class _FullPages:
    """A Jaeger search that always answers as many traces as it was allowed: clean loads, ten
    minutes ago (inside the default window)."""

    def __init__(self) -> None:
        self.searches = 0

    def __call__(self, query: dict[str, list[str]]) -> bytes:
        self.searches += 1
        limit = int(query["query.num_traces"][0])
        base = time.time_ns() - 600 * 10**9
        resources = []
        for n in range(limit):
            ids = (f"a{n:015x}", f"b{n:015x}", f"c{n:015x}")
            document = json.loads(hostile.racing_line(module=f"m-{self.searches}-{n}", ids=ids))
            for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
                span["traceId"] = f"{self.searches:016x}{n:016x}"
                late = 0 if span["name"] == "module_create_db_commit" else 20_000
                for key in ("startTimeUnixNano", "endTimeUnixNano"):
                    span[key] = str(base + late + int(span[key]))
            resources.append(document["resourceSpans"][0])
        return json.dumps({"result": {"resourceSpans": resources}}).encode()


def test_a_jaeger_always_answering_a_full_page_stops_at_the_request_budget(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = serve(jaeger(_FullPages()))
    code, out, err, seconds = run(
        capsys, "races", "--jaeger", fake.url, "--limit", "2", "--max-requests", "40", "--format", "json"
    )
    assert len(fake.paths) == 40 and seconds < 20
    assert code == 3 and "the scan is partial" in one_error_line(err)
    report = json.loads(out)
    assert report["summary"]["loads"] > 0 and report["races"] == []
    assert any("stopped after 40 requests (--max-requests 40)" in p for p in report["summary"]["partial"])


def test_a_jaeger_search_answer_over_the_body_limit_is_partial_and_names_the_limit_flag(
    serve: Callable[[Answer], Fake], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_source, "MAX_BODY_BYTES", 20_000)
    fake = serve(jaeger(_FullPages()))
    code, out, err, _ = run(capsys, "races", "--jaeger", fake.url, "--limit", "40", "--format", "json")
    assert code == 3 and "partial" in one_error_line(err)
    (partial,) = json.loads(out)["summary"]["partial"] if out else [one_error_line(err)]
    assert "answered more than" in partial and "a smaller --limit" in partial
    assert len([p for p in fake.paths if p.startswith("/api/v3/traces")]) == 2  # one search per operation


def test_the_budget_flag_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err, _ = run(capsys, "races", "--jaeger", "http://127.0.0.1:1", "--max-requests", "0")
    assert code == 2 and "--max-requests must be >= 1" in one_error_line(err)


# --- credentials ---------------------------------------------------------------------------------


def echoing(status: int) -> Answer:
    """A proxy that puts the request's headers in its error body (some do)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in handler.headers.items()}
        body = json.dumps({"error": {"message": f"denied, you sent {headers}"}}).encode()
        send(handler, status, body)

    return answer


@pytest.mark.parametrize("status", [400, 401, 500])
@pytest.mark.parametrize("flag", ["--jaeger", "--tempo"])
def test_credentials_echoed_in_an_error_body_are_never_printed(
    serve: Callable[[Answer], Fake],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    flag: str,
) -> None:
    fake = serve(echoing(status))
    monkeypatch.setenv("MODULETRACE_TOKEN", "tok-s3cr3t-value")
    code, out, err, _ = run(capsys, "races", flag, fake.url, "--verbose")
    assert code == 3 and "tok-s3cr3t-value" not in out + err
    monkeypatch.delenv("MODULETRACE_TOKEN")
    monkeypatch.setenv("MODULETRACE_PASSWORD", "pw-s3cr3t-value")
    code, out, err, _ = run(capsys, "races", flag, fake.url, "--user", "admin", "--verbose")
    assert code == 3 and "pw-s3cr3t-value" not in out + err
    assert "YWRtaW46cHctczNjcjN0LXZhbHVl" not in out + err  # admin:pw-s3cr3t-value in base64
    code, out, err, _ = run(capsys, "races", flag, fake.url.replace("//", "//admin:pw-s3cr3t-value@"))
    assert code == 3 and "pw-s3cr3t-value" not in out + err


@pytest.mark.parametrize(
    "url",
    [
        "http:/admin:pw-s3cr3t@127.0.0.1:1",
        "http//admin:pw-s3cr3t@127.0.0.1:1",
        "http:admin:pw-s3cr3t@127.0.0.1:1",
        "htp://admin:pw-s3cr3t@127.0.0.1:1",
        "http://admin:pw/s3cr3t@127.0.0.1:1",
        "http://admin:pw#s3cr3t@127.0.0.1:1",
        "http://admin:pw?s3cr3t@127.0.0.1:1",
        "http://admin:pw-s3cr3t@",
        "http://admin:pw-s3cr3t@127.0.0.1:99999",
        "http://admin:pw@s3cr3t@127.0.0.1:1",
        "127.0.0.1:1?token=pw-s3cr3t",
        "http://admin:pw%2Fs3cr3t@127.0.0.1:1",
    ],
)
@pytest.mark.parametrize("flag", ["--jaeger", "--tempo"])
def test_a_mistyped_url_never_echoes_its_password(capsys: pytest.CaptureFixture[str], url: str, flag: str) -> None:
    code, out, err, _ = run(capsys, "races", flag, url, "--timeout", "1")
    assert code in (2, 3), err
    one_error_line(err)
    assert "s3cr3t" not in out + err, err
