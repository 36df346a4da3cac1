"""What a stage's handle records: what the read saw and what the write wrote, in one line each."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace

import moduletrace
from moduletrace.analysis.races import RaceDetector
from moduletrace.instrumentation.file_exporter import encode_spans
from moduletrace.sources.otlp_json import decode
from moduletrace.spans import ResourceCache
from tests.conftest import Recorded


def test_a_read_records_whether_it_found_the_row_and_the_version_it_saw(spans: Recorded) -> None:
    with moduletrace.load_db_query("m-1") as q:
        q.found(True, version=7)
    with moduletrace.load_db_query("m-2") as q:
        q.found(False)
    first, second = spans.named("module_load_db_query")
    assert first.attributes["module.data.found"] is True and first.attributes["module.data.observed_version"] == 7
    assert second.attributes["module.data.found"] is False and "module.data.observed_version" not in second.attributes


def test_a_cache_read_records_hit_or_miss(spans: Recorded) -> None:
    with moduletrace.load_db_query("m-3") as q:
        q.cache_hit(False)
    assert spans.one("module_load_db_query").attributes["module.cache.hit"] is False


def test_a_commit_and_a_cache_update_record_the_version_they_wrote(spans: Recorded) -> None:
    with moduletrace.db_commit("m-4") as c:
        c.wrote(12)
    with moduletrace.cache_update("m-4") as u:
        u.wrote("v12")
    assert spans.one("module_create_db_commit").attributes["module.data.version"] == 12
    assert spans.one("module_create_cache_update").attributes["module.cache.version"] == "v12"


def test_the_handle_is_the_span_for_everything_else(spans: Recorded) -> None:
    with moduletrace.load_request("m-5") as span:
        span.set_attribute("app.tenant", "t-1")
        assert isinstance(span, trace.Span) and span.is_recording()
        assert span.get_span_context() == trace.get_current_span().get_span_context()
        assert span.name == "module_load_request"  # an SDK span's own members pass through
    assert spans.one("module_load_request").attributes["app.tenant"] == "t-1"


def test_async_with_gives_the_handle_too(spans: Recorded) -> None:
    async def read() -> None:
        async with moduletrace.load_db_query("m-6") as q:
            q.found(True)

    asyncio.run(read())
    assert spans.one("module_load_db_query").attributes["module.data.found"] is True


def test_recording_never_raises_into_the_read(spans: Recorded) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with moduletrace.load_db_query("m-7") as q:
        q.found(True, version=Unprintable())  # logged, not raised
        q.wrote(None)
    assert spans.one("module_load_db_query").attributes["module.data.found"] is True


def test_with_tracing_off_the_helpers_do_nothing_and_cost_no_span() -> None:
    with moduletrace.load_db_query("m-8") as q:  # no SDK installed in this test: tracing is off
        q.found(False)
        assert not q.is_recording()


def test_what_a_read_recorded_decides_the_race_rule(spans: Recorded) -> None:
    # The read overlaps the commit, so the clocks alone could not decide; it saw the row: clean.
    with moduletrace.create_start("m-9"):
        with moduletrace.db_commit("m-9") as c:
            with moduletrace.load_request("m-9"), moduletrace.load_db_query("m-9") as q:
                q.found(True)
            c.wrote(1)
    detector = RaceDetector()
    detector.add_all(decode(encode_spans(spans.all()), ResourceCache()))
    report = detector.report()
    assert report.loads == 1 and report.clean == 1 and report.ambiguous == []


@pytest.fixture(autouse=True)
def _no_leftover_context() -> None:
    assert trace.get_current_span() is trace.INVALID_SPAN
