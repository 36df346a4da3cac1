"""The peer: race rule v2 as one DuckDB query over a collector archive (benchmarks/duckdb_races.sql).

    python benchmarks/duckdb_races.py ARCHIVE [--skew-tolerance MS] [--threads N]

Prints a JSON object in the shape of ``moduletrace races --format json``, reduced to what the query
computes: for each list (``races``, ``stale_reads``, ``ambiguous``, ``clocks_contradicted``,
``unmatched``) the loads as ``{"module_id", "load_span_id"}``, and ``summary`` counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import duckdb

SQL = Path(__file__).with_name("duckdb_races.sql")
LISTS = ("races", "ambiguous", "stale_reads", "clocks_contradicted", "unmatched")


def races(
    path: str, skew_tolerance_ms: float = 5.0, threads: int | None = None, memory_limit: str | None = None
) -> dict[str, Any]:
    connection = duckdb.connect(":memory:")
    if threads is not None:
        connection.execute(f"SET threads = {int(threads)}")
    if memory_limit is not None:
        connection.execute("SET memory_limit = ?", [memory_limit])
    rows = connection.execute(
        SQL.read_text(), {"file": path, "tolerance_ns": round(skew_tolerance_ms * 1_000_000)}
    ).fetchall()
    out: dict[str, Any] = {name: [] for name in LISTS}
    loads = 0
    for category, load_span_id, module_id in rows:
        if category == "loads":
            loads = int(load_span_id)
        else:
            out[category].append({"module_id": module_id, "load_span_id": load_span_id})
    out["summary"] = {"loads": loads, **{name: len(out[name]) for name in LISTS}}
    return out


def differences(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """Per list, the load span ids only ``moduletrace races --format json`` (``ours``) or only the peer
    listed; empty when both agree exactly."""
    out = {}
    for name in LISTS:
        mine = {v["load_span_id"] for v in ours[name]}
        theirs = {v["load_span_id"] for v in peer[name]}
        if mine != theirs:
            out[name] = {"only_moduletrace": sorted(mine - theirs), "only_duckdb": sorted(theirs - mine)}
    if ours["summary"]["loads"] != peer["summary"]["loads"]:
        out["loads"] = {"moduletrace": [str(ours["summary"]["loads"])], "duckdb": [str(peer["summary"]["loads"])]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--skew-tolerance", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-limit", default=None, help="DuckDB's memory_limit, e.g. 350MB")
    args = parser.parse_args()
    report = races(args.file, args.skew_tolerance, args.threads, args.memory_limit)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if report["races"] or report["stale_reads"] else 0


if __name__ == "__main__":
    sys.exit(main())
