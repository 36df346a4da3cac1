"""A real RabbitMQ node for a test module, from the Debian package, on 127.0.0.1 with free ports.

    with running_rabbitmq(tmp_dir) as broker:
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))

Everything the node writes (data, logs, the Erlang cookie) stays in the temp folder; nothing from
/etc/rabbitmq is read. The node and its own epmd (the Erlang port mapper, started here in the
foreground on a free port so no daemon outlives the test) listen on loopback only, AMQP on one free
port, distribution on another. Stopped with SIGTERM by PID (RabbitMQ shuts down cleanly), then
SIGKILL. Without the package the test is skipped, or fails when MODULETRACE_REQUIRE_PEERS=1.
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
from tests.support.processes import free_port

#: The Debian package's start script (the one in /usr/sbin switches to the rabbitmq user).
SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


@dataclass(frozen=True)
class RabbitMQ:
    host: str
    port: int
    pid: int
    directory: Path
    prometheus_port: int | None = None  # the rabbitmq_prometheus plugin's listener, when asked for

    @property
    def url(self) -> str:
        """An AMQP URL with RabbitMQ's default user, which may log in from loopback only."""
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in (self.directory / "log").glob("*.log"))


def _binary() -> Path | None:
    configured = os.environ.get("MODULETRACE_RABBITMQ_SERVER")
    if configured:
        return Path(configured) if os.access(configured, os.X_OK) else None
    return SCRIPT if os.access(SCRIPT, os.X_OK) else None


@contextlib.contextmanager
def running_rabbitmq(directory: Path, timeout: float = 60, prometheus: bool = False) -> Iterator[RabbitMQ]:
    script = _binary()
    epmd = shutil.which("epmd")
    if script is None or epmd is None:
        missing_peer("rabbitmq-server not found (apt-get install rabbitmq-server, or set MODULETRACE_RABBITMQ_SERVER)")
        raise AssertionError("unreachable")
    port, epmd_port, dist_port = free_port(), free_port(), free_port()
    metrics_port = free_port() if prometheus else None
    # The built-in Prometheus endpoint (rabbitmq_prometheus) on loopback, when a test scrapes it, with
    # the queues' figures refreshed every second (collect_statistics_interval; 5 s by default).
    (directory / "enabled_plugins").write_text("[rabbitmq_prometheus].\n" if prometheus else "[].\n")
    (directory / "rabbitmq.conf").write_text(
        f"prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {metrics_port}\ncollect_statistics_interval = 1000\n"
        if prometheus
        else ""
    )
    (directory / "rabbitmq-env.conf").write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),  # the Erlang cookie
        "LANG": "C.UTF-8",
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": f"moduletrace{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        # The script then execs the VM (our PID is the node's), with no shell reading stdin.
        "RABBITMQ_ALLOW_INPUT": "1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-noinput -kernel inet_dist_use_interface {127,0,0,1}",
    }
    mapper = subprocess.Popen(
        [epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    node: subprocess.Popen[bytes] | None = None
    output = directory / "stdout.log"
    try:
        with output.open("wb") as sink:
            node = subprocess.Popen(
                [str(script)], env=env, cwd=directory, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        broker = RabbitMQ("127.0.0.1", port, node.pid, directory, metrics_port)
        deadline = time.monotonic() + timeout
        while not _speaks_amqp(port):
            if node.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited {node.returncode}: {_tail(output)}{broker.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"RabbitMQ not answering on {port} within {timeout}s: {_tail(output)}")
            time.sleep(0.2)
        yield broker
    finally:
        for process in (node, mapper):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _speaks_amqp(port: int) -> bool:
    """The listener answers an AMQP 0-9-1 protocol header with connection.start (not just a TCP accept)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(8)[:1] == b"\x01"  # a method frame
    except OSError:
        return False


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""
