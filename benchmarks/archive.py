"""Realistic collector archives for the benchmarks: OTLP JSON lines shaped like the ``file`` exporter's.

    python benchmarks/archive.py OUT.jsonl [--spans 140000] [--seed 1]

or, from Python, ``generate(path, spans, seed=1)`` (returns a :class:`Shape` of what was written).

What a file holds, deterministic by seed:

- two services on two hosts: ``canvas-service`` on ``host-a`` (loads modules) and
  ``module-service`` on ``host-b`` (creates and serves them); host-b's clock runs ``CLOCK_OFFSET_NS``
  ahead of host-a's. Resource attributes ``service.name``, ``service.instance.id``, ``host.name``.
- lines of 200-250 spans of one resource, grouped by instrumentation scope, written when a host's
  batch is full and in the order spans end (what a batching exporter sends);
- HTTP client/server pairs: the CLIENT span on host-a, its SERVER child on host-b; the server starts
  inside its client and, as ASGI servers do, sometimes ends after it;
- per module, the five lifecycle spans with ``module.id``/``module.stage``; database CLIENT spans
  (``db.system.name``: BEGIN/INSERT/COMMIT under the commit, BEGIN/SELECT/COMMIT under a load's
  ``module_load_db_query``, after a wait for a pooled connection), a redis CLIENT span under the cache
  update;
- loads read through the module service's API (the query on host-b, a child of the server span: the
  same clock as the commit) or straight from the database (the query on host-a, a child of the load
  request: judged across hosts);
- a few % of loads read before the commit began (a write-behind commit: races), some overlap the
  commit (its span ends late: the event loop resumes the committing task late), some wait for a pooled
  connection across the commit and read after it (only the database span tells), some record
  ``module.data.found`` (true/false, a few false after the commit: stale reads from a lagging replica),
  some fail (status code 2), some carry no context (another trace, matched by module id), some are of
  modules never created, some commits fail and are retried, a few never succeed;
- noise: health checks, internal rendering spans, cache reads.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
from dataclasses import dataclass, field
from typing import Any

T0 = 1_795_000_000_000_000_000  # 2026-11-18, Unix ns
CLOCK_OFFSET_NS = 1_700_000  # host-b's clock minus host-a's
MS = 1_000_000
US = 1_000

HOSTS = ("host-a", "host-b")
SERVICES = {"host-a": "canvas-service", "host-b": "module-service"}
LIFECYCLE = ("create_start", "db_commit", "cache_update", "load_request", "load_db_query")
NAMES = {
    "create_start": "module_create_start",
    "db_commit": "module_create_db_commit",
    "cache_update": "module_create_cache_update",
    "load_request": "module_load_request",
    "load_db_query": "module_load_db_query",
}
SCOPES = {
    "moduletrace": {"name": "moduletrace", "version": "0.1.0"},
    "httpx": {"name": "opentelemetry.instrumentation.httpx", "version": "0.66b2"},
    "asgi": {"name": "opentelemetry.instrumentation.asgi", "version": "0.66b2"},
    "sqlalchemy": {"name": "opentelemetry.instrumentation.sqlalchemy", "version": "0.66b2"},
    "redis": {"name": "opentelemetry.instrumentation.redis", "version": "0.66b2"},
    "app": {"name": "canvas.render", "version": ""},
}


@dataclass
class Shape:
    """What a generated file holds (ground truth of the scenario, for tests and reports)."""

    spans: int = 0
    lines: int = 0
    bytes: int = 0
    modules: int = 0
    loads: int = 0
    scenarios: dict[str, int] = field(default_factory=dict)

    def count(self, scenario: str) -> None:
        self.scenarios[scenario] = self.scenarios.get(scenario, 0) + 1


def _s(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _i(key: str, value: int) -> dict[str, Any]:
    return {"key": key, "value": {"intValue": str(value)}}


def _b(key: str, value: bool) -> dict[str, Any]:
    return {"key": key, "value": {"boolValue": value}}


def _resource(host: str) -> dict[str, Any]:
    service = SERVICES[host]
    return {
        "attributes": [
            _s("service.name", service),
            _s("service.instance.id", f"{service}-{HOSTS.index(host) + 1}f3c"),
            _s("host.name", host),
            _s("telemetry.sdk.language", "python"),
            _s("telemetry.sdk.name", "opentelemetry"),
            _s("telemetry.sdk.version", "1.45.2"),
        ]
    }


class _Writer:
    """Batches spans per host in the order they end, and writes a line when a batch is full."""

    def __init__(self, out: Any, rng: random.Random, shape: Shape) -> None:
        self.out = out
        self.rng = rng
        self.shape = shape
        self.pending: list[tuple[int, int, str, str, dict[str, Any]]] = []  # (true end, seq, host, scope, span)
        self.seq = 0
        self.batches: dict[str, list[tuple[str, dict[str, Any]]]] = {h: [] for h in HOSTS}
        self.targets = {h: rng.randint(200, 250) for h in HOSTS}
        self.resources = {h: _resource(h) for h in HOSTS}

    def add(self, true_end: int, host: str, scope: str, span: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.pending, (true_end, self.seq, host, scope, span))

    def flush_until(self, now: int) -> None:
        while self.pending and self.pending[0][0] <= now:
            _, _, host, scope, span = heapq.heappop(self.pending)
            batch = self.batches[host]
            batch.append((scope, span))
            if len(batch) >= self.targets[host]:
                self._write(host)

    def close(self) -> None:
        self.flush_until(1 << 80)
        for host in HOSTS:
            if self.batches[host]:
                self._write(host)

    def _write(self, host: str) -> None:
        batch = self.batches[host]
        by_scope: dict[str, list[dict[str, Any]]] = {}
        for scope, span in batch:
            by_scope.setdefault(scope, []).append(span)
        document = {
            "resourceSpans": [
                {
                    "resource": self.resources[host],
                    "scopeSpans": [{"scope": SCOPES[s], "spans": spans} for s, spans in by_scope.items()],
                    "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                }
            ]
        }
        line = json.dumps(document, separators=(",", ":")) + "\n"
        self.out.write(line)
        self.shape.lines += 1
        self.shape.spans += len(batch)
        self.shape.bytes += len(line)
        self.batches[host] = []
        self.targets[host] = self.rng.randint(200, 250)


class _Module:
    """Emits the spans of one module's creation and loads, in true time, each on its host's clock."""

    def __init__(self, gen: _Generator, number: int, at: int) -> None:
        self.gen = gen
        self.rng = gen.rng
        self.number = number
        self.id = f"m-{number:06d}"
        self.at = at

    # -- helpers ---------------------------------------------------------------------------

    def span(
        self,
        span_id: str,
        host: str,
        scope: str,
        trace: str,
        parent: str,
        name: str,
        kind: int,
        start: int,
        end: int,
        attributes: list[dict[str, Any]],
        error: str | None = None,
    ) -> None:
        """One span; ``start``/``end`` are true times, written on ``host``'s clock."""
        skew = CLOCK_OFFSET_NS if host == "host-b" else 0
        span: dict[str, Any] = {"traceId": trace, "spanId": span_id}
        if parent:
            span["parentSpanId"] = parent
        span.update(
            flags=256 if not parent else 768,
            name=name,
            kind=kind,
            startTimeUnixNano=str(start + skew),
            endTimeUnixNano=str(end + skew),
            attributes=attributes,
        )
        if error is not None:
            span["events"] = [
                {
                    "timeUnixNano": str(end + skew - 1_000),
                    "name": "exception",
                    "attributes": [_s("exception.type", error), _s("exception.message", f"{error} in {name}")],
                }
            ]
            span["status"] = {"message": error, "code": 2}
        else:
            span["status"] = {}
        self.gen.writer.add(end, host, scope, span)

    def stage(self, stage: str, extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        return [_s("module.id", self.id), _s("module.stage", stage), *(extra or [])]

    def db(self, host: str, trace: str, parent: str, start: int, statement: str) -> int:
        """A database CLIENT span (true times); returns its end."""
        duration = self.rng.randint(60, 400) * US
        operation = statement.split(None, 1)[0]
        attributes = [_s("db.system.name", "postgresql"), _s("db.operation.name", operation)]
        name = operation if operation in ("BEGIN", "COMMIT") else f"{operation} modules"
        self.span(self.gen.span_id(), host, "sqlalchemy", trace, parent, name, 3, start, start + duration, attributes)
        return start + duration

    def http_pair(
        self,
        trace: str,
        parent: str,
        method: str,
        route: str,
        path: str,
        start: int,
        out_latency: int,
        server_work: int,
        status: int,
        server_id: str,
    ) -> int:
        """A CLIENT span on host-a and its SERVER child (``server_id``) on host-b; returns the client's end.

        The server starts inside its client; as ASGI servers do, it closes after the response was
        sent, sometimes after the client has read it."""
        rng = self.rng
        back_latency = rng.randint(150, 600) * US
        server_start = start + out_latency
        response_at = server_start + server_work
        client_end = response_at + back_latency
        server_end = response_at + rng.choice((rng.randint(20, 200) * US, back_latency + rng.randint(50, 900) * US))
        error = None if status < 500 else "HTTPStatusError"
        client_id = self.gen.span_id()
        url = f"http://module-service{path}"
        self.span(
            client_id,
            "host-a",
            "httpx",
            trace,
            parent,
            method,
            3,
            start,
            client_end,
            [_s("url.full", url), _i("http.response.status_code", status)],
            error=error,
        )
        self.span(
            server_id,
            "host-b",
            "asgi",
            trace,
            client_id,
            f"{method} {route}",
            2,
            server_start,
            server_end,
            [_s("http.route", route), _i("http.response.status_code", status)],
            error=error,
        )
        return client_end

    # -- the module's life -----------------------------------------------------------------

    def create(self, write_behind: bool) -> dict[str, Any]:
        """The creation: host-a asks, host-b creates. Returns its true instants, for the loads."""
        rng = self.rng
        gen = self.gen
        trace = gen.trace_id()
        t = self.at
        root_id, create_id, server_id = gen.span_id(), gen.span_id(), gen.span_id()
        retried = rng.random() < 0.012
        never = rng.random() < 0.004  # the commit fails and is never retried with success
        out_latency = rng.randint(150, 600) * US
        server_start = t + out_latency
        # Offsets from the server's start.
        cs = 80 * US
        at = cs + rng.randint(100, 500) * US
        attempts = []  # (start offset, duration, ok)
        for attempt in range(2 if retried else 1):
            duration = rng.randint(800, 3000) * US
            ok = not never and attempt == (1 if retried else 0)
            attempts.append((at, duration, ok))
            at += duration + rng.randint(200, 2000) * US
        last_end = attempts[-1][0] + attempts[-1][1]
        cache_start = last_end + rng.randint(100, 400) * US
        cache_end = cache_start + rng.randint(300, 1200) * US
        work = (last_end if never else cache_end) + 300 * US
        if write_behind:  # answered before the write; the write runs 5-30 ms after the response
            work = attempts[0][0]
            lag = rng.randint(5, 30) * MS
            attempts = [(a + lag, d, ok) for a, d, ok in attempts]
            cache_start += lag
            cache_end += lag
            last_end += lag
        status = 500 if never else 201
        client_end = self.http_pair(
            trace, root_id, "POST", "/modules", "/modules", t, out_latency, work, status, server_id
        )
        version = self.number * 10 + 1
        commits = []
        for offset, duration, ok in attempts:
            c_start = server_start + offset
            commit_id = gen.span_id()
            db_at = self.db("host-b", trace, commit_id, c_start + 30 * US, "BEGIN")
            db_at = self.db(
                "host-b", trace, commit_id, db_at + 20 * US, "INSERT INTO modules (id, body) VALUES ($1, $2)"
            )
            commit_at = db_at + 20 * US
            visible = commit_at + 100 * US  # the row is visible inside the COMMIT statement
            self.db("host-b", trace, commit_id, commit_at, "COMMIT")
            # On an async service the span ends late: the event loop resumes the committing task late.
            loop_lag = rng.choice((0, 0, rng.randint(1, 15) * MS)) if ok else 0
            c_end = max(c_start + duration, visible + 300 * US) + loop_lag
            extra = [_i("module.data.version", version) if ok else _s("error.type", "SerializationFailure")]
            self.span(
                commit_id,
                "host-b",
                "moduletrace",
                trace,
                create_id,
                NAMES["db_commit"],
                1,
                c_start,
                c_end,
                self.stage("db_commit", extra),
                error=None if ok else "SerializationFailure",
            )
            commits.append((c_start, c_end, visible, ok))
        if not never:
            cache_id = gen.span_id()
            redis_at = server_start + cache_start + 40 * US
            self.span(
                gen.span_id(),
                "host-b",
                "redis",
                trace,
                cache_id,
                "SET",
                3,
                redis_at,
                redis_at + rng.randint(80, 300) * US,
                [_s("db.system.name", "redis"), _s("db.operation.name", "SET")],
            )
            self.span(
                cache_id,
                "host-b",
                "moduletrace",
                trace,
                create_id,
                NAMES["cache_update"],
                1,
                server_start + cache_start,
                server_start + cache_end,
                self.stage("cache_update", [_i("module.cache.version", version)]),
            )
        create_end = server_start + max(work, (last_end if never else cache_end)) + 50 * US
        self.span(
            create_id,
            "host-b",
            "moduletrace",
            trace,
            server_id,
            NAMES["create_start"],
            1,
            server_start + cs,
            create_end,
            self.stage("create_start"),
            error="CommitFailed" if never else None,
        )
        self.span(
            root_id,
            "host-a",
            "app",
            trace,
            "",
            "create module",
            1,
            t - 200 * US,
            client_end + 150 * US,
            [_s("canvas.action", "create")],
        )
        ok_commits = [c for c in commits if c[3]]
        return {
            "trace": trace,
            "visible": ok_commits[0][2] if ok_commits else None,
            "commit": (ok_commits[0][0], ok_commits[0][1]) if ok_commits else None,
            "cache_visible": None if never else server_start + cache_start + 200 * US,
            "cache_end": server_start + cache_end,
            "answered": client_end,
        }

    def load(self, creation: dict[str, Any] | None, scenario: str, start: int) -> None:
        """One load of the module by the canvas service (true time ``start``)."""
        rng = self.rng
        gen = self.gen
        trace = gen.trace_id() if creation is None or scenario == "no_context" else creation["trace"]
        direct = rng.random() < 0.5  # read straight from the database (host-a), else through the API (host-b)
        with_query = rng.random() >= 0.02  # a few loads have no query span: the request is the read
        record_found = rng.random() < 0.4
        record_cache = rng.random() < 0.1
        pool_wait = rng.randint(20, 300) * US
        if scenario == "pool_wait":  # waits for a connection through the whole commit, reads after it
            pool_wait = rng.randint(20, 60) * MS
        request_id, query_id, server_id = gen.span_id(), gen.span_id(), gen.span_id()
        out_latency = rng.randint(150, 600) * US
        client_start = start + 100 * US
        query_start = start + 300 * US if direct else client_start + out_latency + 100 * US
        begin_at = query_start + pool_wait
        select_start = begin_at + 300 * US
        select_end = select_start + rng.randint(100, 900) * US
        query_end = select_end + 400 * US
        visible = creation["visible"] if creation is not None else None
        found = visible is not None and select_start + 50 * US > visible  # the snapshot is taken early in the SELECT
        if scenario == "stale":  # a lagging replica: not there yet, long after the commit
            found = False
        error = None
        if not found and rng.random() < 0.7:
            error = "ModuleNotFound"
        elif rng.random() < 0.01:
            error = "ReadTimeout"
        host = "host-a" if direct else "host-b"
        if with_query:
            self.db(host, trace, query_id, begin_at, "BEGIN")
            self.db(host, trace, query_id, select_start, "SELECT id, body FROM modules WHERE id = $1")
            self.db(host, trace, query_id, select_end + 100 * US, "COMMIT")
            attrs = self.stage("load_db_query")
            if record_found:
                attrs.append(_b("module.data.found", found))
            parent = request_id if direct else server_id
            self.span(
                query_id,
                host,
                "moduletrace",
                trace,
                parent,
                NAMES["load_db_query"],
                1,
                query_start,
                query_end,
                attrs,
                error="ModuleNotFound" if error == "ModuleNotFound" else None,
            )
        request_attrs = self.stage("load_request")
        if record_cache:
            cache_visible = creation["cache_visible"] if creation is not None else None
            hit = cache_visible is not None and start > cache_visible and scenario != "stale"
            request_attrs.append(_b("module.cache.hit", hit))
        if direct:
            request_end = query_end + rng.randint(200, 2000) * US
        else:
            status = 404 if error == "ModuleNotFound" else (504 if error else 200)
            work = query_end - (client_start + out_latency) + 300 * US
            client_end = self.http_pair(
                trace,
                request_id,
                "GET",
                "/modules/{id}",
                f"/modules/{self.id}",
                client_start,
                out_latency,
                work,
                status,
                server_id,
            )
            request_end = client_end + rng.randint(100, 800) * US
        if error is not None:
            request_attrs.append(_s("error.type", error))
        self.span(
            request_id,
            "host-a",
            "moduletrace",
            trace,
            "",
            NAMES["load_request"],
            1,
            start,
            request_end,
            request_attrs,
            error=error,
        )


class _Generator:
    def __init__(self, out: Any, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids = random.Random(seed + 1)
        self.shape = Shape()
        self.writer = _Writer(out, self.rng, self.shape)

    def trace_id(self) -> str:
        return f"{self.ids.getrandbits(128):032x}"

    def span_id(self) -> str:
        return f"{self.ids.getrandbits(64) | 1 << 60:016x}"


def _noise(gen: _Generator, at: int) -> None:
    """Spans that are not the lifecycle's: health checks, rendering, cache reads."""
    rng = gen.rng
    kind = rng.random()
    host = rng.choice(HOSTS)
    skew = CLOCK_OFFSET_NS if host == "host-b" else 0
    trace = gen.trace_id()
    if kind < 0.4:
        spans = [
            (
                host,
                "asgi",
                {
                    "traceId": trace,
                    "spanId": gen.span_id(),
                    "flags": 256,
                    "name": "GET /healthz",
                    "kind": 2,
                    "startTimeUnixNano": str(at + skew),
                    "endTimeUnixNano": str(at + skew + 180 * US),
                    "attributes": [_s("http.route", "/healthz"), _i("http.response.status_code", 200)],
                    "status": {},
                },
                at + 180 * US,
            )
        ]
    else:
        root = gen.span_id()
        end = at + rng.randint(1, 20) * MS
        spans = [
            (
                "host-a",
                "app",
                {
                    "traceId": trace,
                    "spanId": root,
                    "flags": 256,
                    "name": "render canvas",
                    "kind": 1,
                    "startTimeUnixNano": str(at),
                    "endTimeUnixNano": str(end),
                    "attributes": [_i("canvas.modules", rng.randint(1, 60))],
                    "status": {},
                },
                end,
            )
        ]
        if kind > 0.7:
            spans.append(
                (
                    "host-a",
                    "redis",
                    {
                        "traceId": trace,
                        "spanId": gen.span_id(),
                        "parentSpanId": root,
                        "flags": 768,
                        "name": "GET",
                        "kind": 3,
                        "startTimeUnixNano": str(at + 100 * US),
                        "endTimeUnixNano": str(at + 400 * US),
                        "attributes": [_s("db.system.name", "redis"), _s("db.operation.name", "GET")],
                        "status": {},
                    },
                    at + 400 * US,
                )
            )
    for host, scope, span, end in spans:
        gen.writer.add(end, host, scope, span)


#: Scenario of a module's first load, and its probability.
SCENARIOS = (
    ("race", 0.03),  # write-behind commit: the load reads before the commit begins
    ("overlap", 0.03),  # the load reads while the commit span is open
    ("pool_wait", 0.02),  # the query starts inside the commit; the SELECT after it
    ("stale", 0.01),  # found=false long after the commit (a lagging replica)
    ("no_context", 0.03),  # the load carries no creation context: another trace
    ("unknown_module", 0.005),  # a module never created in the data
)


def generate(path: str, spans: int, seed: int = 1, module_every_ms: float = 100.0) -> Shape:
    """Write an archive of about ``spans`` spans to ``path``; a module is created every ~``module_every_ms``."""
    with open(path, "w") as out:
        gen = _Generator(out, seed)
        rng = gen.rng
        t = T0
        number = 0
        shape = gen.shape
        while shape.spans + len(gen.writer.pending) + sum(len(b) for b in gen.writer.batches.values()) < spans:
            number += 1
            t += int(rng.expovariate(1 / module_every_ms) * MS) + 1
            draw = rng.random()
            scenario = "normal"
            for name, p in SCENARIOS:
                if draw < p:
                    scenario = name
                    break
                draw -= p
            module = _Module(gen, number, t)
            shape.count(scenario)
            if scenario == "unknown_module":
                module.id = f"m-x{number:06d}"
                module.load(None, scenario, t)
                shape.loads += 1
            else:
                creation = module.create(write_behind=scenario == "race")
                shape.modules += 1
                for n in range(1 if rng.random() < 0.8 else 2):
                    s = scenario if n == 0 else "normal"
                    start = _load_start(rng, creation, s)
                    module.load(creation, s, start)
                    shape.loads += 1
            for _ in range(rng.choice((1, 2, 3, 4))):
                _noise(gen, t + rng.randint(0, 90) * MS)
            gen.writer.flush_until(t - 3_000 * MS)  # what ended 3 s ago has been exported
        gen.writer.close()
    return shape


def _load_start(rng: random.Random, creation: dict[str, Any], scenario: str) -> int:
    """When a load begins (true time), by scenario."""
    if scenario == "race":  # right after the (early) answer, before the write-behind commit begins
        return creation["answered"] + rng.randint(300, 2000) * US
    commit = creation["commit"]
    if scenario == "overlap" and commit is not None:
        return commit[0] + rng.randint(0, max(1, (commit[1] - commit[0]) // US - 1500)) * US
    if scenario == "pool_wait" and commit is not None:
        return commit[0] - 200 * US
    if scenario == "stale":
        return creation["cache_end"] + rng.randint(20, 200) * MS
    if rng.random() < 0.05:  # reopened later
        return creation["answered"] + rng.randint(5, 600) * 1000 * MS
    return creation["answered"] + rng.randint(1, 2000) * MS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--spans", type=int, default=140_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--module-every-ms", type=float, default=100.0)
    args = parser.parse_args()
    shape = generate(args.path, args.spans, args.seed, args.module_every_ms)
    print(
        f"{args.path}: {shape.spans:,} spans in {shape.lines} lines, {shape.bytes / 1e6:.1f} MB, "
        f"{shape.modules:,} modules, {shape.loads:,} loads; scenarios {shape.scenarios}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
