"""The demo's runner: two services, a client, injected faults, and the verdicts checked against them.

Two real HTTP services (module-service creates, canvas-service loads) run as their own
processes on 127.0.0.1 with a real SQLite database and a real connection pool, instrumented with
moduletrace. A client creates modules and loads them, concurrently, while the three faults of the
incident's hypotheses are injected at chosen rates: the index update lags behind the commit (race),
the token expires between create and load (auth), too few pooled connections for a burst of
loads (pool). Spans go to OTLP JSON lines files (the embedded default), then the race rule runs
on them and its verdicts are compared with what was injected.

With ``broker`` (a Redis or RabbitMQ URL) a third process, the indexer, makes modules loadable:
it consumes each creation's event from a stream or queue of the run's own, and the lagging index
of a raced module is a real consumer lag (the event waits in the broker behind a slow job), which
the consumer records and the race verdicts then name.
"""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from moduletrace.analysis.diagnosis import DiagnosisReport
from moduletrace.analysis.report import RaceReport
from moduletrace.demo.broker import Broker, broker_for, prepare, remove
from moduletrace.errors import BackendError
from moduletrace.scan import ScanOptions, incident

FAULTS = ("race", "auth", "pool")


@dataclass
class DemoOptions:
    seed: int = 7
    modules: int = 200
    concurrency: int = 8
    race_rate: float = 0.03
    auth_rate: float = 0.02
    pool_rate: float = 0.02
    pool_size: int = 4
    pool_timeout: float = 0.05
    otlp: str | None = None
    directory: str | None = None
    broker: str | None = None  # redis://... or amqp://...: the indexer consumes the creation events there


@dataclass
class DemoResult:
    directory: Path
    injected: dict[str, str]  # module id -> fault ("race", "auth", "pool") for the faulty ones
    statuses: dict[str, int]  # module id -> HTTP status of its load
    report: RaceReport
    diagnosis: DiagnosisReport
    warnings: list[str] = field(default_factory=list)
    broker: Broker | None = None

    @property
    def spans_glob(self) -> str:
        return str(self.directory / "spans" / "*.jsonl")

    @property
    def injected_races(self) -> set[str]:
        return {m for m, fault in self.injected.items() if fault == "race"}

    @property
    def found_races(self) -> set[str]:
        return {r.module_id for r in (*self.report.races, *self.report.stale_reads)}

    @property
    def missed(self) -> set[str]:
        return self.injected_races - self.found_races

    @property
    def false_positives(self) -> set[str]:
        return self.found_races - self.injected_races

    @property
    def misdiagnosed(self) -> dict[str, tuple[str, str]]:
        """Failed loads whose diagnosed cause is not the injected fault: module -> (injected, diagnosed)."""
        diagnosed = {d.module_id: d.cause for d in self.diagnosis.diagnoses}
        out = {m: (fault, diagnosed.get(m, "none")) for m, fault in self.injected.items() if diagnosed.get(m) != fault}
        out.update({m: ("none", cause) for m, cause in diagnosed.items() if m not in self.injected})
        return out

    @property
    def matches(self) -> bool:
        return not self.missed and not self.false_positives and not self.misdiagnosed


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Service:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moduletrace.demo.services", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.stop()
            raise RuntimeError(f"demo service {args[0]} did not start; see {log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def check_otlp(endpoint: str, timeout: float = 3.0) -> None:
    """Raise BackendError unless ``endpoint`` (the services' OTEL_EXPORTER_OTLP_ENDPOINT) takes spans.

    An empty OTLP/HTTP export, as the services' exporters would send it: without this check a dead
    collector costs every service its exporter's retries and the demo still "succeeds" from its files.
    """
    url = endpoint.rstrip("/") + "/v1/traces"
    try:
        response = httpx.post(url, content=b"", headers={"Content-Type": "application/x-protobuf"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise BackendError(f"--otlp {endpoint}: no OTLP/HTTP receiver at {url} ({type(exc).__name__})") from None
    answer = f"HTTP {response.status_code} {response.headers.get('content-type', '')}".strip()
    if not response.is_success or not response.headers.get("content-type", "").startswith("application/x-protobuf"):
        raise BackendError(f"--otlp {endpoint}: {url} answered {answer}, not an OTLP/HTTP receiver's answer")


def run(options: DemoOptions, progress: Callable[[int, int], None] = lambda done, total: None) -> DemoResult:
    """Run the demo and return what was injected, what happened and what the race rule found."""
    if options.race_rate + options.auth_rate + options.pool_rate > 1:
        raise ValueError("the fault rates add up to more than 1")
    if options.otlp:
        check_otlp(options.otlp)
    broker = broker_for(options.broker) if options.broker else None
    if broker is not None:
        prepare(broker)
    try:
        return _run(options, progress, broker)
    finally:
        if broker is not None:
            remove(broker)


def _run(options: DemoOptions, progress: Callable[[int, int], None], broker: Broker | None) -> DemoResult:
    directory = Path(options.directory or tempfile.mkdtemp(prefix="moduletrace-demo-"))
    (directory / "spans").mkdir(parents=True, exist_ok=True)
    for old in (directory / "spans").glob("*.jsonl"):
        old.unlink()
    db = directory / "modules.db"
    if db.exists():
        db.unlink()
    rng = random.Random(options.seed)
    module_ids = [f"mod-{options.seed}-{n:04d}" for n in range(options.modules)]
    injected = _assign_faults(module_ids, options, rng)

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base_env.update(MODULETRACE_DEMO_SECRET=secrets.token_hex(16), OTEL_BSP_SCHEDULE_DELAY="200")
    if options.otlp:
        base_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = options.otlp
    if broker is not None:  # the URL's credentials go by the environment, never the command line
        base_env.update(MODULETRACE_DEMO_BROKER=broker.url, MODULETRACE_DEMO_DESTINATION=broker.destination)
    module_port, canvas_port = _free_port(), _free_port()
    services = []
    try:
        services.append(
            _Service(
                ["module", str(module_port), str(db)],
                {**base_env, "MODULETRACE_FILE": str(directory / "spans" / "module-service.jsonl")},
                directory / "module-service.log",
            )
        )
        services.append(
            _Service(
                ["canvas", str(canvas_port), str(db), str(options.pool_size), str(options.pool_timeout)],
                {**base_env, "MODULETRACE_FILE": str(directory / "spans" / "canvas-service.jsonl")},
                directory / "canvas-service.log",
            )
        )
        if broker is not None:
            services.append(
                _Service(
                    ["indexer", "-", str(db)],
                    {**base_env, "MODULETRACE_FILE": str(directory / "spans" / "indexer-service.jsonl")},
                    directory / "indexer-service.log",
                )
            )
        statuses = _drive(module_ids, injected, options, module_port, canvas_port, progress)
        if broker is not None:
            _wait_for_index(db, module_ids)
    finally:
        for service in services:
            service.stop()

    warnings: list[str] = []
    paths = [str(p) for p in sorted((directory / "spans").glob("*.jsonl"))]
    diagnosis, races, _ = incident(ScanOptions(files=paths, settle_after_s=None), warnings.append)
    injected_faults = {m: f for m, f in injected.items() if f}
    return DemoResult(directory, injected_faults, statuses, races, diagnosis, warnings, broker)


def _wait_for_index(db: Path, module_ids: list[str], timeout: float = 30) -> None:
    """Until the indexer has taken every event (a raced module's comes after its load)."""
    import sqlite3

    deadline = time.monotonic() + timeout
    connection = sqlite3.connect(db, timeout=10)
    try:
        while connection.execute("SELECT count(*) FROM module_index").fetchone()[0] < len(module_ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the indexer did not take every creation event within {timeout:.0f} s")
            time.sleep(0.01)
    finally:
        connection.close()


def _assign_faults(module_ids: list[str], options: DemoOptions, rng: random.Random) -> dict[str, str]:
    shuffled = module_ids[:]
    rng.shuffle(shuffled)
    counts = [round(len(module_ids) * rate) for rate in (options.race_rate, options.auth_rate, options.pool_rate)]
    injected = {m: "" for m in module_ids}
    start = 0
    for fault, count in zip(FAULTS, counts, strict=True):
        for module_id in shuffled[start : start + count]:
            injected[module_id] = fault
        start += count
    return injected


def _drive(
    module_ids: list[str],
    injected: dict[str, str],
    options: DemoOptions,
    module_port: int,
    canvas_port: int,
    progress: Callable[[int, int], None],
) -> dict[str, int]:
    module_url, canvas_url = f"http://127.0.0.1:{module_port}", f"http://127.0.0.1:{canvas_port}"
    statuses: dict[str, int] = {}
    done = 0
    lock = threading.Lock()
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=options.concurrency * 2 + options.pool_size))

    def create(module_id: str) -> str:
        headers = {"X-Demo-Fault": "race"} if injected[module_id] == "race" else {}
        response = client.post(f"{module_url}/modules/{module_id}", headers=headers)
        response.raise_for_status()
        token: str = response.json()["token"]
        if injected[module_id] == "auth":
            # The user's session token expires between creating the module and loading it.
            token = client.post(f"{module_url}/tokens", params={"ttl": "0.05"}).json()["token"]
            time.sleep(0.1)
        return token

    def load(module_id: str, token: str) -> None:
        nonlocal done
        status = client.get(
            f"{canvas_url}/modules/{module_id}", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        with lock:
            statuses[module_id] = status
            done += 1
            progress(done, len(module_ids))

    def create_and_load(module_id: str) -> None:
        load(module_id, create(module_id))

    try:
        burst = [m for m in module_ids if injected[m] == "pool"]
        with ThreadPoolExecutor(options.concurrency) as workers:
            list(workers.map(create_and_load, [m for m in module_ids if injected[m] != "pool"]))
            tokens = dict(zip(burst, workers.map(create, burst), strict=True))
        if burst:
            # A burst of loads while slow report queries hold every pooled connection.
            with ThreadPoolExecutor(options.pool_size + len(burst)) as workers:
                holders = [
                    workers.submit(client.get, f"{canvas_url}/report", params={"hold_ms": "500"})
                    for _ in range(options.pool_size)
                ]
                deadline = time.monotonic() + 5
                while (
                    client.get(f"{canvas_url}/pool").json()["in_use"] < options.pool_size
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.005)
                list(workers.map(lambda m: load(m, tokens[m]), burst))
                for holder in holders:
                    holder.result()
    finally:
        client.close()
    return statuses
