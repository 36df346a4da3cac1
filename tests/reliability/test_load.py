"""Under concurrent load over real HTTP, no span lands on the wrong module or parent."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from moduletrace.demo.runner import DemoOptions, run


def test_many_concurrent_creates_and_loads_keep_every_span_on_its_module_and_parent(tmp_path: Path) -> None:
    result = run(
        DemoOptions(
            seed=3, modules=400, concurrency=24, race_rate=0.05, auth_rate=0.02, pool_rate=0.0, directory=str(tmp_path)
        )
    )
    assert result.matches
    spans = []
    for path in (tmp_path / "spans").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            document = json.loads(line)
            spans += [s for r in document["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]]
    by_id = {s["spanId"]: s for s in spans}
    modules_per_trace: dict[str, set[str]] = defaultdict(set)
    for span in spans:
        attributes = {a["key"]: a["value"].get("stringValue") for a in span.get("attributes", [])}
        module_id = attributes["module.id"]
        modules_per_trace[span["traceId"]].add(module_id)
        parent = by_id.get(span.get("parentSpanId", ""))
        if parent is not None:  # the creation's carrier or an in-process parent: the same module
            parent_module = {a["key"]: a["value"].get("stringValue") for a in parent["attributes"]}["module.id"]
            assert parent_module == module_id, (span["name"], module_id, parent_module)
    assert len(modules_per_trace) == 400
    assert all(len(modules) == 1 for modules in modules_per_trace.values())
    assert len(spans) >= 400 * 5 - 400 * 0.02  # auth failures have no query span
