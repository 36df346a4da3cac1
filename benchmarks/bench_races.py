"""Speed and memory of `moduletrace races --file` on a generated collector archive.

    python benchmarks/bench_races.py [--spans 1000000]

Prints, measured side by side in one run: the time ``json.loads`` alone takes on the file's
lines, the time the whole scan takes (read, decode, detect, report), their ratio (target <= 2x),
and the peak memory of the scan on a file a quarter the size and on the full file (a module every
50 ms, each loaded 5 ms after its creation), with the command's default settling (a module's
loads are judged once the data is an hour past it) and with a 5-minute settling window: memory
must follow the modules in flight, not the file size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from moduletrace.conventions import SPAN_NAMES as NAMES

STAGES = tuple(NAMES)


def _span(
    trace: str, n: int, name: str, kind: int, start: int, end: int, attrs: list[dict[str, object]]
) -> dict[str, object]:
    return {
        "traceId": trace,
        "spanId": f"{n:016x}",
        "parentSpanId": f"{n - 1:016x}",
        "flags": 256,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": attrs,
        "status": {},
    }


def generate(path: str, spans: int, spans_per_module: int, seed: int = 1) -> None:
    """A collector-like archive: 100 spans per line, two services on two hosts, ~2% racing loads."""
    rng = random.Random(seed)
    resources = [
        {
            "attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "service.instance.id", "value": {"stringValue": f"{service}-1"}},
                {"key": "host.name", "value": {"stringValue": host}},
            ]
        }
        for service, host in (("module-service", "host-a"), ("canvas-service", "host-b"))
    ]
    t0 = 1_795_000_000_000_000_000
    written = 0
    n = 0
    module = 0
    batch: list[list[dict[str, object]]] = [[], []]
    with open(path, "w") as out:
        while written < spans:
            module += 1
            trace = f"{rng.getrandbits(128):032x}"
            base = t0 + module * 50_000_000  # a module every 50 ms
            race = rng.random() < 0.02
            # A racing module's commit lags (write-behind): its load reads before the commit begins.
            commit_at = base + (2_000_000 if race else 300_000)
            load_at = base + (500_000 if race else 5_000_000)
            starts = {"create_start": base, "db_commit": commit_at, "cache_update": commit_at + 300_000}
            for stage in STAGES:
                n += 1
                loading = stage.startswith("load")
                start = load_at if loading else starts[stage]
                attrs = [
                    {"key": "module.id", "value": {"stringValue": f"m-{module}"}},
                    {"key": "module.stage", "value": {"stringValue": stage}},
                ]
                batch[loading].append(_span(trace, n, NAMES[stage], 1, start, start + 250_000, attrs))
            for extra in range(spans_per_module - len(STAGES)):
                n += 1
                kind = (3, 2, 1, 1, 1)[extra % 5]
                http = [
                    {"key": "http.request.method", "value": {"stringValue": "GET"}},
                    {"key": "url.path", "value": {"stringValue": f"/modules/m-{module}"}},
                ]
                batch[kind == 2].append(
                    _span(trace, n, "GET /modules/{id}", kind, load_at - 100_000, load_at + 400_000, http)
                )
            written += spans_per_module
            for side in (0, 1):
                if len(batch[side]) >= 100:
                    _write_line(out, resources[side], batch[side])
                    batch[side] = []
        for side in (0, 1):
            if batch[side]:
                _write_line(out, resources[side], batch[side])


def _write_line(out: Any, resource: dict[str, object], spans: list[dict[str, object]]) -> None:
    """One collector-style line: a resource, one scope, its spans."""
    document = {
        "resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "moduletrace"}, "spans": spans}]}]
    }
    out.write(json.dumps(document, separators=(",", ":")) + "\n")


def _json_only(path: str, loads: Callable[[bytes], object] = json.loads) -> float:
    started = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            loads(line)
    return time.perf_counter() - started


def _scan(path: str, settle_after_s: float | None = 3600) -> dict[str, float]:
    """Run in a child process: time and peak RSS of the full scan."""
    code = (
        "import gc,json,resource,sys,time\n"
        "from moduletrace.analysis.races import RaceDetector, wanted\n"
        "from moduletrace.sources.file import FileSource\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.perf_counter()\n"
        f"d = RaceDetector(settle_after_s={settle_after_s!r})\n"
        "gc.disable()  # as the command does during a scan\n"
        "for s in FileSource([sys.argv[1]], print).spans(wanted): d.add(s)\n"
        "r = d.report()\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'races': len(r.races), 'loads': r.loads,"
        " 'modules': r.modules, 'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'base_mib': base / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        full = os.path.join(directory, "full.jsonl")
        generate(full, args.spans, spans_per_module=10)
        size = os.path.getsize(full) / 1e6
        print(f"{args.spans:,} spans, {size:.0f} MB, one module per 10 spans\n")
        json_seconds = min(_json_only(full) for _ in range(2))
        scan = min((_scan(full) for _ in range(2)), key=lambda r: r["seconds"])
        ratio = scan["seconds"] / json_seconds
        print(f"  json.loads alone          {json_seconds:7.2f} s  ({args.spans / json_seconds:,.0f} spans/s)")
        try:
            import orjson

            orjson_seconds = min(_json_only(full, orjson.loads) for _ in range(2))
            print(f"  orjson.loads alone        {orjson_seconds:7.2f} s  (the scan's parser with moduletrace[fast])")
        except ImportError:
            print("  (orjson not installed: the scan parses with json.loads)")
        print(f"  races scan (full)         {scan['seconds']:7.2f} s  ({args.spans / scan['seconds']:,.0f} spans/s)")
        print(
            f"  -> scan / json.loads = {ratio:.2f}x (target <= 2x); "
            f"{scan['loads']:,} loads, {scan['races']:,} races, {scan['modules']:,} modules\n"
        )
        print("peak memory of the scan (RSS, MiB, interpreter and imports included):")
        quarter = os.path.join(directory, "quarter.jsonl")
        generate(quarter, args.spans // 4, spans_per_module=10)
        for label, settle in (("settle after 1h (default)", 3600), ("settle after 5m", 300), ("never settle", None)):
            small, big = _scan(quarter, settle), _scan(full, settle)
            print(
                f"  {label:26s} {args.spans // 4:>9,} spans -> {small['peak_mib']:5.0f} MiB; "
                f"{args.spans:,} spans ({big['modules']:,} modules, {args.spans / 10 * 0.05 / 60:.0f} min of data) -> "
                f"{big['peak_mib']:5.0f} MiB"
            )
    print(f"\n(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak)")


if __name__ == "__main__":
    main()
