"""Hostile inputs for ``moduletrace races|diagnose --file``, shared by the tests and by measurement.

Each maker writes one file and returns its path. Run as a script to measure time and peak memory
of the command on each (one child process per input, ``ru_maxrss`` of the child), with orjson and
with the standard library's json; ``--backends`` runs the hostile backends (fakes served from this
process) instead::

    .venv/bin/python -m tests.reliability.hostile /tmp/hostile [NAME ...]
    .venv/bin/python -m tests.reliability.hostile --backends [NAME ...]
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TRACE = "0af7651916cd43dd8448eb211c80319c"


def otlp_span(name: str, span_id: str, module: Any = "m-1", start: Any = "1000", end: Any = "2000") -> dict[str, Any]:
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "attributes": [
            {"key": "module.stage", "value": {"stringValue": name.split("_", 2)[-1]}},
            {"key": "module.id", "value": {"stringValue": module}},
        ],
    }


def line(*spans: dict[str, Any]) -> dict[str, Any]:
    resource = {
        "attributes": [
            {"key": "service.name", "value": {"stringValue": "svc"}},
            {"key": "host.name", "value": {"stringValue": "h1"}},
        ]
    }
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}


def racing_line(
    module: Any = "m-1", start: Any = None, end: Any = None, ids: tuple[str, str, str] | None = None
) -> str:
    """A creation and a load that read before its commit (a race), as one OTLP JSON line."""
    a, b, c = ids or ("a1" * 8, "b1" * 8, "c1" * 8)
    query = otlp_span("module_load_db_query", c, module, start or "5000", end or "5100")
    query["parentSpanId"] = b
    return (
        json.dumps(
            line(
                otlp_span("module_create_db_commit", a, module, "6000", "10000"),
                otlp_span("module_load_request", b, module, "4500", "5500"),
                query,
            )
        )
        + "\n"
    )


# --- the makers ------------------------------------------------------------------------------


def corrupt_zstd_file(path: Path) -> Path:
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00\xff" * 64)
    return path


def corrupt_zstd_frame(path: Path) -> Path:
    body = b"\x28\xb5\x2f\xfd" + b"\x13" * 40
    path.write_bytes(struct.pack(">I", len(body)) + body)
    return path


def year_10000(path: Path) -> Path:
    far = str(253_402_300_800 * 10**9 + 5_000)  # 10000-01-01T00:00:00Z and later
    path.write_text(racing_line(start=far, end=str(int(far) + 100)))
    return path


def end_before_start(path: Path) -> Path:
    path.write_text(racing_line(start="5100", end="5000"))
    return path


def negative_times(path: Path) -> Path:
    path.write_text(racing_line(start="-5000", end="-4900"))
    return path


def no_start_time(path: Path) -> Path:
    """The racing load's query without its start (OTLP JSON leaves a zero time out)."""
    line = json.loads(racing_line())
    del line["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["startTimeUnixNano"]
    path.write_text(json.dumps(line) + "\n")
    return path


def huge_number_times(path: Path) -> Path:
    path.write_text(racing_line().replace('"5000"', "1e999"))
    return path


def deep_nesting(path: Path, depth: int = 100_000) -> Path:
    path.write_text('{"resourceSpans": ' + "[" * depth + "]" * depth + "}\n")
    return path


def lone_surrogate(path: Path) -> Path:
    path.write_text(racing_line(module="m-\ud800").replace("\\ud800", "\\ud800"))
    return path


def ansi_module_id(path: Path) -> Path:
    path.write_text(racing_line(module="m-\x1b[2J\x1b]0;pwned\x07"))
    return path


def odd_ids(path: Path) -> Path:
    path.write_text(racing_line(ids=("a1" * 8, "\x1b[31m" + "z" * 11, "c1" * 8)))
    return path


def empty_objects(path: Path, lines: int = 2_000_000) -> Path:
    path.write_bytes(b"{}\n" * lines)
    return path


def nul_bytes(path: Path, size: int = 10 * 2**20) -> Path:
    path.write_bytes(b"\x00" * size)
    return path


def gzip_bomb(path: Path, size: int = 2**30) -> Path:
    """About 1 MB of gzip that inflates to ``size`` bytes of one line with no newline."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * 2**20
    with path.open("wb") as out:
        out.write(compressor.compress(b'{"resourceSpans": [], "x": "'))
        for _ in range(size // len(chunk)):
            out.write(compressor.compress(chunk))
        out.write(compressor.flush())
    return path


def truncated_gzip(path: Path) -> Path:
    data = gzip.compress((racing_line() * 2000).encode())
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def truncated_zstd(path: Path) -> Path:
    import zstandard

    data = zstandard.ZstdCompressor().compress((racing_line() * 2000).encode())
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


MAKERS: dict[str, Callable[[Path], Path]] = {
    "corrupt-zstd-file": corrupt_zstd_file,
    "corrupt-zstd-frame": corrupt_zstd_frame,
    "year-10000": year_10000,
    "end-before-start": end_before_start,
    "negative-times": negative_times,
    "1e999-times": huge_number_times,
    "deep-nesting": deep_nesting,
    "lone-surrogate": lone_surrogate,
    "ansi-module-id": ansi_module_id,
    "odd-ids": odd_ids,
    "2M-empty-objects": empty_objects,
    "10MB-nul": nul_bytes,
    "gzip-bomb": gzip_bomb,
    "truncated-gzip": truncated_gzip,
    "truncated-zstd": truncated_zstd,
}


#: Runs the command with orjson hidden when MODULETRACE_NO_ORJSON=1 (the standard library's json path).
RUNNER = (
    "import os, sys\n"
    "if os.environ.get('MODULETRACE_NO_ORJSON') == '1': sys.modules['orjson'] = None\n"
    "from moduletrace.cli.main import main\n"
    "sys.exit(main())"
)


def measure(argv: list[str], env: dict[str, str] | None = None, limit_s: float = 600) -> tuple[int, float, float, str]:
    """(exit status, seconds, peak RSS in MB, last stderr line) of one child process, killed after
    ``limit_s`` (then its status is -9)."""
    with tempfile.TemporaryFile() as err:
        started = time.monotonic()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        killer = threading.Timer(limit_s, child.kill)
        killer.start()
        _, status, usage = os.wait4(child.pid, 0)
        killer.cancel()
        seconds = time.monotonic() - started
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss / 1024, lines[-1][:140] if lines else ""


# --- hostile backends ----------------------------------------------------------------------------


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def _jaeger(search: Callable[[BaseHTTPRequestHandler, dict[str, list[str]]], None]) -> Callable[..., None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        if url.path == "/api/v3/services":
            _send(handler, 200, b'{"services": ["svc"]}')
        elif url.path == "/api/v3/operations":
            _send(handler, 200, b'{"operations": [{"name": "module_load_request"}]}')
        else:
            search(handler, parse_qs(url.query))

    return answer


def _endless(handler: BaseHTTPRequestHandler, query: Any = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(2**31))
    handler.end_headers()
    chunk = b" " * 2**20
    for _ in range(2048):  # 2 GiB
        handler.wfile.write(chunk)


def _trickle(handler: BaseHTTPRequestHandler, query: Any = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    for _ in range(100_000):  # a byte a second
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(1)


def _full_page(handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
    limit = int(query["query.num_traces"][0])
    spans = [
        {"traceId": f"{n + 1:032x}", "spanId": f"{n + 1:016x}", "name": "GET", "kind": 2, "startTimeUnixNano": "1"}
        for n in range(limit)
    ]
    _send(handler, 200, json.dumps({"result": {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}}).encode())


BACKENDS: dict[str, tuple[Callable[..., None], list[str]]] = {
    "redirect-loop": (lambda h: _send(h, 302, b"", Location=h.path), []),
    "bad-content-encoding": (lambda h: _send(h, 200, b"{not gzip}", Content_Encoding="gzip"), []),
    "1e999-answer": (
        _jaeger(lambda h, q: _send(h, 200, b'{"result": ' + racing_line().replace('"5000"', "1e999").encode() + b"}")),
        [],
    ),
    "deep-nesting-answer": (_jaeger(lambda h, q: _send(h, 200, b"[" * 100_000 + b"]" * 100_000)), []),
    "2GiB-body": (_jaeger(_endless), []),
    "byte-a-second": (_jaeger(_trickle), ["--timeout", "5"]),
    "always-full-page": (_jaeger(_full_page), []),
}


def serve(answer: Callable[..., None]) -> str:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            try:
                answer(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def main_backends(names: list[str]) -> None:
    for name in names or list(BACKENDS):
        answer, extra = BACKENDS[name]
        url = serve(answer)
        for no_orjson in ("0", "1"):
            env = {**os.environ, "MODULETRACE_NO_ORJSON": no_orjson}
            argv = [sys.executable, "-c", RUNNER, "races", "--jaeger", url, "--format", "table", *extra]
            code, seconds, rss, last = measure(argv, env, limit_s=float(os.environ.get("HOSTILE_LIMIT_S", "300")))
            which = "json" if no_orjson == "1" else "orjson"
            print(f"{name:20s} {which:6s} exit {code:3d} {seconds:6.2f} s {rss:7.0f} MB  {last}", flush=True)


def main() -> None:
    if sys.argv[1] == "--backends":
        main_backends(sys.argv[2:])
        return
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    names = sys.argv[2:] or list(MAKERS)
    for name in names:
        path = directory / name
        if not path.exists():
            MAKERS[name](path)
        for no_orjson in ("0", "1"):
            env = {**os.environ, "MODULETRACE_NO_ORJSON": no_orjson}
            argv = [sys.executable, "-c", RUNNER, "races", "--file", str(path), "--format", "table"]
            code, seconds, rss, last = measure(argv, env)
            which = "json" if no_orjson == "1" else "orjson"
            print(f"{name:18s} {which:6s} exit {code:3d} {seconds:6.2f} s {rss:7.0f} MB  {last}", flush=True)


if __name__ == "__main__":
    main()
