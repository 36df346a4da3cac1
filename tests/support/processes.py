"""Starting and stopping the real processes a test needs, on 127.0.0.1 with free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python: this checkout importable, no inherited OTEL_* surprises."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTEST_CURRENT_TEST"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


def start_python(
    args: Sequence[str], env: Mapping[str, str], ready: str = "ready", timeout: float = 20
) -> subprocess.Popen[str]:
    """Run ``python args...`` and wait until it prints ``ready`` on stdout."""
    process = subprocess.Popen(
        [sys.executable, *args], env=dict(env), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == ready:
            return process
        if not line and process.poll() is not None:
            raise RuntimeError(f"{args} exited {process.returncode}: {process.stderr.read() if process.stderr else ''}")
    process.kill()
    raise TimeoutError(f"{args} did not print {ready!r} within {timeout}s")


def stop(process: subprocess.Popen[str], timeout: float = 20) -> str:
    """SIGTERM, wait, and return stderr (the process must exit by itself, flushing its spans)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise
    return err or ""


def wait_until(predicate, timeout: float = 20, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    return predicate()


@contextlib.contextmanager
def running_exporter(
    args: Sequence[str], port: int, ready: str, log: Path, env: Mapping[str, str] | None = None, timeout: float = 30
) -> Iterator[str]:
    """A Prometheus exporter that ``args`` start on 127.0.0.1:``port``, once its /metrics says ``ready``
    (``pg_up 1``, ``redis_up 1``: it reached its server); yields ``host:port`` for the collector to scrape.
    Its output goes to ``log``; SIGTERM (then SIGKILL) at the end.
    """
    import httpx

    with log.open("wb") as sink:
        process = subprocess.Popen(list(args), env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{Path(args[0]).name} did not come up: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
