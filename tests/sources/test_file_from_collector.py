"""Files the real collector wrote, in each of its file-exporter formats, read by `races --file`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers import start_collector
from tests.support.processes import python_env, wait_until

pytestmark = pytest.mark.peers

CONFIG = """
receivers:
  otlp:
    protocols:
      http: {endpoint: "${env:OTLP_HTTP_ENDPOINT}"}
exporters:
  file/json: {path: ./out.jsonl, flush_interval: 100ms}
  file/zstd: {path: ./out.zstd, compression: zstd, flush_interval: 100ms}
  file/proto: {path: ./out.proto, format: proto, flush_interval: 100ms}
extensions:
  health_check: {endpoint: "${env:HEALTH_ENDPOINT}"}
service:
  extensions: [health_check]
  telemetry: {metrics: {level: none}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/json, file/zstd, file/proto]
"""

EMIT = """
import sys
import moduletrace
moduletrace.configure(service_name="svc", file=sys.argv[1], endpoint=sys.argv[2], instrument_httpx=False)
for n in range(4):
    module_id = f"m-{n}"
    with moduletrace.create_start(module_id, attributes={"n": n, "ratio": 0.5, "ok": True, "tags": ["a", "b"]}):
        carrier = moduletrace.carrier()
        if n % 2:  # odd modules: a load before the commit (a race)
            with moduletrace.load_request(module_id, parent=carrier):
                with moduletrace.load_db_query(module_id):
                    pass
        try:
            with moduletrace.db_commit(module_id):
                if n == 3:
                    raise ValueError("first attempt fails")
        except ValueError:
            with moduletrace.db_commit(module_id):
                pass
        with moduletrace.cache_update(module_id):
            pass
    with moduletrace.load_request(module_id, parent=carrier, as_link=n == 2):
        with moduletrace.load_db_query(module_id):
            pass
moduletrace.shutdown(10)
"""


def races(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "moduletrace.cli.main", "races", "--format", "json", "--file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _spans(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    spans = [s for d in lines for rs in d["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    return sorted(spans, key=lambda s: s["spanId"])


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run: the same spans to our embedded file and, through the real collector, to its three formats."""
    directory = tmp_path_factory.mktemp("collector-files")
    collector = start_collector(directory, CONFIG)
    ours = directory / "ours.jsonl"
    try:
        subprocess.run(
            [sys.executable, "-c", EMIT, str(ours), collector.otlp_http], env=python_env(), check=True, timeout=60
        )
        assert wait_until(lambda: len(_spans(directory / "out.jsonl")) == len(_spans(ours)), timeout=20)
    finally:
        collector.process.stop()  # flushes and closes the compressed and proto files
    return directory


def test_every_collector_file_format_and_our_embedded_file_give_the_same_races(written: Path) -> None:
    reports = {name: races(written / name) for name in ("ours.jsonl", "out.jsonl", "out.zstd", "out.proto")}
    summaries = {
        name: [(r["module_id"], r["trace_id"], r["load_span_id"], r["margin_ms"]) for r in report["races"]]
        for name, report in reports.items()
    }
    assert len({json.dumps(s) for s in summaries.values()}) == 1, summaries
    assert [r[0] for r in summaries["out.jsonl"]] == ["m-1", "m-3"]
    assert reports["out.jsonl"]["summary"]["loads"] == 6


def test_our_embedded_file_holds_the_same_spans_as_the_collector_file(written: Path) -> None:
    assert _spans(written / "ours.jsonl") == _spans(written / "out.jsonl")
