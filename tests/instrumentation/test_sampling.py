"""Lifecycle spans are always recorded; the service's other spans keep the service's sampling."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

import moduletrace
from tests.conftest import Recorded, install_provider, reset_trace_globals

UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


@pytest.fixture
def never_sampled() -> Iterator[Recorded]:
    recorded = install_provider(sampler=ParentBased(ALWAYS_OFF))
    yield recorded
    recorded.provider.shutdown()
    reset_trace_globals()


def test_lifecycle_spans_are_recorded_when_the_head_sampler_drops_everything(never_sampled: Recorded) -> None:
    other = trace.get_tracer("service")
    with other.start_as_current_span("GET /modules") as request:
        assert not request.is_recording()
        with moduletrace.load_request("m-1"):
            pass
    assert [s.name for s in never_sampled.all()] == ["module_load_request"]


def test_lifecycle_spans_are_recorded_under_an_unsampled_parent_and_keep_its_trace(never_sampled: Recorded) -> None:
    with moduletrace.load_request("m-2", parent={"traceparent": UNSAMPLED_PARENT}) as span:
        assert span.get_span_context().trace_flags.sampled
    load = never_sampled.one("module_load_request")
    assert load.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def test_the_service_spans_keep_their_configured_sampling(never_sampled: Recorded) -> None:
    other = trace.get_tracer("service")
    for _ in range(20):
        with other.start_as_current_span("GET /health"):
            pass
    assert never_sampled.all() == []


def test_the_lifecycle_sampler_wraps_only_moduletrace_s_own_tracer() -> None:
    recorded = install_provider(sampler=TraceIdRatioBased(0.0001))
    try:
        with moduletrace.db_commit("m-3"):
            pass
        ours = recorded.provider.get_tracer("moduletrace", moduletrace.__version__)
        theirs = recorded.provider.get_tracer("service")
        assert isinstance(ours.sampler, moduletrace.LifecycleSampler)  # type: ignore[attr-defined]
        assert isinstance(theirs.sampler, TraceIdRatioBased)  # type: ignore[attr-defined]
        assert "TraceIdRatioBased" in ours.sampler.get_description()  # type: ignore[attr-defined]
        assert len(recorded.named("module_create_db_commit")) == 1
    finally:
        recorded.provider.shutdown()
        reset_trace_globals()


def test_spans_started_inside_a_lifecycle_span_follow_it_as_their_sampled_parent(never_sampled: Recorded) -> None:
    with moduletrace.db_commit("m-4"):
        with trace.get_tracer("sqlalchemy").start_as_current_span("INSERT modules"):
            pass
    assert sorted(s.name for s in never_sampled.all()) == ["INSERT modules", "module_create_db_commit"]
