"""Running the real hosts (uvicorn, gunicorn, flask, celery, redis) as processes for the deployment tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

from moduletrace.conventions import LIFECYCLE_SPAN_NAMES
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import ROOT, free_port, python_env


class Host:
    """A server process started by a test, its output kept in files (pipes would fill up and block)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], directory: Path, name: str) -> None:
        self.out = directory / f"{name}.out"
        self.err = directory / f"{name}.err"
        self._files: list[IO[bytes]] = [self.out.open("wb"), self.err.open("wb")]
        self.process = subprocess.Popen(
            list(argv), env=dict(env), cwd=ROOT, stdout=self._files[0], stderr=self._files[1]
        )

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        address = httpx.URL(url)
        with httpx.Client(timeout=2) as client:  # one client: polling must not eat the CPU the host needs
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"exited {self.process.returncode}:\n{self.stderr()[-3000:]}")
                try:
                    with socket.create_connection((address.host, address.port or 80), timeout=1):
                        pass
                    if client.get(url).status_code == 200:
                        return
                except (OSError, httpx.HTTPError):
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"{url} not up within {timeout}s:\n{self.stderr()[-3000:]}")

    def wait_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr() or text in self.stdout():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"exited {self.process.returncode}:\n{self.stderr()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{text!r} not printed within {timeout}s:\n{self.stderr()[-3000:]}")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the host to end by itself; its exit status as Popen reports it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for file in self._files:
            file.close()


@contextmanager
def running(argv: Sequence[str], env: Mapping[str, str], directory: Path, name: str) -> Iterator[Host]:
    host = Host(argv, env, directory, name)
    try:
        yield host
    finally:
        host.close()


def host_env(receiver: OTLPReceiver, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Spans to the receiver, and held in the batch queue until shutdown: only the exit path exports them."""
    return python_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
            "PYTHONUNBUFFERED": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            **(extra or {}),
        }
    )


def lifecycle_spans(receiver: OTLPReceiver, service: str | None = None) -> list[dict[str, object]]:
    return [
        s
        for s in receiver.spans()
        if s["name"] in LIFECYCLE_SPAN_NAMES and (service is None or s["service"] == service)
    ]


def binary(name: str) -> str:
    """The path of a server binary; skipped when missing, unless MODULETRACE_REQUIRE_PEERS is set (CI)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("MODULETRACE_REQUIRE_PEERS"):
            pytest.fail(f"{name} is not installed (scripts/test installs it) and MODULETRACE_REQUIRE_PEERS is set")
        pytest.skip(
            f"{name} is not installed (apt-get install -y {name}); set MODULETRACE_REQUIRE_PEERS to fail instead"
        )
    return path


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throw-away redis-server on 127.0.0.1 and a free port; yields its URL."""
    port = free_port()
    argv = [binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(directory)]
    with running(argv, os.environ, directory, "redis") as host:
        host.wait_output("Ready to accept connections")
        yield f"redis://127.0.0.1:{port}/0"
        host.terminate()
