"""Property-based: random and mutated input never gives a traceback, only documented outcomes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import moduletrace
from moduletrace.analysis.races import RaceDetector
from moduletrace.cli.main import main
from moduletrace.conventions import SPAN_NAMES
from moduletrace.errors import BackendError, InputError
from moduletrace.sources.file import FileSource
from moduletrace.sources.jaeger import legacy_trace_spans
from moduletrace.sources.otlp_json import FormatError, decode
from moduletrace.spans import Link, Resource, ResourceCache, Span
from tests.sources.test_file import line, otlp_span

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
OTLP_KEYS = [
    "resourceSpans",
    "scopeSpans",
    "spans",
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "attributes",
    "status",
    "links",
    "key",
    "value",
    "stringValue",
    "intValue",
    "code",
    "resource",
    "batches",
]
otlp_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=40)
    | st.sampled_from(["0" * 32, "a" * 16, "AAAA", "7"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(OTLP_KEYS), children, max_size=5),
    max_leaves=40,
)


def _valid_line() -> dict[str, Any]:
    return line(otlp_span("module_create_db_commit", "a1" * 8), otlp_span("module_load_request", "b2" * 8))


def _mutate(document: Any, path: list[Any], value: Any) -> Any:
    """Replace the node at ``path`` (indices into dicts/lists, taken modulo their size) by ``value``."""
    if not path or not isinstance(document, (dict, list)) or not document:
        return value
    if isinstance(document, dict):
        key = sorted(document)[path[0] % len(document)]
        return {**document, key: _mutate(document[key], path[1:], value)}
    index = path[0] % len(document)
    return [*document[:index], _mutate(document[index], path[1:], value), *document[index + 1 :]]


@SETTINGS
@given(payload=st.one_of(json_values, otlp_like))
def test_decoding_any_json_gives_spans_or_a_format_error(payload: Any) -> None:
    try:
        spans = decode(payload, ResourceCache())
    except FormatError:
        return
    assert all(isinstance(s, Span) and len(s.trace_id) == 32 and len(s.span_id) == 16 for s in spans)


@SETTINGS
@given(path=st.lists(st.integers(min_value=0, max_value=50), max_size=8), value=st.one_of(json_values, otlp_like))
def test_mutated_otlp_lines_are_read_or_skipped_never_a_traceback(path: list[int], value: Any) -> None:
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "spans.jsonl"
        file.write_text(json.dumps(_valid_line()) + "\n" + json.dumps(_mutate(_valid_line(), path, value)) + "\n")
        warnings: list[str] = []
        spans = list(FileSource([str(file)], warnings.append).spans())
        assert len(spans) >= 2 and len(warnings) <= 1


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_are_an_input_error_or_nothing(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "spans.bin"
        file.write_bytes(data)
        try:
            list(FileSource([str(file)], lambda message: None).spans())
        except InputError:
            pass


@SETTINGS
@given(data=st.binary(max_size=200))
def test_the_command_on_random_files_exits_with_a_documented_code(
    data: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "spans.jsonl"
        file.write_bytes(data)
        code = main(["races", "--file", str(file), "--format", "json"])
        err = capsys.readouterr().err
        assert code in (0, 1, 2, 3) and "Traceback" not in err
        if code == 3:  # a file, so no backend: only "nothing to judge" may exit 3
            assert "no lifecycle span found" in err


@SETTINGS
@given(
    trace=st.one_of(
        json_values,
        otlp_like,
        st.dictionaries(
            st.sampled_from(
                [
                    "traceID",
                    "spans",
                    "processes",
                    "spanID",
                    "operationName",
                    "references",
                    "tags",
                    "startTime",
                    "duration",
                ]
            ),
            json_values,
            max_size=6,
        ),
    )
)
def test_jaeger_legacy_json_gives_spans_or_a_backend_error(trace: Any) -> None:
    try:
        list(legacy_trace_spans(trace, ResourceCache()))
    except BackendError:
        pass


resources = st.sampled_from([Resource("a", "p1", "h1"), Resource("b", "p2", "h2"), Resource("c", "", ""), Resource()])
ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=3)
random_spans = st.builds(
    lambda trace, span, parent, name, kind, start, length, status, module, resource, link: Span(
        trace.rjust(32, "0"),
        span.rjust(16, "0"),
        parent.rjust(16, "0") if parent else "",
        name,
        kind,
        start,
        start + length,
        status,
        "",
        {"module.id": module} if module is not None else {},
        resource,
        (Link(link.rjust(32, "0"), "1" * 16, {"module.link.type": "creation"}),) if link else (),
    ),
    ids,
    ids,
    st.none() | ids,
    st.sampled_from([*SPAN_NAMES.values(), "GET", "other"]),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**5),
    st.integers(min_value=0, max_value=2),
    st.none() | st.sampled_from(["m1", "m2", "m3"]) | st.integers(0, 3),
    resources,
    st.none() | ids,
)


@SETTINGS
@given(spans=st.lists(random_spans, max_size=40), tolerance=st.floats(min_value=0, max_value=50))
def test_the_detector_accounts_for_every_load_whatever_the_spans(spans: list[Span], tolerance: float) -> None:
    detector = RaceDetector(skew_tolerance_ms=tolerance)
    detector.add_all(spans)
    report = detector.report()
    judged = len(report.races) + len(report.stale_reads) + len(report.ambiguous) + len(report.unmatched)
    assert report.loads == judged + report.clean
    for verdict in report.races:
        raced = [c for c in verdict.checks if c.verdict == "race"]
        assert verdict.preceded == [c.stage for c in raced] and raced
        # By the clocks on one clock, a race ended before the stage began: a positive margin.
        assert all(c.margin_ms > 0 for c in raced if c.decided_by == "clocks" and c.bound_ms is None)


arguments = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(max_size=300),
    st.binary(max_size=50),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@SETTINGS
@given(
    module_id=arguments,
    args=st.lists(arguments, max_size=3),
    kwargs=st.dictionaries(st.sampled_from(["module_id", "parent", "row", "x"]), arguments, max_size=3),
)
def test_stage_helpers_fed_anything_never_raise_into_the_caller(
    module_id: Any, args: list[Any], kwargs: dict[str, Any]
) -> None:
    @moduletrace.db_commit
    def anything(*a: Any, **k: Any) -> tuple[Any, ...]:
        return (a, k)

    @moduletrace.load_request(parent_param="parent")
    def with_parent(module_id: Any = None, parent: Any = None, **k: Any) -> str:
        return "ok"

    assert anything(module_id, *args, **kwargs) == ((module_id, *args), kwargs)
    assert with_parent(module_id, parent=kwargs.get("parent")) == "ok"
    with moduletrace.load_db_query(module_id, parent=kwargs.get("parent")):  # type: ignore[arg-type]
        pass
