"""Requests per second of the demo's services with and without moduletrace, and their memory over a run.

    python benchmarks/bench_load.py [--modules 2000] [--concurrency 16]

Runs the demo system (real HTTP, SQLite, pool) twice in one run, side by side: instrumented (spans
to the embedded OTLP JSON lines file) and with OTEL_SDK_DISABLED=true (the same code, tracing
off), and prints creates+loads per second and their ratio. Then, instrumented, samples the canvas
service's resident memory every 500 modules to show it stays flat. Faults are off: this measures
the cost of the instrumentation, not of failures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from moduletrace.demo import DemoOptions, run


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rate(options: DemoOptions, disabled: bool) -> tuple[float, list[float]]:
    previous = os.environ.get("OTEL_SDK_DISABLED")
    if disabled:
        os.environ["OTEL_SDK_DISABLED"] = "true"
    samples: list[float] = []
    try:
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if done % 500 == 0:
                for pid in _service_pids():
                    samples.append(_rss_mib(pid))

        run(options, progress)
        elapsed = time.perf_counter() - started
    finally:
        if previous is None:
            os.environ.pop("OTEL_SDK_DISABLED", None)
        else:
            os.environ["OTEL_SDK_DISABLED"] = previous
    return 2 * options.modules / elapsed, samples


def _service_pids() -> list[int]:
    """The demo's canvas service (the loading side), found by its command line."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"moduletrace.demo.services" in command and b"canvas" in command:
                pids.append(int(entry.name))
    return pids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modules", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        common = dict(modules=args.modules, concurrency=args.concurrency, race_rate=0, auth_rate=0, pool_rate=0)
        results = {}
        for label, disabled in (
            ("tracing off", True),
            ("instrumented", False),
            ("tracing off ", True),
            ("instrumented ", False),
        ):
            rate, samples = _rate(DemoOptions(directory=str(Path(directory) / label.strip()), **common), disabled)
            results.setdefault(label.strip(), []).append((rate, samples))
        off = max(r for r, _ in results["tracing off"])
        on = max(r for r, _ in results["instrumented"])
        print(f"{args.modules} creates + {args.modules} loads, {args.concurrency} concurrent clients, real HTTP")
        print(f"  tracing off   {off:8.0f} requests/s (best of 2)")
        print(f"  instrumented  {on:8.0f} requests/s (best of 2)")
        print(f"  -> instrumented / off = {on / off:.2f}")
        samples = results["instrumented"][-1][1]
        if samples:
            print("canvas service RSS every 500 modules (MiB): " + ", ".join(f"{s:.1f}" for s in samples))


if __name__ == "__main__":
    main()
