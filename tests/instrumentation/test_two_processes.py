"""Two real services over real HTTP: the creation's carrier gives the load one trace ID."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import free_port, python_env, start_python, stop


def test_create_and_load_services_share_one_trace_id_through_the_stored_carrier(tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        env = python_env({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"})
        db = str(tmp_path / "modules.db")
        load_port, create_port = free_port(), free_port()
        load = start_python(["-m", "tests.support.lifecycle_service", "load", str(load_port), db], env)
        create = start_python(
            ["-m", "tests.support.lifecycle_service", "create", str(create_port), db, f"http://127.0.0.1:{load_port}"],
            env,
        )
        try:
            created = httpx.post(f"http://127.0.0.1:{create_port}/modules/m-42", timeout=10).json()
            httpx.get(f"http://127.0.0.1:{load_port}/modules/m-42", timeout=10).raise_for_status()
        finally:
            stop(create)
            stop(load)
        spans = receiver.spans()

    lifecycle = [s for s in spans if s["attributes"].get("module.id") == "m-42"]
    names = sorted(s["name"] for s in lifecycle)
    assert names == sorted(
        ["module_create_start", "module_create_db_commit", "module_create_cache_update"]
        + ["module_load_request", "module_load_db_query"] * 2
    )
    trace_id = created["carrier"]["traceparent"].split("-")[1]
    assert {s["trace_id"] for s in lifecycle} == {trace_id}
    assert {s["service"] for s in lifecycle} == {"create-service", "load-service"}
    by_id = {s["span_id"]: s for s in spans}
    create_span = next(s for s in lifecycle if s["name"] == "module_create_start")
    for load in (s for s in lifecycle if s["name"] == "module_load_request"):
        assert load["parent_span_id"] == create_span["span_id"]
    # The load triggered by the create service's httpx call links that client span (traceparent
    # crossed the hop in headers); the load from the test's own client has no incoming context.
    linked = [s for s in lifecycle if s["name"] == "module_load_request" and s["links"]]
    assert len(linked) == 1
    ((_, link_span_id, link_attributes),) = linked[0]["links"]
    assert by_id[link_span_id]["service"] == "create-service" and by_id[link_span_id]["name"].startswith("GET")
    assert link_attributes == {"module.link.type": "request"}
    # Resources say which process and host each span came from (the race rule needs both).
    assert all(s["resource"].get("service.instance.id") and s["resource"].get("host.name") for s in lifecycle)
