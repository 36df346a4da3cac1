"""What a user waits for: ``moduletrace races --file`` and ``diagnose --file`` against their baselines.

    python benchmarks/bench_scan.py [--spans 140000 1000000] [--runs 5] [--data DIR] [--file F ...]
                                    [--compare OTHER/src]   # another checkout's code, in the same rounds
                                    [--settle-after 5m]     # memory with the modules already judged

Each command runs as a whole process (interpreter start, imports and exit included), on the same
file, interleaved round by round (the order rotates each round), so a noisy machine slows all of
them alike. Per command: CPU time (user + sys of the child, from ``os.wait4``), wall time, and peak
RSS (the child's ``ru_maxrss``); ratios are taken within a round against the plain
``for line in f: json.loads(line)`` loop, and the medians of those ratios are printed with their
range. Targets (the performance issue): races <= 1.0x the json.loads loop in CPU at 1M spans and no
slower than the DuckDB peer; <= 2.0x at 140k; diagnose within 1.2x of races; peak RSS <= 400 MiB at 1M.

Before timing, the answers are checked: the DuckDB peer must list the same loads as ``races`` (a
difference is printed, by list), and the command without the typed (msgspec) decoder, as it runs
where msgspec is not installed, must print the same report, byte for byte.

Archives come from benchmarks/archive.py (seed 1) and are kept in ``--data`` for the next run.

The package's byte-code is compiled first (and ``--compare``'s), as pip does when it installs it:
with PYTHONDONTWRITEBYTECODE set and no __pycache__, every run would compile the package's source
again (about 50 ms here), which no installed command does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import archive  # noqa: E402

JSON_LOOP = "import json,sys\nwith open(sys.argv[1],'rb') as f:\n    for line in f: json.loads(line)\n"
ORJSON_LOOP = "import orjson,sys\nwith open(sys.argv[1],'rb') as f:\n    for line in f: orjson.loads(line)\n"
#: The command as it runs where msgspec is not installed (the generic decoder only).
GENERIC = (
    "import sys\nimport moduletrace.sources.file as f\nf._LineDecoder = None\n"
    "from moduletrace.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
)
BASELINE = "json.loads loop"
RACES = "races --format json"
GENERIC_RACES = "races, generic decoder (no msgspec)"


def commands(
    path: str, duckdb_threads: int | None, compare: str | None = None, settle: str | None = None
) -> dict[str, list[str]]:
    py = sys.executable
    settling = ["--settle-after", settle] if settle else []
    out = {
        RACES: [py, "-m", "moduletrace", "races", "--file", path, "--format", "json", *settling],
        BASELINE: [py, "-c", JSON_LOOP, path],
        "duckdb peer": [py, str(HERE / "duckdb_races.py"), path],
        "diagnose": [py, "-m", "moduletrace", "diagnose", "--file", path, *settling],
        "orjson.loads loop": [py, "-c", ORJSON_LOOP, path],
        GENERIC_RACES: [py, "-c", GENERIC, "races", "--file", path, "--format", "json", *settling],
    }
    if duckdb_threads is not None:
        out["duckdb peer"] += ["--threads", str(duckdb_threads)]
    if compare:
        for name in (RACES, "diagnose"):
            out[f"{name} @ {compare}"] = [*ENV_FROM, f"PYTHONPATH={compare}", *out[name]]
    return out


#: Runs a command with another PYTHONPATH (``--compare``): env(1), in the same rounds as the others.
ENV_FROM = ["/usr/bin/env"]


@dataclass
class Sample:
    cpu: float
    wall: float
    rss_mib: float


@dataclass
class Timings:
    samples: list[Sample] = field(default_factory=list)
    cpu_ratio: list[float] = field(default_factory=list)
    wall_ratio: list[float] = field(default_factory=list)
    cpu_vs_races: list[float] = field(default_factory=list)


#: Peak RSS is read by GNU time, not from our own wait4: Linux carries the exec'ing process's memory
#: high-water mark into the child's ru_maxrss, so a child of this (larger) process would report
#: at least this process's size. time's own footprint is a couple of MiB.
GNU_TIME = "/usr/bin/time"


def run_once(argv: list[str]) -> Sample:
    """One child process: its CPU (user+sys), wall time and peak RSS; stdout to /dev/null."""
    with tempfile.NamedTemporaryFile("r") as rss, open(os.devnull, "wb") as devnull:
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv] if os.path.exists(GNU_TIME) else argv
        started = time.perf_counter()
        child = subprocess.Popen(wrapped, stdout=devnull, stderr=subprocess.PIPE)
        assert child.stderr is not None
        err = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)  # CPU of the command (and of time, ~1 ms)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        text = rss.read().strip().splitlines()
        peak_kib = int(text[-1]) if wrapped is not argv and text and text[-1].isdigit() else usage.ru_maxrss
    if child.returncode not in (0, 1):
        raise RuntimeError(f"{argv} exited {child.returncode}: {err.decode(errors='replace')[-2000:]}")
    return Sample(usage.ru_utime + usage.ru_stime, wall, peak_kib / 1024)


def check_answers(path: str) -> list[str]:
    """The peer and the generic decoder must answer what the command answers; returns what differs."""
    import duckdb_races

    problems = []
    env = dict(os.environ)
    ours = subprocess.run(
        [sys.executable, "-m", "moduletrace", "races", "--file", path, "--format", "json"],
        capture_output=True,
        env=env,
        check=False,
    ).stdout
    report = json.loads(ours)
    peer = duckdb_races.races(path)
    diff = duckdb_races.differences(report, peer)
    if diff:
        problems.append(
            "duckdb peer and races differ: "
            + ", ".join(
                f"{name}: {len(v.get('only_moduletrace', []))} only races, {len(v.get('only_duckdb', []))} only duckdb"
                for name, v in diff.items()
                if name != "loads"
            )
        )
    generic = subprocess.run(
        [sys.executable, "-c", GENERIC, "races", "--file", path, "--format", "json"],
        capture_output=True,
        env=env,
        check=False,
    ).stdout
    if generic != ours:
        problems.append("the report with the generic decoder differs from the command's")
    s = report["summary"]
    print(
        f"  answers: {s['loads']:,} loads, {s['races']:,} races, {s['stale_reads']:,} stale reads, "
        f"{s['ambiguous']:,} ambiguous, {s['unmatched']:,} unmatched"
        + ("" if problems else "; the DuckDB peer and the generic decoder's run agree exactly")
    )
    for problem in problems:
        print(f"  !! {problem}")
    return problems


def bench(
    path: str,
    runs: int,
    names: list[str],
    duckdb_threads: int | None,
    compare: str | None = None,
    settle: str | None = None,
) -> dict[str, Timings]:
    argvs = {
        name: argv
        for name, argv in commands(path, duckdb_threads, compare, settle).items()
        if name in names or (compare and name.endswith(f" @ {compare}"))
    }
    results = {name: Timings() for name in argvs}
    order = list(argvs)
    for round_ in range(runs):
        rotated = order[round_ % len(order) :] + order[: round_ % len(order)]
        this = {name: run_once(argvs[name]) for name in rotated}
        base = this[BASELINE]
        races = this.get(RACES)
        for name, sample in this.items():
            results[name].samples.append(sample)
            results[name].cpu_ratio.append(sample.cpu / base.cpu)
            results[name].wall_ratio.append(sample.wall / base.wall)
            if races is not None:
                results[name].cpu_vs_races.append(sample.cpu / races.cpu)
        print(f"  round {round_ + 1}/{runs} done", file=sys.stderr)
    return results


def table(results: dict[str, Timings]) -> list[dict[str, Any]]:
    rows = []
    print(
        f"  {'command':44s} {'CPU s':>7s} {'CPU/json':>8s} {'(min-max)':>13s} {'wall s':>7s} {'wall/json':>9s}"
        f" {'(min-max)':>13s} {'RSS MiB':>8s} {'CPU/races':>9s}"
    )
    for name, t in results.items():
        cpu = statistics.median(s.cpu for s in t.samples)
        wall = statistics.median(s.wall for s in t.samples)
        rss = max(s.rss_mib for s in t.samples)
        row = {
            "command": name,
            "cpu_s": cpu,
            "cpu_ratio": statistics.median(t.cpu_ratio),
            "cpu_ratio_range": [min(t.cpu_ratio), max(t.cpu_ratio)],
            "wall_s": wall,
            "wall_ratio": statistics.median(t.wall_ratio),
            "wall_ratio_range": [min(t.wall_ratio), max(t.wall_ratio)],
            "rss_mib": rss,
            "cpu_vs_races": statistics.median(t.cpu_vs_races) if t.cpu_vs_races else None,
            "samples": [vars(sample) for sample in t.samples],
        }
        rows.append(row)
        print(
            f"  {name:44s} {cpu:7.2f} {row['cpu_ratio']:7.2f}x {_range(row['cpu_ratio_range']):>13s} {wall:7.2f}"
            f" {row['wall_ratio']:8.2f}x {_range(row['wall_ratio_range']):>13s} {rss:8.0f}"
            + (f" {row['cpu_vs_races']:8.2f}x" if row["cpu_vs_races"] is not None else "")
        )
    return rows


def _range(values: list[float]) -> str:
    return f"({values[0]:.2f}-{values[1]:.2f})"


def targets(rows: list[dict[str, Any]], spans: int) -> None:
    by = {r["command"]: r for r in rows}
    races = by.get("races --format json")
    if races is None:
        return
    limit = 1.0 if spans >= 1_000_000 else 2.0
    print(
        f"  races CPU {races['cpu_ratio']:.2f}x json.loads (target <= {limit:.1f}x): "
        f"{'met' if races['cpu_ratio'] <= limit else 'NOT met'}"
    )
    if "duckdb peer" in by:
        peer = by["duckdb peer"]
        print(
            f"  races CPU / duckdb CPU = {races['cpu_s'] / peer['cpu_s']:.2f} (target <= 1): "
            f"{'met' if races['cpu_s'] <= peer['cpu_s'] else 'NOT met'}; "
            f"wall {races['wall_s'] / peer['wall_s']:.2f}"
        )
    if "diagnose" in by:
        ratio = by["diagnose"]["cpu_s"] / races["cpu_s"]
        print(f"  diagnose CPU / races CPU = {ratio:.2f} (target <= 1.2): {'met' if ratio <= 1.2 else 'NOT met'}")
    if spans >= 1_000_000:
        print(
            f"  races peak RSS {races['rss_mib']:.0f} MiB (target <= 400): "
            f"{'met' if races['rss_mib'] <= 400 else 'NOT met'}"
        )


def compile_bytecode(compare: str | None) -> None:
    """What an installed package has: its modules' byte-code cached."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("moduletrace")
    assert spec is not None and spec.submodule_search_locations
    for folder in [*spec.submodule_search_locations, *([os.path.join(compare, "moduletrace")] if compare else [])]:
        compileall.compile_dir(folder, quiet=1)


def archive_for(data: Path, spans: int) -> str:
    path = data / f"archive-{spans}-s1.jsonl"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        partial = path.with_suffix(".partial")
        archive.generate(str(partial), spans, seed=1)
        partial.rename(path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, nargs="+", default=[140_000, 1_000_000])
    parser.add_argument("--file", nargs="+", help="existing archives instead of generated ones")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "moduletrace-bench"))
    parser.add_argument("--only", nargs="+", help="commands to time (by name; the json.loads loop always runs)")
    parser.add_argument("--duckdb-threads", type=int, default=None, help="DuckDB's threads (default: all cores)")
    parser.add_argument("--no-check", action="store_true", help="skip checking that the answers agree")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--compare", metavar="SRC", help="also time races and diagnose with this PYTHONPATH")
    parser.add_argument("--settle-after", help="the commands' --settle-after (default: theirs, 1h)")
    args = parser.parse_args()
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    paths = args.file or [archive_for(data, n) for n in args.spans]
    compile_bytecode(args.compare)
    names = list(commands("", None))
    if args.only:
        names = [n for n in names if n == BASELINE or any(o in n for o in args.only)]
    figures = {}
    for path in paths:
        size = os.path.getsize(path) / 1e6
        spans = _count_spans(path)
        print(f"\n{path}: {spans:,} spans, {size:.0f} MB, {args.runs} interleaved rounds, medians")
        if not args.no_check:
            check_answers(path)
        rows = table(bench(path, args.runs, names, args.duckdb_threads, args.compare, args.settle_after))
        targets(rows, spans)
        figures[path] = {"spans": spans, "mb": size, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def _count_spans(path: str) -> int:
    import orjson

    with open(path, "rb") as f:
        return sum(len(s["spans"]) for line in f for r in orjson.loads(line)["resourceSpans"] for s in r["scopeSpans"])


if __name__ == "__main__":
    main()
