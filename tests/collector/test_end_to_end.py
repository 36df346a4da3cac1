"""Two services racing on purpose, through the shipped collector config, to the archive and Jaeger."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pipeline import CLEAN, RACING, Pipeline
from tests.support.processes import wait_until

pytestmark = pytest.mark.peers


def races(*args: str, not_yet: bool = False) -> tuple[int, dict]:  # type: ignore[type-arg]
    """The command's exit status and JSON report; ``not_yet``: an empty answer (exit 3, no lifecycle
    span found) is returned as ``(3, {})``, not failed on."""
    result = subprocess.run(
        [sys.executable, "-m", "moduletrace.cli.main", "races", "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if not_yet and result.returncode == 3 and "no lifecycle span found" in result.stderr:
        return 3, {}
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def raced_modules(report: dict) -> list[str]:  # type: ignore[type-arg]
    return sorted(r["module_id"] for r in report["races"])


def test_the_archive_file_shows_exactly_the_loads_that_raced(pipeline: Pipeline) -> None:
    code, report = races("--file", str(pipeline.archive))
    assert code == 1
    assert raced_modules(report) == RACING
    assert report["ambiguous"] == [] and report["unmatched"] == []
    assert report["summary"]["loads"] == len(RACING + CLEAN) + 1
    for race in report["races"]:
        assert race["same_trace"] and race["preceded"] == ["db_commit", "cache_update"]
        assert race["load_failed"] and race["evidence"][0]["clock"] == "same host"
        assert race["margin_ms"]["db_commit"] > 0


def test_jaeger_shows_the_same_races_as_the_archive(pipeline: Pipeline) -> None:
    code, from_jaeger = races("--jaeger", pipeline.jaeger.query_url, "--since", "1h")
    _, from_file = races("--file", str(pipeline.archive))
    assert code == 1
    assert raced_modules(from_jaeger) == raced_modules(from_file) == RACING
    assert [(r["trace_id"], r["load_span_id"]) for r in from_jaeger["races"]] == [
        (r["trace_id"], r["load_span_id"]) for r in from_file["races"]
    ]
    # Jaeger keeps microseconds: the margins agree to within a microsecond per timestamp.
    for a, b in zip(from_jaeger["races"], from_file["races"], strict=True):
        assert abs(a["margin_ms"]["db_commit"] - b["margin_ms"]["db_commit"]) < 0.01
    assert from_jaeger["races"][0]["trace_url"].startswith(pipeline.jaeger.query_url + "/trace/")
    # Each lifecycle operation's search answers with the same whole traces: read once, not counted as
    # duplicate spans (a re-exported batch would be).
    assert from_jaeger["summary"]["duplicate_spans"] == from_file["summary"]["duplicate_spans"] == 0


def test_jaeger_filters_by_service_and_module(pipeline: Pipeline) -> None:
    _, report = races("--jaeger", pipeline.jaeger.query_url, "--since", "1h", "--module", "race-2")
    assert raced_modules(report) == ["race-2"]
    # The creating service serves no load: nothing to judge is said, with exit 3, never "no race".
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "moduletrace.cli.main",
            "races",
            "--jaeger",
            pipeline.jaeger.query_url,
            "--since",
            "1h",
            "--service",
            "create-service",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3 and "no load of service create-service" in result.stderr


def test_a_small_search_limit_splits_the_window_and_still_finds_every_race(pipeline: Pipeline) -> None:
    _, report = races("--jaeger", pipeline.jaeger.query_url, "--since", "1h", "--limit", "2")
    assert raced_modules(report) == RACING
    assert report["summary"]["partial"] == []


def test_diagnose_from_jaeger_names_the_racing_loads_as_races(pipeline: Pipeline) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "moduletrace.cli.main",
            "diagnose",
            "--format",
            "json",
            "--jaeger",
            pipeline.jaeger.query_url,
            "--since",
            "1h",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert {d["module_id"]: d["cause"] for d in report["failed_loads"]} == {m: "race" for m in RACING}
    assert all(d["strength"] == "same-clock timestamps" for d in report["failed_loads"])


def test_the_demo_sent_to_the_collector_shows_the_same_races_in_jaeger(pipeline: Pipeline, tmp_path: Path) -> None:
    # As the README's next commands say: `moduletrace demo --otlp ...`, then `races --jaeger ...`.
    from moduletrace.demo.runner import DemoOptions, run

    result = run(
        DemoOptions(
            seed=21,
            modules=40,
            concurrency=4,
            race_rate=0.1,
            auth_rate=0.05,
            pool_rate=0.0,
            otlp=pipeline.collector.otlp_http,
            directory=str(tmp_path),
        )
    )
    assert result.matches

    def from_jaeger() -> list[str]:
        # The tail sampler holds each trace for its decision wait: until the first ones reach Jaeger,
        # the scan finds no lifecycle span and says so with exit 3 (nothing judged), which is not a failure here.
        code, report = races(
            "--jaeger", pipeline.jaeger.query_url, "--since", "15m", "--service", "canvas-service", not_yet=True
        )
        if code == 3:
            return []
        return sorted(r["module_id"] for r in report["races"] if r["module_id"].startswith("mod-21-"))

    assert wait_until(lambda: from_jaeger() == sorted(result.injected_races), timeout=60), from_jaeger()
