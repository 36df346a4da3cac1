"""What a missing collector costs a service: per-call time and memory, side by side in one run.

    python benchmarks/bench_faults.py [--calls 200000]

Each mode runs in a fresh process calling a ``@moduletrace.load_db_query`` function in a loop,
spans exported over OTLP/HTTP (configure(), BatchSpanProcessor): to our collector (built by
scripts/peers.sh), to a port where nothing listens, and to a collector killed (SIGKILL) halfway.
Prints microseconds per call, the ratio to the healthy case, the process's peak RSS (the SDK's
queue is bounded: memory must not grow with the spans dropped) and the process's exit time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, os, resource, sys, time
import moduletrace
moduletrace.configure(service_name="bench", instrument_httpx=False, exit_timeout=3)

@moduletrace.load_db_query
def read(module_id):
    return module_id

calls = int(sys.argv[1])
half = calls // 2
started = time.perf_counter()
for n in range(calls):
    read("m-1")
    if n == half:
        print("half", flush=True)
        sys.stdin.readline()  # the parent may kill the collector here
elapsed = time.perf_counter() - started
print(json.dumps({"us_per_call": elapsed / calls * 1e6,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _collector(directory: str, http_port: int) -> subprocess.Popen[bytes]:
    binary = subprocess.run(
        [str(ROOT / "scripts" / "peers.sh"), "collector"], capture_output=True, text=True, check=True
    ).stdout.strip()
    config = Path(directory) / "collector.yaml"
    config.write_text(f"""
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{http_port}"}}
exporters:
  debug: {{verbosity: basic}}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
""")
    process = subprocess.Popen([binary, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", http_port)) == 0:
                return process
        time.sleep(0.1)
    raise RuntimeError("collector did not start")


def _run(mode: str, calls: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        port = _port()
        collector = _collector(directory, port) if mode in ("collector up", "collector killed halfway") else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_TIMEOUT="2")
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(calls)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "half"
        if mode == "collector killed halfway" and collector is not None:
            collector.send_signal(signal.SIGKILL)
            collector.wait()
        child.stdin.write("go\n")
        child.stdin.flush()
        result = json.loads(child.stdout.readline())
        child.wait(timeout=60)
        result["exit_s"] = time.perf_counter() - started
        if collector is not None and collector.poll() is None:
            collector.terminate()
            collector.wait()
        return result  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    results = {mode: _run(mode, args.calls) for mode in ("collector up", "collector down", "collector killed halfway")}
    healthy = results["collector up"]["us_per_call"]
    print(f"{args.calls:,} decorated calls per mode, OTLP/HTTP export through a BatchSpanProcessor\n")
    for mode, r in results.items():
        print(
            f"  {mode:26s} {r['us_per_call']:6.2f} us/call ({r['us_per_call'] / healthy:.2f}x)  "
            f"peak {r['peak_mib']:5.0f} MiB  whole run incl. exit {r['exit_s']:5.1f} s"
        )


if __name__ == "__main__":
    main()
