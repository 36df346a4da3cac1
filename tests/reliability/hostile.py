"""Hostile inputs for ``moduletrace races|diagnose --file``, shared by the tests and by measurement.

Each maker writes one file and returns its path. Run as a script to measure time and peak memory
of the command on each (one child process per input, ``ru_maxrss`` of the child)::

    .venv/bin/python -m tests.reliability.hostile /tmp/hostile [NAME ...]
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, float, float, str]:
    """(exit status, seconds, peak RSS in MB, last stderr line) of one child process."""
    with tempfile.TemporaryFile() as err:
        started = time.monotonic()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss / 1024, lines[-1][:140] if lines else ""


def main() -> None:
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
