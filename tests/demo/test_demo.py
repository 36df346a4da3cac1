"""The demo: real services with injected faults; the race rule finds every injected race, nothing else."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moduletrace.demo.runner import DemoOptions, run
from tests.support.processes import python_env


@pytest.mark.parametrize(
    ("seed", "race_rate", "auth_rate", "pool_rate"),
    [(1, 0.05, 0.0, 0.0), (2, 0.1, 0.05, 0.05), (3, 0.0, 0.1, 0.0), (4, 0.2, 0.0, 0.1)],
    ids=["races-only", "mixed", "auth-only-no-race", "many-races-and-pool"],
)
def test_every_injected_race_is_found_and_no_clean_load_is_flagged(
    tmp_path: Path, seed: int, race_rate: float, auth_rate: float, pool_rate: float
) -> None:
    options = DemoOptions(
        seed=seed,
        modules=60,
        concurrency=6,
        race_rate=race_rate,
        auth_rate=auth_rate,
        pool_rate=pool_rate,
        directory=str(tmp_path),
    )
    result = run(options)
    assert result.missed == set() and result.false_positives == set() and result.misdiagnosed == {}
    assert len(result.injected_races) == round(60 * race_rate)
    assert result.report.ambiguous == [] and result.report.unmatched == []
    # Each injected fault shows up as the failure it causes, and nothing else fails.
    expected = {m: {"race": 404, "auth": 401, "pool": 503}[f] for m, f in result.injected.items()}
    assert {m: s for m, s in result.statuses.items() if s != 200} == expected
    for race in result.report.races:
        assert race.preceded == ["cache_update"] and race.load_failed


def test_the_readme_command_runs_the_demo_and_exits_0(tmp_path: Path) -> None:
    # Exactly as the README says, as a new user runs it (JSON when not on a terminal): the
    # console script installed next to this interpreter.
    command = shutil.which("moduletrace", path=str(Path(sys.executable).parent))
    assert command, "the moduletrace console script is not installed next to this Python"
    result = subprocess.run(
        [command, "demo", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120, env=python_env()
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["demo"]["matches"] is True
    assert document["summary"]["races"] == len([f for f in document["demo"]["injected"].values() if f == "race"]) > 0
    spans = sorted(p.name for p in (tmp_path / "spans").glob("*.jsonl"))
    assert spans == ["canvas-service.jsonl", "module-service.jsonl"]  # broker-free: no indexer service
    assert "broker" not in document["demo"]
    follow_up = subprocess.run(
        [command, "races", "--file", str(tmp_path / "spans" / "*.jsonl"), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=python_env(),
    )
    assert follow_up.returncode == 1
    assert json.loads(follow_up.stdout)["races"] == document["races"]


def test_bad_demo_options_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from moduletrace.cli.main import main

    assert main(["demo", "--race-rate", "0.8", "--auth-rate", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "together at most 1" in err


def test_diagnose_names_every_injected_fault_from_the_demo_s_files(tmp_path: Path) -> None:
    result = run(
        DemoOptions(
            seed=11, modules=60, concurrency=6, race_rate=0.1, auth_rate=0.1, pool_rate=0.1, directory=str(tmp_path)
        )
    )
    command = shutil.which("moduletrace", path=str(Path(sys.executable).parent))
    assert command
    done = subprocess.run(
        [command, "diagnose", "--file", result.spans_glob, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=python_env(),
    )
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    diagnosed = {d["module_id"]: d["cause"] for d in document["failed_loads"]}
    assert diagnosed == result.injected
    by_cause = document["summary"]["by_cause"]
    assert {c: v["count"] for c, v in by_cause.items() if v["count"]} == {"auth": 6, "pool": 6, "race": 6}
    # Auth and race fail in milliseconds; a pool failure takes the pool's timeout (50 ms here).
    assert by_cause["pool"]["median_ms"] >= 45 > by_cause["auth"]["median_ms"]


def test_diagnose_with_no_failed_load_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moduletrace.cli.main import main

    result = run(
        DemoOptions(seed=5, modules=10, concurrency=2, race_rate=0, auth_rate=0, pool_rate=0, directory=str(tmp_path))
    )
    assert main(["diagnose", "--file", result.spans_glob, "--format", "table"]) == 0
    assert capsys.readouterr().out.strip() == "0 of 10 loads failed."
