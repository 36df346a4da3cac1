"""A real async service (FastAPI on uvicorn, asyncpg pool on PostgreSQL, Redis cache) under concurrent
creates and loads: what each load saw, the spans it left, and what ``moduletrace races`` says of them.

The service commits write-behind and updates the cache later still, so loads fired soon after a
create sometimes find no row. The service logs the ground truth of every load (``saw_row``,
``cache_hit``); the tests match ``moduletrace races --format json`` to it by ``load_span_id``.

The verdict tests check race rule version 2 (shared/design.md) against the ground truth.
``pytest -s`` prints the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import PostgresServer
from tests.support.processes import ROOT, free_port, python_env
from tests.support.redis_server import RedisServer

DSN_ENV = "MODULETRACE_SERVICE_DSN"  # as tests/services/async_service.py reads it (not imported: no web stack here)
MODULES = 200
#: Modules in flight at once. A closed loop, not a fixed rate: on a busy machine a fixed rate
#: builds a backlog where every round trip outlasts the write-behind delay and no load misses.
IN_FLIGHT = 32
#: The service's write-behind commits up to FLUSH_MS after the create returned, and sets the cache
#: up to CACHE_LAG_MS after that.
FLUSH_MS, CACHE_LAG_MS = 200, 50
#: Each module is loaded twice: first at once (EARLY_SHARE of the modules) or soon after its create
#: returned, then late, LATE_LOAD_S after the first load answered (so on a busy machine, where
#: everything is slower, the late load waits longer too). Most loads see the row; some do not.
LOADS_PER_MODULE = 2
EARLY_SHARE = 0.4
EARLY_LOAD_S, SOON_LOAD_S, LATE_LOAD_S = (0.0, 0.010), (0.010, 0.200), (0.400, 0.600)
KIND_SERVER, KIND_CLIENT = 2, 3  # OTLP SpanKind
STAGES = (
    "module_create_start",
    "module_create_db_commit",
    "module_create_cache_update",
    "module_load_request",
    "module_load_db_query",
)


@dataclass
class Run:
    """One service run: the client's view, the service's ground truth, its spans and the report."""

    mode: str
    port: int
    statuses: list[int]
    truth: list[dict[str, Any]]
    spans: list[dict[str, Any]]
    report: dict[str, Any]
    exit_status: int
    seconds: float
    cpu_seconds: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)

    def loads(self, saw_row: bool, cache_hit: bool | None = None) -> set[str]:
        return {
            t["load_span_id"]
            for t in self.truth
            if t["saw_row"] is saw_row and (cache_hit is None or t["cache_hit"] is cache_hit)
        }

    def listed(self, *sections: str) -> set[str]:
        return {v["load_span_id"] for s in sections for v in self.report.get(s, [])}

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name]


# --- running the service -------------------------------------------------------------------------


def start_service(
    mode: str, directory: Path, postgres: PostgresServer, redis: RedisServer, seed: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = open(directory / "service.log", "wb")  # noqa: SIM115 - closed with the process
    args = ["-m", "tests.services.async_service", "--port", str(port), "--redis", redis.url, "--mode", mode]
    args += ["--spans", str(directory / "spans.jsonl"), "--truth", str(directory / "truth.jsonl")]
    args += ["--seed", str(seed), "--flush-ms", str(FLUSH_MS), "--cache-lag-ms", str(CACHE_LAG_MS)]
    env = python_env({DSN_ENV: postgres.url("postgresql+asyncpg")})
    process = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited {process.returncode}:\n{(directory / 'service.log').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_service(process)
    raise TimeoutError(f"service not healthy within 30 s:\n{(directory / 'service.log').read_text()}")


def stop_service(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGINT by PID (uvicorn's graceful stop: pending commits finish, spans flush), then SIGKILL."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        raise


async def drive(base_url: str, prefix: str, rng: random.Random) -> list[int]:
    """Create MODULES modules, each followed by its two loads after random small delays, IN_FLIGHT at a time.

    Each worker has its own small client: httpcore scans its whole pool on every request, so one
    client with a connection per request in flight would spend more CPU than the service does.
    """
    delays = [
        (rng.uniform(*(EARLY_LOAD_S if rng.random() < EARLY_SHARE else SOON_LOAD_S)), rng.uniform(*LATE_LOAD_S))
        for _ in range(MODULES)
    ]
    statuses: list[int] = []
    tls = ssl.create_default_context()  # loaded once, not once per client (plain HTTP here anyway)

    async def worker(first: int) -> None:
        limits = httpx.Limits(max_connections=1)  # one request at a time per worker
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits, verify=tls) as client:

            async def load(module_id: str, carrier: dict[str, str], delay: float) -> int:
                await asyncio.sleep(delay)
                return (await client.get(f"/modules/{module_id}", params=carrier)).status_code

            for i in range(first, MODULES, IN_FLIGHT):
                module_id = f"{prefix}-{i:04d}"
                created = await client.post(f"/modules/{module_id}")
                created.raise_for_status()
                carrier = created.json()["carrier"]
                for delay in delays[i]:
                    statuses.append(await load(module_id, carrier, delay))

    await asyncio.gather(*(worker(k) for k in range(IN_FLIGHT)))
    return statuses


def read_spans(path: Path) -> list[dict[str, Any]]:
    """The OTLP JSON lines file, flattened: one dict per span with its attributes as a plain dict."""
    spans = []
    for line in path.read_text().splitlines():
        for resource_spans in json.loads(line).get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    attributes = {a["key"]: next(iter(a["value"].values()), None) for a in span.get("attributes", [])}
                    spans.append({**span, "attributes": attributes})
    return spans


def races_json(spans: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "moduletrace", "races", "--file", str(spans), "--format", "json"],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 1), f"moduletrace races exited {done.returncode}: {done.stderr}"
    return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module", params=["recorded", "unrecorded"])
def run(
    request: pytest.FixtureRequest,
    postgres: PostgresServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    mode: str = request.param
    directory = tmp_path_factory.mktemp(f"service-{mode}")
    seed = 20261130 + len(mode)
    started, client_cpu = time.monotonic(), time.process_time()
    process, port = start_service(mode, directory, postgres, redis_server, seed)
    try:
        statuses = asyncio.run(drive(f"http://127.0.0.1:{port}", f"m-{mode}", random.Random(seed)))
        cpu = {"service": cpu_seconds(process.pid), "client": round(time.process_time() - client_cpu, 1)}
    finally:
        exit_code = stop_service(process)
    log = (directory / "service.log").read_text(errors="replace")
    assert exit_code == 0, f"the service exited {exit_code}:\n{log[-3000:]}"
    truth = [json.loads(line) for line in (directory / "truth.jsonl").read_text().splitlines()]
    status, report = races_json(directory / "spans.jsonl")
    spans = read_spans(directory / "spans.jsonl")
    result = Run(mode, port, statuses, truth, spans, report, status, time.monotonic() - started, cpu)
    result.figures = figures(result)
    print(f"\n[{mode}] " + json.dumps(result.figures))
    yield result


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (how much of a run's time was ours on a busy machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def figures(run: Run) -> dict[str, Any]:
    """What the README states: loads, how many saw no row, and what `races` (as it stands) said."""
    no_row, row = run.loads(saw_row=False), run.loads(saw_row=True)
    row_and_cache = run.loads(saw_row=True, cache_hit=True)
    races, ambiguous, stale = run.listed("races"), run.listed("ambiguous"), run.listed("stale_reads")
    return {
        "mode": run.mode,
        "seconds": round(run.seconds, 1),
        "cpu_seconds": run.cpu_seconds,
        "loads": len(run.truth),
        "saw_no_row": len(no_row),
        "saw_row_missed_cache": len(row - row_and_cache),
        "saw_row_and_cache": len(row_and_cache),
        "no_row_in_races": len(no_row & races),
        "no_row_in_stale_reads": len(no_row & stale),
        "no_row_ambiguous": len(no_row & ambiguous),
        "no_row_unflagged": len(no_row - races - ambiguous - stale),
        "row_in_races": len(row & races),
        "row_in_races_for_db_commit": len(row & _preceded(run, "db_commit")),
        "row_in_stale_reads": len(row & stale),
        "row_ambiguous": len(row & ambiguous),
        "summary": {k: run.report["summary"].get(k) for k in ("loads", "races", "ambiguous", "unmatched", "clean")},
        "exit_status": run.exit_status,
    }


def _preceded(run: Run, stage: str) -> set[str]:
    return {v["load_span_id"] for v in run.report.get("races", []) if stage in v.get("preceded", [])}


# --- the service, its ground truth and its spans ---------------------------------------------------


def test_every_load_is_in_the_ground_truth_and_some_saw_no_row(run: Run) -> None:
    assert len(run.statuses) == MODULES * LOADS_PER_MODULE
    assert set(run.statuses) <= {200, 404}, f"unexpected statuses: {sorted(set(run.statuses))}"
    assert len(run.truth) == len(run.statuses)
    assert [t["error"] for t in run.truth if t["error"]] == []
    assert len({t["load_span_id"] for t in run.truth}) == len(run.truth)
    assert sum(not t["saw_row"] for t in run.truth) == run.statuses.count(404)
    assert 0 < run.figures["saw_no_row"] < len(run.truth) / 2, run.figures
    # The cache is set after the commit, and read before the row: a hit means the row was there.
    assert all(t["saw_row"] for t in run.truth if t["cache_hit"])


def test_every_lifecycle_span_reaches_the_file(run: Run) -> None:
    counts = {name: len(run.named(name)) for name in STAGES}
    assert counts == {
        "module_create_start": MODULES,
        "module_create_db_commit": MODULES,
        "module_create_cache_update": MODULES,
        "module_load_request": len(run.truth),
        "module_load_db_query": len(run.truth),
    }
    assert {s["spanId"] for s in run.named("module_load_request")} == {t["load_span_id"] for t in run.truth}
    failed = {s["spanId"] for s in run.named("module_load_request") if s.get("status", {}).get("code") == 2}
    assert failed == run.loads(saw_row=False)


def test_one_trace_id_per_module_from_create_start_to_load_db_query(run: Run) -> None:
    traces: dict[str, set[str]] = defaultdict(set)
    for span in run.spans:
        if span["name"] in STAGES:
            traces[span["attributes"]["module.id"]].add(span["traceId"])
    assert len(traces) == MODULES
    assert all(len(ids) == 1 for ids in traces.values()), {m: t for m, t in traces.items() if len(t) != 1}
    assert all(t["trace_id"] in traces[t["module_id"]] for t in run.truth)
    # The write-behind task runs in the create span's context; each load continues its carrier.
    creations = {s["attributes"]["module.id"]: s["spanId"] for s in run.named("module_create_start")}
    for name in ("module_create_db_commit", "module_create_cache_update", "module_load_request"):
        assert all(s.get("parentSpanId") == creations[s["attributes"]["module.id"]] for s in run.named(name)), name
    requests = {s["spanId"] for s in run.named("module_load_request")}
    assert all(s.get("parentSpanId") in requests for s in run.named("module_load_db_query"))
    # The HTTP request that carried each load stays reachable: a link into its own trace.
    served = {s["traceId"] for s in run.spans if s.get("kind") == KIND_SERVER and s["name"].startswith("GET /modules")}
    for load in run.named("module_load_request"):
        linked = {link["traceId"] for link in load.get("links", [])}
        assert len(linked & served) == 1, load["spanId"]


def test_each_load_query_holds_a_postgresql_client_span(run: Run, postgres: PostgresServer) -> None:
    queries = {s["spanId"] for s in run.named("module_load_db_query")}
    clients = [
        s
        for s in run.spans
        if s.get("parentSpanId") in queries
        and s.get("kind") == KIND_CLIENT
        and "postgresql" in (s["attributes"].get("db.system"), s["attributes"].get("db.system.name"))
    ]
    assert {s["parentSpanId"] for s in clients} == queries
    ports = {str(s["attributes"].get("server.port", s["attributes"].get("net.peer.port"))) for s in clients}
    assert ports == {str(postgres.port)}


def test_what_each_load_saw_is_on_its_spans_only_in_recorded_mode(run: Run) -> None:
    requests = {s["spanId"]: s["attributes"] for s in run.named("module_load_request")}
    queries = {s["parentSpanId"]: s["attributes"] for s in run.named("module_load_db_query")}
    for t in run.truth:
        request, query = requests[t["load_span_id"]], queries[t["load_span_id"]]
        if run.mode == "recorded":
            assert request["module.cache.hit"] is t["cache_hit"]
            assert query["module.data.found"] is t["saw_row"]
        else:
            assert not [k for k in (*request, *query) if k.startswith(("module.data.", "module.cache."))]


def test_races_reports_every_load_of_the_run(run: Run) -> None:
    summary = run.report["summary"]
    assert summary["loads"] == len(run.truth)
    assert summary["unmatched"] == 0
    known = {t["load_span_id"] for t in run.truth}
    sections = ("races", "ambiguous", "stale_reads")
    assert run.listed(*sections) <= known
    assert run.exit_status == (1 if run.listed("races", "stale_reads") else 0)


# --- race rule version 2 ---------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["recorded"], indirect=True)
def test_recorded_mode_flags_exactly_the_loads_that_missed_a_write(run: Run) -> None:
    flagged = run.listed("races", "stale_reads")
    no_row = run.loads(saw_row=False)
    missed_cache = run.loads(saw_row=True, cache_hit=False)
    clean = run.loads(saw_row=True, cache_hit=True)
    assert no_row - flagged == set(), f"saw no row, not flagged: {sorted(no_row - flagged)[:5]}"
    # The data decides: a load that saw the row and hit the cache is clean, whatever the clocks say.
    assert clean & flagged == set(), f"saw the row and the cache, flagged: {sorted(clean & flagged)[:5]}"
    # It saw the row but read the cache before the lagging update: it did miss that write...
    assert missed_cache - flagged == set(), f"missed the cache, not flagged: {sorted(missed_cache - flagged)[:5]}"
    # ...and only that one: no load that saw the row is a race of the commit.
    wrongly = run.loads(saw_row=True) & _preceded(run, "db_commit")
    assert wrongly == set(), f"saw the row, called a race of the commit: {sorted(wrongly)[:5]}"


@pytest.mark.parametrize("run", ["unrecorded"], indirect=True)
def test_unrecorded_mode_flags_every_missed_row_and_never_blames_the_commit_for_a_seen_one(run: Run) -> None:
    no_row = run.loads(saw_row=False)
    row = run.loads(saw_row=True)
    flagged = run.listed("races", "ambiguous")
    assert no_row - flagged == set(), f"saw no row, not flagged: {sorted(no_row - flagged)[:5]}"
    wrongly = row & _preceded(run, "db_commit")
    assert wrongly == set(), f"saw the row, called a race of the commit: {sorted(wrongly)[:5]}"
    # Its cache read came after the cache update began, and its query later still: no race by the clocks.
    raced = run.loads(saw_row=True, cache_hit=True) & run.listed("races")
    assert raced == set(), f"saw the row and the cache, a race: {sorted(raced)[:5]}"
