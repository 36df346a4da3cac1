"""The real peers (our collector build, Jaeger v2) started on 127.0.0.1 with free ports, and stopped.

Binaries come from $MODULETRACE_COLLECTOR / $MODULETRACE_JAEGER, else from scripts/peers.sh
(which builds them once and caches them). Without them a test is skipped, unless
MODULETRACE_REQUIRE_PEERS=1 (as scripts/test sets it), where it fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ROOT, free_port

_binaries: dict[str, str] = {}


def binary(name: str) -> str:
    """Path of the ``collector`` or ``jaeger`` binary."""
    if name in _binaries:
        return _binaries[name]
    path = os.environ.get(f"MODULETRACE_{name.upper()}")
    if not path:
        try:
            path = (
                subprocess.run(
                    [str(ROOT / "scripts" / "peers.sh"), name], check=True, capture_output=True, text=True, timeout=1800
                )
                .stdout.strip()
                .splitlines()[-1]
            )
        except (subprocess.SubprocessError, OSError, IndexError) as exc:
            message = f"{name} binary unavailable (scripts/peers.sh {name} failed: {exc})"
            if os.environ.get("MODULETRACE_REQUIRE_PEERS") == "1":
                pytest.fail(message)
            pytest.skip(message)
    _binaries[name] = path
    return path


class Process:
    """A peer process whose log goes to a file; stopped with SIGTERM (then SIGKILL)."""

    def __init__(
        self, args: list[str], log: Path, health_url: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT, cwd=log.parent, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._out.close()
                raise RuntimeError(f"{args[0]} exited {self.process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{args[0]} not healthy within {timeout}s:\n{log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()


#: The Jaeger UI's build output (jaeger-ui 1.76.0, Apache-2.0): the Jaeger built from its Go module has
#: no UI of its own. CI keeps a copy of shared/ beside the clone; MODULETRACE_JAEGER_UI overrides.
JAEGER_UI_ARCHIVE = Path(
    os.environ.get("MODULETRACE_JAEGER_UI") or ROOT.parent / "shared" / "vendor" / "jaeger-ui-1.76.0-build.tar.gz"
)


def jaeger_ui(directory: Path) -> Path:
    """The UI unpacked into ``directory``: the folder holding index.html, for JAEGER_UI_ASSETS."""
    if not JAEGER_UI_ARCHIVE.is_file():
        message = f"the Jaeger UI build is not at {JAEGER_UI_ARCHIVE} (set MODULETRACE_JAEGER_UI)"
        if os.environ.get("MODULETRACE_REQUIRE_PEERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with tarfile.open(JAEGER_UI_ARCHIVE) as archive:
        if hasattr(tarfile, "data_filter"):  # refuse links and paths out of the folder, where Python can
            archive.extractall(directory / "jaeger-ui", filter="data")
        else:
            archive.extractall(directory / "jaeger-ui")  # noqa: S202 - our own vendored archive
    index = next((directory / "jaeger-ui").rglob("index.html"))
    return index.parent


@dataclass
class Jaeger:
    query_url: str
    otlp_http: str
    otlp_grpc: str
    process: Process


def start_jaeger(directory: Path, ui: bool = False) -> Jaeger:
    """Jaeger v2 on the shipped collector/jaeger.yaml, with free ports (and the real UI when ``ui``)."""
    query, grpc_query, health, otlp_grpc, otlp_http = (free_port() for _ in range(5))
    env = {
        **os.environ,
        "JAEGER_UI_ASSETS": str(jaeger_ui(directory)) if ui else "",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{query}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{grpc_query}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{otlp_grpc}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{otlp_http}",
        "JAEGER_BATCH_TIMEOUT": "50ms",
    }
    process = Process(
        [binary("jaeger"), "--config", str(ROOT / "collector" / "jaeger.yaml")],
        directory / "jaeger.log",
        f"http://127.0.0.1:{health}/status",
        env=env,
    )
    return Jaeger(f"http://127.0.0.1:{query}", f"http://127.0.0.1:{otlp_http}", f"127.0.0.1:{otlp_grpc}", process)


@dataclass
class Collector:
    otlp_http: str
    otlp_grpc: str
    process: Process


#: The backend files collector/otelcol.sh merges over otelcol.yaml, by the variable that switches each on.
BACKEND_CONFIGS = {
    "JAEGER_OTLP_ENDPOINT": ROOT / "collector" / "backends" / "jaeger.yaml",
    "TEMPO_OTLP_ENDPOINT": ROOT / "collector" / "backends" / "tempo.yaml",
}
#: The scrape files it merges the same way, by the variable that lists each one's targets.
METRICS_CONFIGS = {
    "POSTGRES_EXPORTER_TARGETS": ROOT / "collector" / "metrics" / "postgresql.yaml",
    "RABBITMQ_PROMETHEUS_TARGETS": ROOT / "collector" / "metrics" / "rabbitmq.yaml",
    "REDIS_EXPORTER_TARGETS": ROOT / "collector" / "metrics" / "redis.yaml",
}


def start_collector(directory: Path, config: str, env_ports: dict[str, int | str] | None = None) -> Collector:
    """Run our collector build on ``config`` (a YAML text using ${env:...} for ports and paths).

    As collector/otelcol.sh does, the file of each backend whose endpoint variable ``env_ports``
    sets is merged over it.
    """
    grpc, http, health = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}",
        "HEALTH_ENDPOINT": f"127.0.0.1:{health}",
        **{k: str(v) for k, v in (env_ports or {}).items()},
    }
    if "HOME" not in (env_ports or {}):  # a test that gives HOME checks the defaults under it
        # Never the real default under $HOME: the metrics archive stays in the test's folder.
        env.setdefault("MODULETRACE_METRICS_ARCHIVE", str(directory / "metrics.jsonl"))
    path = directory / "collector.yaml"
    path.write_text(config)
    merged = {**BACKEND_CONFIGS, **METRICS_CONFIGS}
    backends = [a for name, file in merged.items() if (env_ports or {}).get(name) for a in ("--config", str(file))]
    process = Process(
        [binary("collector"), "--config", str(path), *backends],
        directory / "collector.log",
        f"http://127.0.0.1:{health}/",
        env=env,
    )
    return Collector(f"http://127.0.0.1:{http}", f"127.0.0.1:{grpc}", process)
