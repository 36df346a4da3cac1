"""A real Redis server for a test session, from the Debian package, on 127.0.0.1 with a free port (and its
Prometheus exporter, for the tests of the collector's metrics/redis.yaml).

    with running_redis(tmp_dir) as server:
        client = redis.asyncio.Redis.from_url(server.url)

No persistence (``--save ""``, no AOF), loopback only; stopped with SIGTERM by its PID, then
SIGKILL. Binary: $MODULETRACE_REDIS_SERVER, else ``redis-server`` on PATH or in /usr/bin; without
it the test is skipped, or fails when MODULETRACE_REQUIRE_PEERS=1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.postgres import missing_peer
from tests.support.processes import free_port, running_exporter


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    pid: int
    log: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def redis_binary() -> str | None:
    """$MODULETRACE_REDIS_SERVER (the only one tried when set), else redis-server on PATH or in /usr/bin."""
    configured = os.environ.get("MODULETRACE_REDIS_SERVER")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if os.access(p, os.X_OK)), None
    )


@contextlib.contextmanager
def running_redis(directory: Path, timeout: float = 20) -> Iterator[RedisServer]:
    binary = redis_binary()
    if binary is None:
        missing_peer("redis-server not found (apt-get install redis-server, or set MODULETRACE_REDIS_SERVER)")
        raise AssertionError("unreachable")
    port = free_port()
    log = directory / "redis.log"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(directory), "--logfile", str(log), "--daemonize", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not _pong(port):
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"redis-server exited {process.returncode}: {err}{_tail(log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server not answering PING within {timeout}s: {_tail(log)}")
            time.sleep(0.05)
        yield RedisServer("127.0.0.1", port, process.pid, log)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


@contextlib.contextmanager
def running_redis_exporter(server: RedisServer, directory: Path, streams: str, timeout: float = 20) -> Iterator[str]:
    """redis_exporter (the Debian package prometheus-redis-exporter) for ``server``, reporting the streams
    matching ``streams`` (--check-streams, as collector/metrics/redis.yaml documents); yields its
    ``host:port`` for the collector to scrape. Binary: $MODULETRACE_REDIS_EXPORTER, else
    prometheus-redis-exporter on PATH (skip or fail as above).
    """
    exporter = os.environ.get("MODULETRACE_REDIS_EXPORTER") or shutil.which("prometheus-redis-exporter")
    if not exporter or not os.access(exporter, os.X_OK):
        missing_peer("prometheus-redis-exporter not found (apt-get install prometheus-redis-exporter)")
        raise AssertionError("unreachable")
    port = free_port()
    args = [exporter, f"--web.listen-address=127.0.0.1:{port}", f"--redis.addr={server.url}"]
    args.append(f"--check-streams={streams}")
    with running_exporter(
        args, port, "redis_up 1", directory / f"redis-exporter-{server.port}.log", None, timeout
    ) as at:
        yield at
